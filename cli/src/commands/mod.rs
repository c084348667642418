//! The commands: one module each, turning parsed flags into calls of Rotary's libraries.

pub mod audit;
pub mod explain;
pub mod list;
pub mod proxy;
pub mod run;
pub mod serve;
pub mod soak;

use anyhow::Context;
use clap::Args;
use rotary_harness::{Catalogue, default_dir};
use std::path::PathBuf;

/// Where the catalogue is: `--scenarios`, else `ROTARY_SCENARIOS`, else the shipped folder.
#[derive(Debug, Clone, Args)]
pub struct CatalogueArgs {
    /// The folder of scenario files (default: the catalogue shipped in the repository's `scenarios/`).
    #[arg(long, value_name = "DIR", env = "ROTARY_SCENARIOS")]
    pub scenarios: Option<PathBuf>,
}

impl CatalogueArgs {
    pub fn load(&self) -> anyhow::Result<Catalogue> {
        let dir = self.scenarios.clone().unwrap_or_else(default_dir);
        Ok(Catalogue::load(&dir)?)
    }
}

/// Quotes a word for `sh`.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '=' | ':' | ','))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The command line that runs the bundled reference client through this very binary.
pub fn reference_driver_command(bugs: &[rotary_reference::Bug]) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the rotary binary to run the reference client")?;
    let mut cmd = format!("{} reference-driver", shell_quote(&exe.to_string_lossy()));
    for b in bugs {
        cmd.push_str(" --bug ");
        cmd.push_str(&shell_quote(b.name()));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/usr/bin/rotary"), "/usr/bin/rotary");
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
