#!/usr/bin/env bash
# Runs the Rotary catalogue against matrix-rust-sdk. Arguments pass through to `rotary run`
# (e.g. --json FILE, --expect harness/drivers/matrix-rust-sdk/expected-failures.txt, id globs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"
cargo build --release -p rotary-harness --locked
cargo build --release --locked --manifest-path harness/drivers/matrix-rust-sdk/Cargo.toml
exec target/release/rotary run \
  --driver "$root/harness/drivers/matrix-rust-sdk/target/release/rotary-matrix-rust-sdk-driver" \
  "$@"
