//! `rotary explain ID`: one scenario in words — requirement, references, server, faults, steps, checks.

use super::CatalogueArgs;
use clap::Args;
use rotary_harness::{Level, Verdict, server_lines};

/// Flags of `rotary explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The scenario's id.
    pub id: String,
    /// The catalogue.
    #[command(flatten)]
    pub catalogue: CatalogueArgs,
}

/// Runs `rotary explain`.
pub fn explain(args: &ExplainArgs) -> anyhow::Result<()> {
    let catalogue = args.catalogue.load()?;
    let Some(s) = catalogue.get(&args.id) else {
        let close: Vec<&str> = catalogue
            .scenarios
            .iter()
            .map(|s| s.id.as_str())
            .filter(|id| {
                let prefix = args.id.split('.').next().unwrap_or("");
                id.starts_with(prefix) || id.contains(&args.id)
            })
            .take(8)
            .collect();
        anyhow::bail!(
            "no scenario {:?}{}",
            args.id,
            if close.is_empty() {
                " (see `rotary list`)".to_owned()
            } else {
                format!("; did you mean: {}", close.join(", "))
            }
        );
    };
    for w in catalogue.alias_warnings([args.id.as_str()]) {
        eprintln!("rotary: warning: {w}");
    }
    println!("{} — {}", s.id, s.title);
    let mechanisms: Vec<&str> = s.mechanisms.iter().map(|m| m.name()).collect();
    println!(
        "level: {}   auth: {} (this case; the file holds for {})   tags: {}   needs: {}",
        s.level.name(),
        s.auth.name(),
        mechanisms.join(", "),
        s.tags.join(", "),
        s.needs.join(", ")
    );
    println!("file: {}\n", s.file.display());
    println!("Requirement:\n  {}\n", s.requirement.replace('\n', "\n  "));
    if !s.references.is_empty() {
        println!("References:");
        for r in &s.references {
            println!("  - {r}");
        }
        println!();
    }
    let server = server_lines(&s.server_table);
    println!(
        "Server: {}",
        if server.is_empty() {
            "synapse profile defaults".to_owned()
        } else {
            server.join(", ")
        }
    );
    for f in &s.faults {
        println!(
            "Fault: {} on {}{}",
            f.action.kind(),
            f.endpoint.as_deref().unwrap_or("any endpoint"),
            f.nth.map(|n| format!(", request #{n}")).unwrap_or_default()
        );
    }
    println!("\nSteps:");
    for st in &s.steps {
        let name = st.name.as_deref().map(|n| format!(" [{n}]")).unwrap_or_default();
        println!(
            "  {:>2}. {}{} {}",
            st.index,
            st.action.name(),
            name,
            st.action.summary()
        );
    }
    println!("\nChecks:");
    for c in &s.checks {
        println!(
            "  - {}",
            serde_json::to_string(c).unwrap_or_else(|_| c.name().to_owned())
        );
    }
    println!(
        "\nVerdicts: pass when every check holds; otherwise {}.",
        match s.level {
            Level::Must => Verdict::Fail.name(),
            Level::Should => Verdict::NonStrict.name(),
            Level::Info => "info (never judged)",
        }
    );
    Ok(())
}
