#!/usr/bin/env bash
# Runs the Rotary catalogue against matrix-rust-sdk. Arguments pass through to `rotary run`
# (e.g. --json FILE, --expect drivers/matrix-rust-sdk/expected-failures.txt, id globs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../target-dir.sh
source "$here/../target-dir.sh"
cd "$root"
cargo build --release -p rotary --locked
cargo build --release --locked --manifest-path drivers/matrix-rust-sdk/Cargo.toml
rotary="$(target_dir "$root/Cargo.toml")/release/rotary"
driver="$(target_dir "$here/Cargo.toml")/release/rotary-matrix-rust-sdk-driver"
exec "$rotary" run \
  --driver "$(printf '%q' "$driver")" \
  "$@"
