#!/usr/bin/env python3
"""Regenerates the README's generated sections: the catalogue table (from `rotary list --markdown`),
the bug-switch table (from harness/drivers/reference/README.md) and the kill matrix (from its insta
snapshot); and the `# Kill set (reference client, measured): …` comment of every scenario file that
has one, from the same snapshot. Run from the repository root after changing scenarios or switches:

    cargo build --release -p rotary-harness && python3 scripts/update-readme.py
"""
import re
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
readme = root / "README.md"
text = readme.read_text()


def replace(text, name, body):
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        sys.exit(f"README.md has no <!-- {name}:start --> … <!-- {name}:end --> markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


rotary = root / "target" / "release" / "rotary"
catalogue = subprocess.run([str(rotary), "list", "--markdown"], check=True, capture_output=True, text=True).stdout
text = replace(text, "catalogue", catalogue)

ref = (root / "harness/drivers/reference/README.md").read_text()
bugs = re.search(r"(\| name \|.*?)(\n\n|\Z)", ref, re.S)
if not bugs:
    sys.exit("no bug table in harness/drivers/reference/README.md")
text = replace(text, "bugs", bugs.group(1))

snap = (root / "tests/tests/snapshots/catalogue__kill_matrix.snap").read_text()
matrix = snap.split("---\n", 2)[2]
text = replace(text, "kill-matrix", "```text\n" + matrix.rstrip("\n") + "\n```")

readme.write_text(text)

# The kill set comments in scenario files, from the snapshot's rows and its numbered switch legend.
rows, legend = {}, {}
for line in matrix.splitlines():
    m = re.match(r"\s*(\d+) (\S+)$", line)
    if m:
        legend[int(m.group(1))] = m.group(2)
    elif line and not line.startswith("scenario") and " " in line:
        sid, *marks = line.split()
        rows[sid] = marks
changed = 0
for path in sorted((root / "scenarios").glob("*.toml")):
    sid = path.name[: -len(".toml")]
    src = path.read_text()
    m = re.search(r"^# Kill set \(reference client, measured\):.*\n(?:#   .*\n)*", src, re.M)
    if not m or sid not in rows:
        continue
    names = sorted(legend[i + 1] for i, x in enumerate(rows[sid]) if x == "X")
    words = ", ".join(names) if names else "none"
    line, lines = "# Kill set (reference client, measured):", []
    for w in words.split(" "):
        if len(line) + 1 + len(w) > 100:
            lines.append(line)
            line = "#  "
        line += " " + w
    lines.append(line)
    new = src[: m.start()] + "\n".join(lines) + "\n" + src[m.end() :]
    if new != src:
        path.write_text(new)
        changed += 1
print(f"README.md updated; kill set comments refreshed in {changed} scenario files")
