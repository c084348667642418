#!/usr/bin/env bash
# check-html.sh — renders a `rotary run --html DIR` report in headless Chromium and checks the pictures.
#
# What it does:
#   1. Takes DIR/index.html and one scenario page: PAGE if given (a file name inside DIR, or a
#      scenario id), else the first *.html other than index.html in name order.
#   2. Screenshots each with `chromium --headless` at 1400x2000 into $OUT (default: a new
#      temporary directory), as index.png and the page's name with .png.
#   3. Checks that each PNG exists, is larger than $MIN_BYTES (10000) and is not a single colour
#      (it decodes the PNG with python3's zlib and counts distinct pixels), then prints the paths.
#   Exit code 0 when every check held, 1 when one failed, 2 on a usage error or a missing tool.
#
# Usage:
#   scripts/check-html.sh DIR [PAGE]
#   OUT=/tmp/shots scripts/check-html.sh target/report concurrency.single-refresh
#   WINDOW=1400,4000 scripts/check-html.sh target/report      # a taller screenshot
#
# Needs chromium (Debian: `apt-get install -y chromium`; CHROMIUM=/path/to/chrome overrides) and python3.
set -euo pipefail

usage() {
	sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
dir=$1
[ -f "$dir/index.html" ] || {
	echo "check-html: $dir/index.html does not exist" >&2
	exit 2
}
dir=$(cd "$dir" && pwd)

page=${2:-}
if [ -n "$page" ]; then
	case $page in
	*.html) ;;
	*) page=$page.html ;;
	esac
	[ -f "$dir/$page" ] || {
		echo "check-html: $dir/$page does not exist" >&2
		exit 2
	}
else
	page=$(cd "$dir" && find . -maxdepth 1 -name '*.html' ! -name index.html -printf '%f\n' | LC_ALL=C sort | head -n 1)
	[ -n "$page" ] || {
		echo "check-html: no scenario page in $dir" >&2
		exit 2
	}
fi

chromium=${CHROMIUM:-}
if [ -z "$chromium" ]; then
	for c in chromium chromium-browser google-chrome google-chrome-stable; do
		if command -v "$c" >/dev/null 2>&1; then
			chromium=$(command -v "$c")
			break
		fi
	done
fi
[ -n "$chromium" ] || {
	echo "check-html: chromium not found (Debian: apt-get install -y chromium; or set CHROMIUM)" >&2
	exit 2
}
command -v python3 >/dev/null 2>&1 || {
	echo "check-html: python3 not found" >&2
	exit 2
}

out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/rotary-html-shots.XXXXXX")}
mkdir -p "$out"
window=${WINDOW:-1400,2000}
min_bytes=${MIN_BYTES:-10000}

# A private profile so that a running browser or a locked profile never interferes.
profile=$(mktemp -d "${TMPDIR:-/tmp}/rotary-chromium-profile.XXXXXX")
trap 'rm -rf "$profile"' EXIT

shoot() { # html-file png-file
	local log=$out/$(basename "$2" .png).chromium.log
	if ! timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
		--user-data-dir="$profile" --no-first-run --disable-extensions \
		--screenshot="$2" --window-size="$window" "file://$1" >"$log" 2>&1; then
		echo "check-html: chromium failed on $1 (see $log)" >&2
		return 1
	fi
}

# Prints "WIDTHxHEIGHT COLOURS" of a PNG: distinct colours among a grid of sampled pixels.
png_stats() {
	python3 - "$1" <<'PY'
import struct, sys, zlib

data = open(sys.argv[1], "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit("not a PNG")
pos, idat, width = 8, b"", 0
while pos < len(data):
    (length,) = struct.unpack(">I", data[pos:pos + 4])
    kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat += body
    pos += 12 + length
if depth != 8 or interlace != 0 or ctype not in (0, 2, 4, 6):
    print(f"{width}x{height} unknown")  # unusual encoding: size check only
    sys.exit(0)
bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
raw, stride = zlib.decompress(idat), width * bpp
rows, prev, i = [], bytearray(stride), 0
for _ in range(height):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b, c = prev[x], prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(bytes(line))
    prev = line
colours = set()
for y in range(0, height, max(1, height // 200)):
    for x in range(0, width, max(1, width // 200)):
        colours.add(rows[y][x * bpp:(x + 1) * bpp])
print(f"{width}x{height} {len(colours)}")
PY
}

status=0
for html in index.html "$page"; do
	png=$out/${html%.html}.png
	rm -f "$png"
	if ! shoot "$dir/$html" "$png"; then
		status=1
		continue
	fi
	if [ ! -s "$png" ]; then
		echo "FAIL $png: no screenshot" >&2
		status=1
		continue
	fi
	bytes=$(wc -c <"$png")
	if [ "$bytes" -le "$min_bytes" ]; then
		echo "FAIL $png: only $bytes bytes" >&2
		status=1
		continue
	fi
	read -r size colours < <(png_stats "$png") || {
		echo "FAIL $png: not a readable PNG" >&2
		status=1
		continue
	}
	if [ "$colours" != unknown ] && [ "$colours" -le 1 ]; then
		echo "FAIL $png: a single colour" >&2
		status=1
		continue
	fi
	rm -f "$out/${html%.html}.chromium.log"
	echo "ok   $png ($size, $bytes bytes, $colours sampled colours)"
done
exit "$status"
