//! Build script: reads the `matrix-sdk` version from `Cargo.lock` so that `initialize` reports the
//! version actually compiled in (`MATRIX_SDK_VERSION`), never a hand-kept copy.

use std::fs;

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut version = String::from("unknown");
    let mut in_sdk = false;
    for line in lock.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            in_sdk = false;
        } else if line == "name = \"matrix-sdk\"" {
            in_sdk = true;
        } else if in_sdk && let Some(v) = line.strip_prefix("version = ") {
            version = v.trim_matches('"').to_owned();
            break;
        }
    }
    println!("cargo:rustc-env=MATRIX_SDK_VERSION={version}");
}
