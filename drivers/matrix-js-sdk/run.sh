#!/usr/bin/env bash
# Runs the Rotary catalogue against matrix-js-sdk.
#
#   drivers/matrix-js-sdk/run.sh [--sdk 43|42] [rotary run options and id globs…]
#
# --sdk (first argument only; default 43) picks the SDK: 43 = matrix-js-sdk 43.x (OAuth refresh),
# 42 = matrix-js-sdk 42.4.0 (legacy refresh through the app's tokenRefreshFunction). Everything
# else goes to `rotary run` (e.g. --json FILE, --expect FILE, -j N, scenario id globs).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../target-dir.sh
source "$here/../target-dir.sh"

sdk=43
if [[ $# -ge 2 && "$1" == "--sdk" ]]; then
  sdk="$2"
  shift 2
elif [[ $# -ge 1 && "$1" == --sdk=* ]]; then
  sdk="${1#--sdk=}"
  shift
fi
case "$sdk" in
  42|43) ;;
  *) echo "run.sh: --sdk must be 42 or 43, not '$sdk'" >&2; exit 2 ;;
esac

command -v node >/dev/null || { echo "run.sh: node is not installed" >&2; exit 2; }

# Install the locked dependencies when node_modules is missing or older than the lock file.
if [[ ! -f "$here/node_modules/.package-lock.json" \
      || "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

cd "$root"
cargo build --release -p rotary --locked --quiet
rotary="$(target_dir "$root/Cargo.toml")/release/rotary"

# The SDK backs off after a refresh that did not cure the 401: 2^attempt seconds (4 s, 8 s, …,
# capped at 32 s) before each further refresh (src/http-api/refresh.ts doTokenRefresh). The default
# 30 s per call is enough for every scenario that ends; see README.md.
exec "$rotary" run --driver "node $here/driver.mjs --sdk $sdk" "$@"
