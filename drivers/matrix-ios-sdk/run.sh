#!/usr/bin/env bash
# Runs the Rotary catalogue against the MODEL of matrix-ios-sdk (driver.mjs + sdk-model.mjs; the SDK
# itself is Objective-C and cannot run on Linux).
#
#   drivers/matrix-ios-sdk/run.sh [--serve-v1-refresh] [rotary run options and id globs…]
#
# --serve-v1-refresh (first argument only): run a copy of the catalogue in which every scenario's
# server also serves POST /_matrix/client/v1/refresh (the knob `serve_v1_refresh = true`), the only
# refresh path the SDK calls; Synapse does not serve it, so without the flag every refresh the model
# makes is answered 404. `rotary run` has no run-wide server override, hence the copy (made in a
# temporary folder, passed with --scenarios); a `rotary run --server-config FILE` flag can replace
# it once it exists. Everything else goes to `rotary run`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../target-dir.sh
source "$here/../target-dir.sh"

v1=0
if [[ $# -ge 1 && "$1" == "--serve-v1-refresh" ]]; then
  v1=1
  shift
fi

command -v node >/dev/null || { echo "run.sh: node is not installed" >&2; exit 2; }

cd "$root"
cargo build --release -p rotary --locked --quiet
rotary="$(target_dir "$root/Cargo.toml")/release/rotary"

extra=()
if [[ $v1 == 1 ]]; then
  catalogue="$(mktemp -d "${TMPDIR:-/tmp}/rotary-ios-v1.XXXXXX")"
  trap 'rm -rf "$catalogue"' EXIT
  for f in "$root"/scenarios/*.toml; do
    # Every scenario file has exactly one [server] table; the knob goes right under it.
    awk '{ print } /^\[server\][[:space:]]*$/ { print "serve_v1_refresh = true" }' "$f" >"$catalogue/$(basename "$f")"
  done
  extra=(--scenarios "$catalogue")
fi

# No --call-timeout: the model's own bounds (60 s per request, 4 tries, 3 min per operation) are
# never reached by a catalogue scenario, see README.md ("Timeouts and retries").
status=0
"$rotary" run --driver "node $here/driver.mjs" "${extra[@]}" "$@" || status=$?
exit "$status"
