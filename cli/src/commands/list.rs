//! `rotary list`: the catalogue for people (a table), tools (`--json`) and documentation
//! (`--markdown`), and the scenario language's reference tables (`--checks`, `--steps`).

use super::CatalogueArgs;
use clap::Args;
use rotary_harness::{Level, Selection};
use serde_json::json;

/// Flags of `rotary list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Print `{"scenarios": [{"id", "title", "level", "tags", "needs", "auth", …}, …]}`: one entry
    /// per case (`auth` is its mechanism, `mechanisms` all of its file's).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print a Markdown table (id, level, title) for documentation.
    #[arg(long)]
    pub markdown: bool,
    /// List the checks of the scenario language (what `[[expect]]` tables can say) instead.
    #[arg(long, conflicts_with_all = ["steps", "json"])]
    pub checks: bool,
    /// List the steps of the scenario language (what `[[step]]` tables can do) instead.
    #[arg(long, conflicts_with = "json")]
    pub steps: bool,
    /// Only ids matching these globs.
    #[arg(value_name = "ID_GLOB")]
    pub ids: Vec<String>,
    /// Only scenarios with this tag. Repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// The catalogue.
    #[command(flatten)]
    pub catalogue: CatalogueArgs,
}

/// Runs `rotary list`.
pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    if args.checks || args.steps {
        language(args);
        return Ok(());
    }
    let catalogue = args.catalogue.load()?;
    let picked = catalogue
        .select(&Selection {
            globs: args.ids.clone(),
            tags: args.tags.clone(),
            partition: None,
        })
        .map_err(anyhow::Error::msg)?;
    for w in catalogue.alias_warnings(args.ids.iter().map(String::as_str)) {
        eprintln!("rotary: warning: {w}");
    }
    let names = |s: &rotary_harness::Scenario| -> Vec<&'static str> {
        s.mechanisms.iter().map(|m| m.name()).collect()
    };
    if args.json {
        let items: Vec<_> = picked
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "title": s.title,
                    "level": s.level,
                    "tags": s.tags,
                    "needs": s.needs,
                    "auth": s.auth.name(),
                    "mechanisms": names(s),
                    "file_id": s.file_id,
                    "aliases": s.aliases,
                    "requirement": s.requirement,
                    "references": s.references,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({"scenarios": items}))?);
        return Ok(());
    }
    if args.markdown {
        // One row per file: its mechanisms are its cases (`ID`, `ID@oauth`).
        println!("| id | auth | level | title |");
        println!("|---|---|---|---|");
        for s in picked.iter().filter(|s| s.id == s.file_id) {
            let mut auth = names(s).join(", ");
            let aliases: Vec<String> = picked
                .iter()
                .filter(|c| c.file_id == s.file_id)
                .flat_map(|c| c.aliases.iter().map(|a| format!("`{a}`")))
                .collect();
            if !aliases.is_empty() {
                auth.push_str(&format!(" (was {})", aliases.join(", ")));
            }
            println!(
                "| `{}` | {} | {} | {} |",
                s.id,
                auth,
                s.level.name(),
                s.title.replace('|', "\\|")
            );
        }
        return Ok(());
    }
    let width = picked.iter().map(|s| s.id.len()).max().unwrap_or(10);
    for s in &picked {
        println!(
            "{:<width$}  {:<6}  {:<6}  {}",
            s.id,
            s.auth.name(),
            s.level.name(),
            s.title
        );
    }
    let count = |l| picked.iter().filter(|s| s.level == l).count();
    let files = picked
        .iter()
        .map(|s| s.file_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    println!(
        "\n{} cases from {files} scenario files ({} must, {} should, {} info). `rotary explain <id>` shows one.",
        picked.len(),
        count(Level::Must),
        count(Level::Should),
        count(Level::Info)
    );
    Ok(())
}

/// `--checks` / `--steps`: the scenario language's reference, as a table or in Markdown.
fn language(args: &ListArgs) {
    if args.markdown {
        if args.checks {
            print!("{}", rotary_judge::Check::docs_markdown());
        } else {
            print!("{}", rotary_harness::steps::Action::docs_markdown());
        }
        return;
    }
    let rows: Vec<(&str, &str, Vec<&str>)> = if args.checks {
        rotary_judge::Check::docs()
            .into_iter()
            .map(|d| (d.name, d.summary, d.fields.iter().map(|f| f.0).collect()))
            .collect()
    } else {
        rotary_harness::steps::Action::docs()
            .into_iter()
            .map(|d| (d.name, d.summary, d.fields.iter().map(|f| f.0).collect()))
            .collect()
    };
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(10);
    for (name, summary, fields) in &rows {
        println!("{name:<width$}  {summary}");
        if !fields.is_empty() {
            println!("{:<width$}  fields: {}", "", fields.join(", "));
        }
    }
    let what = if args.checks {
        "checks ([[expect]] check = …)"
    } else {
        "steps ([[step]] do = …)"
    };
    println!(
        "\n{} {what}. `--markdown` prints the reference table.",
        rows.len()
    );
}
