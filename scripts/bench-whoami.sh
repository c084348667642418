#!/usr/bin/env bash
# bench-whoami.sh — whoami throughput of `rotary serve` against a bare axum baseline, in one run.
#
# What it does:
#   1. Builds `rotary` (crate rotary-harness) and the example `bare_whoami` (crate rotary-server)
#      in release mode, into $CARGO_TARGET_DIR if set, else <repo>/target.
#   2. Starts `rotary serve --port $ROTARY_PORT` and `bare_whoami $BARE_PORT` on 127.0.0.1.
#   3. Logs in to rotary as alice / wonderland (no refresh token, so the token never expires);
#      the baseline accepts its fixed token `syt_bench_token`.
#   4. Runs wrk with identical settings against `GET /_matrix/client/v3/account/whoami` on both,
#      $RUNS pairs, alternating which server goes first, after one untimed warm-up each.
#   5. Prints requests/s and latency p50/p99 per run, the medians, and the ratio rotary/bare.
#   The servers are killed on exit, whatever happens.
#
# Usage (from anywhere; needs cargo, curl and wrk — `apt-get install -y wrk` on Debian):
#   scripts/bench-whoami.sh
#   CARGO_TARGET_DIR=/tmp/bench-target scripts/bench-whoami.sh
#   WRK_THREADS=2 WRK_CONNS=64 WRK_DURATION=10s RUNS=3 scripts/bench-whoami.sh
#
# Knobs (environment): ROTARY_PORT (18101), BARE_PORT (18100), WRK_THREADS (2), WRK_CONNS (64),
#   WRK_DURATION (10s), WARMUP (3s; 0 skips it), RUNS (3), SKIP_BUILD (unset; 1 uses existing binaries).
#
# Everything (servers and load generator) shares this machine's cores, so absolute numbers say
# little; the ratio, measured side by side in one run, is the figure of interest.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROTARY_PORT="${ROTARY_PORT:-18101}"
BARE_PORT="${BARE_PORT:-18100}"
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNS="${WRK_CONNS:-64}"
WRK_DURATION="${WRK_DURATION:-10s}"
WARMUP="${WARMUP:-3s}"
RUNS="${RUNS:-3}"
WHOAMI_PATH="/_matrix/client/v3/account/whoami"
BARE_TOKEN="syt_bench_token"

die() {
    echo "bench-whoami: $*" >&2
    exit 1
}

for tool in cargo curl wrk; do
    command -v "$tool" >/dev/null || die "$tool not found (wrk: apt-get install -y wrk)"
done

# --- build -------------------------------------------------------------------------------------
cd "$ROOT"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    echo "building rotary and bare_whoami (release)..." >&2
    cargo build --release --quiet -p rotary-harness --bin rotary
    cargo build --release --quiet -p rotary-server --example bare_whoami
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
ROTARY_BIN="$TARGET_DIR/release/rotary"
BARE_BIN="$TARGET_DIR/release/examples/bare_whoami"
[[ -x "$ROTARY_BIN" ]] || die "missing $ROTARY_BIN"
[[ -x "$BARE_BIN" ]] || die "missing $BARE_BIN"

# --- servers -----------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-whoami.XXXXXX")"
ROTARY_PID=""
BARE_PID=""
cleanup() {
    local pid
    for pid in "$ROTARY_PID" "$BARE_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_busy() {
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
    return 1
}
for port in "$ROTARY_PORT" "$BARE_PORT"; do
    port_busy "$port" && die "port $port is already in use"
done

wait_ready() { # name pid url
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$2" 2>/dev/null || die "$1 exited early; log: $(cat "$WORK/$1.log")"
        curl -s -o /dev/null --max-time 1 "$3" && return 0
        sleep 0.1
    done
    die "$1 did not answer on $3 within 10s"
}

"$ROTARY_BIN" serve --port "$ROTARY_PORT" >"$WORK/rotary.log" 2>&1 &
ROTARY_PID=$!
"$BARE_BIN" "$BARE_PORT" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!
wait_ready rotary "$ROTARY_PID" "http://127.0.0.1:$ROTARY_PORT/_matrix/client/versions"
wait_ready bare "$BARE_PID" "http://127.0.0.1:$BARE_PORT$WHOAMI_PATH"

LOGIN_BODY='{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"wonderland"}'
login_resp="$(curl -sf -X POST -H 'Content-Type: application/json' -d "$LOGIN_BODY" \
    "http://127.0.0.1:$ROTARY_PORT/_matrix/client/v3/login")" || die "login to rotary failed"
ROTARY_TOKEN="$(sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p' <<<"$login_resp")"
[[ -n "$ROTARY_TOKEN" ]] || die "no access_token in login response: $login_resp"

declare -A URL TOKEN
URL[rotary]="http://127.0.0.1:$ROTARY_PORT$WHOAMI_PATH"
URL[bare]="http://127.0.0.1:$BARE_PORT$WHOAMI_PATH"
TOKEN[rotary]="$ROTARY_TOKEN"
TOKEN[bare]="$BARE_TOKEN"

for name in rotary bare; do
    body="$(curl -sf -H "Authorization: Bearer ${TOKEN[$name]}" "${URL[$name]}")" ||
        die "$name whoami check failed"
    [[ "$body" == *'"user_id"'* ]] || die "$name whoami answered: $body"
done

# --- load --------------------------------------------------------------------------------------
# Converts a wrk latency ("812.00us", "1.23ms", "1.02s") to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n
    }'
}

median() { # numbers...
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
        if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

run_wrk() { # name duration -> prints "rps p50_ms p99_ms non2xx errors"
    local out rps p50 p99 non2xx errs
    out="$(wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$2" --latency \
        -H "Authorization: Bearer ${TOKEN[$1]}" "${URL[$1]}")"
    echo "$out" >>"$WORK/wrk-$1.txt"
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    p50="$(awk '$1 == "50%" { print $2 }' <<<"$out")"
    p99="$(awk '$1 == "99%" { print $2 }' <<<"$out")"
    non2xx="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")"
    errs="$(awk '/Socket errors:/ { print $0 }' <<<"$out")"
    [[ -n "$rps" && -n "$p50" && -n "$p99" ]] || die "could not parse wrk output for $1:"$'\n'"$out"
    [[ -z "$non2xx" ]] || die "$1 answered $non2xx non-2xx responses:"$'\n'"$out"
    [[ -z "$errs" ]] || echo "warning: $1: $errs" >&2
    echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}

echo "whoami: wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION --latency, $RUNS alternating pairs," \
    "$(nproc) CPUs, warm-up ${WARMUP}"
if [[ "$WARMUP" != "0" && "$WARMUP" != "0s" ]]; then
    run_wrk rotary "$WARMUP" >/dev/null
    run_wrk bare "$WARMUP" >/dev/null
fi

declare -a R_RPS R_P50 R_P99 B_RPS B_P50 B_P99
printf '%-4s %-7s %12s %10s %10s\n' run server "req/s" "p50 ms" "p99 ms"
for ((run = 1; run <= RUNS; run++)); do
    if ((run % 2)); then order=(rotary bare); else order=(bare rotary); fi
    for name in "${order[@]}"; do
        result="$(run_wrk "$name" "$WRK_DURATION")"
        read -r rps p50 p99 <<<"$result"
        printf '%-4s %-7s %12s %10s %10s\n' "$run" "$name" "$rps" "$p50" "$p99"
        if [[ "$name" == rotary ]]; then
            R_RPS+=("$rps") R_P50+=("$p50") R_P99+=("$p99")
        else
            B_RPS+=("$rps") B_P50+=("$p50") B_P99+=("$p99")
        fi
    done
done

r_rps="$(median "${R_RPS[@]}")"
b_rps="$(median "${B_RPS[@]}")"
echo "median:"
printf '     %-7s %12s %10s %10s\n' rotary "$r_rps" "$(median "${R_P50[@]}")" "$(median "${R_P99[@]}")"
printf '     %-7s %12s %10s %10s\n' bare "$b_rps" "$(median "${B_P50[@]}")" "$(median "${B_P99[@]}")"
pairs=""
for ((i = 0; i < RUNS; i++)); do
    pairs+="$(awk -v r="${R_RPS[$i]}" -v b="${B_RPS[$i]}" 'BEGIN { printf "%.3f", r / b }') "
done
echo "per-pair ratio rotary/bare: ${pairs% }"
awk -v r="$r_rps" -v b="$b_rps" 'BEGIN { printf "ratio rotary/bare (median req/s): %.3f\n", r / b }'
rss_kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$ROTARY_PID/status" 2>/dev/null || true)"
[[ -z "$rss_kb" ]] || echo "rotary RSS after the runs: $((rss_kb / 1024)) MiB"
