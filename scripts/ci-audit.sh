#!/usr/bin/env bash
# CI for `rotary audit` (a few seconds): audits `rotary serve` with 2 s tokens (the synapse profile
# must be named), then a server with one knob changed (the closest profile and exactly that knob
# must be named), serves the written --profile-out config and audits it again (the same answer),
# runs a catalogue slice with `rotary run --server-config`, and checks that an unreachable server
# is exit 2 with a one-line error.
#
#   scripts/ci-audit.sh                       # uses target/release/rotary (built if missing)
#   ROTARY_BIN=target/debug/rotary scripts/ci-audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROTARY_BIN="${ROTARY_BIN:-target/release/rotary}"
PORT="${AUDIT_PORT:-18491}"
WORK="$(mktemp -d)"
say() { echo "[ci-audit] $*" >&2; }
if [[ ! -x "$ROTARY_BIN" ]]; then
    say "building $ROTARY_BIN"
    cargo build -q --release --locked -p rotary
fi

serve_pid=""
stop() { if [[ -n "$serve_pid" ]]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi; serve_pid=""; }
trap 'stop; rm -rf "$WORK"' EXIT
serve() {
    "$ROTARY_BIN" serve --port "$PORT" "$@" >"$WORK/serve.log" 2>&1 &
    serve_pid=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    say "rotary serve did not start:"; cat "$WORK/serve.log" >&2; exit 1
}
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps(d.get(sys.argv[2])))" "$@"; }

say "1. rotary serve (synapse profile, 2 s tokens): the audit must name synapse"
serve --refreshable-access-token-lifetime 2s
time "$ROTARY_BIN" audit --homeserver "http://127.0.0.1:$PORT" --register --json "$WORK/a.json" --profile-out "$WORK/a.toml"
stop
[[ "$(field "$WORK/a.json" profile)" == '"synapse"' ]] || { say "expected profile synapse"; exit 1; }

say "2. one knob changed (reuse_policy = grace-then-unknown): closest synapse, exactly that knob"
serve --refreshable-access-token-lifetime 2s --set 'reuse_policy="grace-then-unknown"'
"$ROTARY_BIN" audit --homeserver "http://127.0.0.1:$PORT" --user alice --password wonderland \
    --json "$WORK/b.json" --profile-out "$WORK/b.toml"
stop
[[ "$(field "$WORK/b.json" closest_profile)" == '"synapse"' ]] || { say "expected closest_profile synapse"; exit 1; }
knobs="$(python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['reproduction']['knobs']))" "$WORK/b.json")"
[[ "$knobs" == '{"reuse_policy": "grace-then-unknown"}' ]] || { say "expected the knob reuse_policy, got $knobs"; exit 1; }
cat "$WORK/b.toml"

say "3. the written config, served: the audit gives the same answer"
serve --config "$WORK/b.toml"
"$ROTARY_BIN" audit --homeserver "http://127.0.0.1:$PORT" --user alice --password wonderland --json "$WORK/c.json" >/dev/null
stop
python3 - "$WORK/b.json" "$WORK/c.json" <<'PY'
import json, sys
b, c = (json.load(open(p)) for p in sys.argv[1:])
assert b["observations"] == c["observations"], (b["observations"], c["observations"])
assert b["reproduction"]["knobs"] == c["reproduction"]["knobs"]
PY

say "4. rotary run --server-config with the written config (a catalogue slice)"
"$ROTARY_BIN" run --server-config "$WORK/b.toml" 'rotation.*' 'expiry.*' --no-progress

say "5. an unreachable server: exit 2 and one line naming the step"
set +e
"$ROTARY_BIN" audit --homeserver "http://127.0.0.1:$PORT" --register 2>"$WORK/err.txt" >/dev/null
rc=$?
set -e
cat "$WORK/err.txt" >&2
[[ $rc == 2 ]] || { say "expected exit 2, got $rc"; exit 1; }
grep -q "step versions: cannot reach" "$WORK/err.txt" || { say "expected the step in the error"; exit 1; }
[[ "$(wc -l <"$WORK/err.txt")" -le 1 ]] || { say "expected a one-line error"; exit 1; }
say "ok"
