#!/usr/bin/env bash
# The fidelity check in one command: install Synapse from PyPI into a virtualenv outside the
# repository (once), run it and `rotary serve` on loopback with the same 3 s lifetime, run the
# scripted exchange against both, print the side-by-side table, and fail on any difference that
# fidelity/known-differences.toml does not list with a reason.
#
#   fidelity/check.sh                 # uses target/debug/rotary (built by `cargo test`), else builds it
#   ROTARY_BIN=target/release/rotary fidelity/check.sh
#   FIDELITY_OPTIONAL=1 fidelity/check.sh   # exit 0 with a warning when Synapse cannot be installed
#
# Exit status: 0 all steps identical or known; 1 an unexplained difference; 2 could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

export SYNAPSE_DIR="${SYNAPSE_DIR:-/tmp/rotary-fidelity-synapse}"
export SYNAPSE_PORT="${SYNAPSE_PORT:-8458}"
export LIFETIME="3s"
ROTARY_PORT="${ROTARY_PORT:-18458}"
ROTARY_BIN="${ROTARY_BIN:-target/debug/rotary}"

say() { echo "[fidelity] $*" >&2; }
unavailable() {
    if [[ "${FIDELITY_OPTIONAL:-}" == 1 ]]; then
        say "WARNING: $* — fidelity check skipped (FIDELITY_OPTIONAL=1)"
        exit 0
    fi
    say "cannot run: $*"
    exit 2
}

command -v python3 >/dev/null || unavailable "python3 is not installed"
python3 -c 'import venv' 2>/dev/null || unavailable "python3 has no venv module (apt install python3-venv)"
if [[ ! -x "$ROTARY_BIN" ]]; then
    say "building $ROTARY_BIN"
    cargo build -q -p rotary
fi

rotary_pid=""
cleanup() {
    [[ -n "$rotary_pid" ]] && kill "$rotary_pid" 2>/dev/null || true
    fidelity/run-synapse.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

fidelity/run-synapse.sh reset >/dev/null 2>&1 || true
if ! fidelity/run-synapse.sh >/dev/null; then
    unavailable "Synapse could not be installed or started (see $SYNAPSE_DIR/homeserver.log)"
fi

"$ROTARY_BIN" serve --port "$ROTARY_PORT" --refreshable-access-token-lifetime "$LIFETIME" >/dev/null 2>&1 &
rotary_pid=$!
for _ in $(seq 50); do
    curl -fs "http://127.0.0.1:$ROTARY_PORT/_matrix/client/versions" >/dev/null 2>&1 && break
    sleep 0.1
done

synapse_version=$("$SYNAPSE_DIR/venv/bin/python" -c 'import synapse; print(synapse.__version__)' 2>/dev/null || echo "?")
say "Synapse $synapse_version on :$SYNAPSE_PORT vs rotary serve on :$ROTARY_PORT (lifetime $LIFETIME)"
python3 fidelity/compare.py \
    --a "http://127.0.0.1:$SYNAPSE_PORT" --a-name synapse \
    --b "http://127.0.0.1:$ROTARY_PORT" --b-name rotary \
    --lifetime-ms 3000 --known fidelity/known-differences.toml
