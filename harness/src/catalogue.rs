//! The catalogue: every scenario file of a folder, loaded, validated and selected by glob, tag and shard.

use crate::scenario::{Scenario, ScenarioError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The folder of scenario files shipped with Rotary (`scenarios/` at the repository root).
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios")
}

/// Errors loading a catalogue: every mistake found, not just the first.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The folder cannot be read.
    #[error(
        "cannot read the scenario folder {dir}: {source} (point --scenarios or ROTARY_SCENARIOS at the catalogue)"
    )]
    Dir {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// One or more files are wrong.
    #[error("{} mistake(s) in the catalogue:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ScenarioError>),
}

/// A deterministic shard: scenario `i` (in id order) belongs to shard `i mod n`, numbered from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// This shard, 1..=count.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl std::str::FromStr for Partition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (m, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: write the partition as M/N, e.g. 1/4"))?;
        let index: usize = m
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: {m:?} is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: {n:?} is not a number"))?;
        if count == 0 || index == 0 || index > count {
            return Err(format!("{s:?}: need 1 <= M <= N"));
        }
        Ok(Partition { index, count })
    }
}

/// Which scenarios to run.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Id globs (`*` matches any run of characters); empty = all.
    pub globs: Vec<String>,
    /// Tags; a scenario must have one of them (empty = no filter).
    pub tags: Vec<String>,
    /// A shard.
    pub partition: Option<Partition>,
}

/// The loaded catalogue, sorted by id.
#[derive(Clone, Debug)]
pub struct Catalogue {
    /// The scenarios, in id order.
    pub scenarios: Vec<Scenario>,
}

impl Catalogue {
    /// Loads every `*.toml` in `dir`; reports every broken file and duplicate id at once.
    pub fn load(dir: &Path) -> Result<Catalogue, CatalogueError> {
        let entries = std::fs::read_dir(dir).map_err(|source| CatalogueError::Dir {
            dir: dir.to_owned(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        let mut errors = Vec::new();
        let mut scenarios = Vec::new();
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        for f in files {
            match Scenario::load_cases(&f) {
                Ok(cases) => {
                    for s in cases {
                        for id in std::iter::once(&s.id).chain(&s.aliases) {
                            if let Some(first) = seen.get(id) {
                                errors.push(ScenarioError {
                                    file: f.clone(),
                                    field: "id".to_owned(),
                                    message: format!("duplicate id {id:?} (also in {})", first.display()),
                                });
                            } else {
                                seen.insert(id.clone(), f.clone());
                            }
                        }
                        scenarios.push(s);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(CatalogueError::Invalid(errors));
        }
        scenarios.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Catalogue { scenarios })
    }

    /// The scenarios a selection picks, in id order. Globs that match nothing are returned as
    /// the error (a typo should not silently run nothing). A glob matches a case's id or one of
    /// its aliases (the old id of a scenario folded into another file).
    pub fn select(&self, sel: &Selection) -> Result<Vec<&Scenario>, String> {
        for g in &sel.globs {
            if !self.scenarios.iter().any(|s| s.answers_to(g)) {
                return Err(format!("no scenario matches {g:?} (see `rotary list`)"));
            }
        }
        for t in &sel.tags {
            if !self.scenarios.iter().any(|s| s.has_tag(t)) {
                return Err(format!("no scenario has the tag {t:?} (see `rotary list`)"));
            }
        }
        let picked: Vec<&Scenario> = self
            .scenarios
            .iter()
            .filter(|s| sel.globs.is_empty() || sel.globs.iter().any(|g| s.answers_to(g)))
            .filter(|s| sel.tags.is_empty() || sel.tags.iter().any(|t| s.has_tag(t)))
            .collect();
        if picked.is_empty() {
            return Err(format!(
                "no scenario matches {} together with the tag(s) {} (ids and tags narrow each other; see `rotary list`)",
                sel.globs.join(", "),
                sel.tags.join(", ")
            ));
        }
        Ok(match sel.partition {
            None => picked,
            Some(p) => picked
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % p.count == p.index - 1)
                .map(|(_, s)| s)
                .collect(),
        })
    }

    /// The case with this id, or the case an alias (an old id) names.
    pub fn get(&self, id: &str) -> Option<&Scenario> {
        self.scenarios
            .iter()
            .find(|s| s.id == id)
            .or_else(|| self.scenarios.iter().find(|s| s.aliases.iter().any(|a| a == id)))
    }

    /// The case an old id now names, if `id` is an alias.
    pub fn alias_target(&self, id: &str) -> Option<&str> {
        self.scenarios
            .iter()
            .find(|s| s.aliases.iter().any(|a| a == id))
            .map(|s| s.id.as_str())
    }

    /// Warnings for names (ids or globs given on the command line or in an `--expect` file) that
    /// are old ids: `oauth.401-storm is now concurrency.401-storm@oauth`.
    pub fn alias_warnings<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        names
            .into_iter()
            .filter_map(|n| {
                self.alias_target(n).map(|to| {
                    format!("{n} is an old id: it now names {to} (the same requirement); write {to}")
                })
            })
            .collect()
    }

    /// Every id and alias, for checking lists of ids (`--expect` files) against the catalogue.
    pub fn names(&self) -> Vec<&str> {
        self.scenarios
            .iter()
            .flat_map(|s| std::iter::once(s.id.as_str()).chain(s.aliases.iter().map(String::as_str)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalogue_loads() {
        let c = Catalogue::load(&default_dir()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.scenarios.is_empty());
    }

    #[test]
    fn partitions_cover_everything_once() {
        let c = Catalogue::load(&default_dir()).unwrap_or_else(|e| panic!("{e}"));
        let all = c.select(&Selection::default()).unwrap().len();
        let mut seen = 0;
        for index in 1..=3 {
            let sel = Selection {
                partition: Some(Partition { index, count: 3 }),
                ..Selection::default()
            };
            seen += c.select(&sel).unwrap().len();
        }
        assert_eq!(seen, all);
        assert!("0/3".parse::<Partition>().is_err());
        assert!("4/3".parse::<Partition>().is_err());
        assert_eq!("2/3".parse::<Partition>(), Ok(Partition { index: 2, count: 3 }));
    }

    #[test]
    fn old_ids_of_folded_scenarios_still_resolve() {
        let c = Catalogue::load(&default_dir()).unwrap_or_else(|e| panic!("{e}"));
        let s = c.get("oauth.401-storm").map(|s| s.id.as_str());
        assert_eq!(s, Some("concurrency.401-storm@oauth"));
        let sel = Selection {
            globs: vec!["oauth.401-storm".to_owned()],
            ..Selection::default()
        };
        let picked: Vec<&str> = c.select(&sel).unwrap().iter().map(|s| s.id.as_str()).collect();
        assert_eq!(picked, ["concurrency.401-storm@oauth"]);
        let w = c.alias_warnings(["oauth.401-storm", "concurrency.401-storm"]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("concurrency.401-storm@oauth"), "{w:?}");
        assert!(c.names().contains(&"oauth.401-storm"));
        // Both cases of a file that holds for both mechanisms, the legacy one under the bare id.
        assert!(
            c.get("concurrency.401-storm")
                .is_some_and(|s| s.auth == crate::Auth::Legacy)
        );
    }

    #[test]
    fn a_glob_that_matches_nothing_is_an_error() {
        let c = Catalogue::load(&default_dir()).unwrap_or_else(|e| panic!("{e}"));
        let sel = Selection {
            globs: vec!["no-such.*".to_owned()],
            ..Selection::default()
        };
        assert!(c.select(&sel).is_err());
    }

    #[test]
    fn broken_files_are_all_reported() {
        let dir = std::env::temp_dir().join(format!("rotary-cat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.one.toml"), "id = \"a.one\"\n").unwrap();
        std::fs::write(dir.join("a.two.toml"), "id = \"a.three\"\ntitle=\"t\"\nlevel=\"must\"\nrequirement=\"r\"\nneeds=[\"login\"]\n[[step]]\ndo=\"login\"\n[[expect]]\ncheck=\"no_logout\"\n").unwrap();
        let e = Catalogue::load(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).ok();
        assert!(e.contains("2 mistake(s)"), "{e}");
        assert!(e.contains("a.one.toml"), "{e}");
        assert!(e.contains("must match the file name"), "{e}");
    }
}
