#!/usr/bin/env python3
"""Regenerates the tables of docs/sdk-results.md ("Results against real SDKs") from the committed JSON reports.

The reports are `results/*.json.gz`: `rotary run --json` output of the whole catalogue, one per
client, gzipped (tokens are already labels). Column order: `reference` first, then by file name.
The column key is the file name without `.json.gz` (e.g. `matrix-js-sdk-43`).

Every cell that is not a pass, a skip or `info` links to `#f-<key>-<scenario id>`; the page's
hand-written failure analysis (below the table, in the same file) must hold an anchor `<a id="f-<key>-<scenario id>"></a>` for each,
and this script fails, naming the missing ones, when it does not. So a new failure cannot be
published without its analysis.

    python3 scripts/sdk-results.py            # rewrite the section of docs/sdk-results.md
    python3 scripts/sdk-results.py --check    # exit 1 if the page is stale or an analysis is missing

To refresh a column, rerun the client and gzip its report, e.g.:

    drivers/matrix-js-sdk/run.sh --sdk 43 --json results/matrix-js-sdk-43.json; gzip -f results/matrix-js-sdk-43.json
"""
import argparse
import fnmatch
import gzip
import json
import re
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
page = root / "docs" / "sdk-results.md"
PAGE = "docs/sdk-results.md"
MARK = "sdk-results"

# Column key -> the expectations file its CI job passes to `--expect`.
EXPECT = {
    "matrix-rust-sdk": "drivers/matrix-rust-sdk/expected-failures.txt",
    "matrix-js-sdk-43": "drivers/matrix-js-sdk/expected-failures-43.txt",
    "matrix-js-sdk-42": "drivers/matrix-js-sdk/expected-failures-42.txt",
    # A model of matrix-ios-sdk (drivers/matrix-ios-sdk), not the SDK: one list for both runs,
    # `run.sh` (Synapse, /v1/refresh → 404) and `run.sh --serve-v1-refresh`.
    "matrix-ios-sdk-model": "drivers/matrix-ios-sdk/expected-failures.txt",
    "matrix-ios-sdk-model-v1": "drivers/matrix-ios-sdk/expected-failures.txt",
}

# Column key -> a note after the client's name in the summary table (what the column is, when the
# driver's name and version do not say it all).
NOTES = {
    "matrix-ios-sdk-model": "a model, not the SDK; Synapse's paths (`/v1/refresh` → 404)",
    "matrix-ios-sdk-model-v1": "a model, not the SDK; the server also serves `/v1/refresh`",
}

# Verdict -> (cell text, needs an analysis anchor).
CELLS = {
    "pass": ("pass", False),
    "fail": ("**FAIL**", True),
    "non-strict": ("non-strict", True),
    "info": ("info", False),
    "skipped": ("skip", False),
    "error": ("**ERROR**", True),
    "timeout": ("**TIMEOUT**", True),
}


def load(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        report = json.load(f)
    if report.get("schema") != 1:
        sys.exit(f"{path}: unsupported report schema {report.get('schema')!r} (expected 1)")
    return report


def columns(paths):
    cols = []
    for p in paths:
        key = p.name[: -len(".json.gz")]
        cols.append((key, load(p)))
    cols.sort(key=lambda c: (c[0] != "reference", c[0]))
    return cols


def render(cols):
    out = []
    out.append("| client | pass | fail | non-strict | info | skipped | error | timeout | wall time | run on |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for key, r in cols:
        s, d = r["summary"], r["driver"]
        note = f"; {NOTES[key]}" if key in NOTES else ""
        out.append(
            f"| {d['name']} {d['version']} (`{key}`{note}) | {s['pass']} | {s['fail']} | {s['non_strict']} | "
            f"{s['info']} | {s['skipped']} | {s['error']} | {s['timeout']} | "
            f"{s['duration_ms'] / 1000:.1f} s | {r['started_at'][:10]} |"
        )
    out.append("")
    ids = []
    levels = {}
    for _, r in cols:
        for sc in r["scenarios"]:
            if sc["id"] not in levels:
                ids.append(sc["id"])
                levels[sc["id"]] = sc["level"]
    ids.sort()
    names = [f"{r['driver']['name']} {r['driver']['version']}" for _, r in cols]
    # Two runs of one client (e.g. the matrix-ios-sdk model with and without /v1/refresh) would
    # have the same heading: add the column key to those.
    header = " | ".join(n if names.count(n) == 1 else f"{n} (`{key}`)" for n, (key, _) in zip(names, cols))
    out.append(f"| scenario | level | {header} |")
    out.append("|---|---|" + "---|" * len(cols))
    needed = []
    for sid in ids:
        cells = []
        for key, r in cols:
            sc = next((s for s in r["scenarios"] if s["id"] == sid), None)
            if sc is None:
                cells.append("—")
                continue
            text, analysed = CELLS[sc["verdict"]]
            if analysed:
                anchor = f"f-{key}-{sid}"
                needed.append(anchor)
                text = f"[{text}](#{anchor})"
            cells.append(text)
        out.append(f"| `{sid}` | {levels[sid]} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(
        "`skip`: the driver lacks a capability the scenario `needs`; `—`: the scenario was not in that run. "
        "Every other non-pass links to its analysis below."
    )
    return "\n".join(out), needed


def aliases():
    """Old id -> the case it names now (`aliases = { oauth = ["oauth.x"] }` in a scenario file whose
    requirement holds for both mechanisms: the OAuth case is `ID@oauth`). A report made before a
    scenario was folded still carries the old id; `rotary run --expect` resolves it the same way."""
    import tomllib
    out = {}
    for f in sorted((root / "scenarios").glob("*.toml")):
        d = tomllib.loads(f.read_text())
        both = len(d.get("auth", ["legacy"])) > 1
        for mech, olds in d.get("aliases", {}).items():
            case = d["id"] + (f"@{mech}" if both and mech != "legacy" else "")
            for old in olds:
                out[old] = case
    return out


def expectation_problems(cols):
    """Compares each column's failures with its expectations file: a `must` scenario that failed
    (fail, error or timeout) and is not listed (by its id, or by the case an old id now names)
    would make that SDK's CI job fail."""
    problems = []
    renamed = aliases()
    for key, r in cols:
        rel = EXPECT.get(key)
        if rel is None or not (root / rel).exists():
            continue
        patterns = []
        for line in (root / rel).read_text().splitlines():
            body = line.split("#", 1)[0].strip()
            if body:
                patterns.append(body)
        for sc in r["scenarios"]:
            names = [sc["id"]] + ([renamed[sc["id"]]] if sc["id"] in renamed else [])
            listed = any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns)
            if sc["level"] == "must" and sc["verdict"] in ("fail", "error", "timeout") and not listed:
                problems.append(f"{rel}: {sc['id']} failed ({sc['verdict']}) in results/{key}.json.gz but is not listed")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help=f"fail if the section of {PAGE} is stale")
    ap.add_argument("reports", nargs="*", type=Path, help="default: results/*.json.gz")
    args = ap.parse_args()
    paths = args.reports or sorted((root / "results").glob("*.json.gz"))
    if not paths:
        sys.exit("no reports: expected results/*.json.gz (see this script's docstring)")
    for p in paths:
        if not p.name.endswith(".json.gz"):
            sys.exit(f"{p}: reports must be gzipped JSON named <column>.json.gz")
    cols = columns(paths)
    body, needed = render(cols)
    text = page.read_text()
    pattern = re.compile(rf"(<!-- {MARK}:start -->\n).*?(<!-- {MARK}:end -->)", re.S)
    if not pattern.search(text):
        sys.exit(f"{PAGE} has no <!-- {MARK}:start --> … <!-- {MARK}:end --> markers")
    new = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    missing = [a for a in needed if f'<a id="{a}"></a>' not in new]
    if missing:
        print(f"{PAGE} lacks a failure analysis for:", file=sys.stderr)
        for a in missing:
            print(f'  <a id="{a}"></a>', file=sys.stderr)
    problems = expectation_problems(cols)
    for p in problems:
        print(p, file=sys.stderr)
    if args.check:
        if problems:
            sys.exit(1)
        if new != text:
            sys.exit(f"{PAGE} is stale: run python3 scripts/sdk-results.py")
        if missing:
            sys.exit(1)
        print(f"{PAGE}: SDK results are up to date")
        return
    page.write_text(new)
    print(f"{PAGE} updated from {len(paths)} reports")
    if missing or problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
