//! One list of the protocol's names: the drivers in other languages and the protocol document use
//! exactly the capabilities and error kinds of `rotary-protocol`.

use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The quoted words inside the array literals of the first `const NAME = …;` statement of a
/// JavaScript file (so `sdk === "42" ? [..] : [..]` gives the words of both arrays).
fn js_const_words(file: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let start = text
        .find(&format!("const {name} ="))
        .unwrap_or_else(|| panic!("{}: no `const {name} =`", file.display()));
    let end = text[start..].find(';').map_or(text.len(), |e| start + e);
    text[start..end]
        .split('[')
        .skip(1)
        .filter_map(|array| array.split(']').next())
        .flat_map(|inside| inside.split('"').skip(1).step_by(2).map(str::to_owned))
        .collect()
}

#[test]
fn node_drivers_list_only_protocol_capabilities() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("drivers")).expect("drivers/") {
        let driver = entry.expect("entry").path().join("driver.mjs");
        if !driver.exists() {
            continue;
        }
        let words = js_const_words(&driver, "CAPABILITIES");
        assert!(!words.is_empty(), "{}: no capabilities", driver.display());
        for w in &words {
            assert!(
                rotary_protocol::CAPABILITIES.contains(&w.as_str()),
                "{}: {w:?} is not a capability of the protocol ({:?})",
                driver.display(),
                rotary_protocol::CAPABILITIES
            );
        }
        checked += 1;
    }
    assert!(checked >= 1, "no Node driver found under drivers/");
}

#[test]
fn the_protocol_document_names_every_capability_and_error_kind() {
    let doc = std::fs::read_to_string(repo("docs/protocol.md")).expect("docs/protocol.md");
    for name in rotary_protocol::CAPABILITIES {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/protocol.md does not name `{name}`"
        );
    }
    for kind in rotary_protocol::ErrorKind::ALL {
        assert!(
            doc.contains(&format!("`{kind}`")),
            "docs/protocol.md does not name `{kind}`"
        );
    }
}
