#!/usr/bin/env python3
"""Checks that every relative link in the repository's Markdown resolves: the file (or folder)
exists, and an anchor (`page.md#section`, `#section`) names a heading of the target page (GitHub's
slugs) or an explicit `<a id="…">`. External links (http:, https:, mailto:) are not fetched.

    python3 scripts/check-links.py                 # README.md, docs/*.md and every other tracked *.md
    python3 scripts/check-links.py README.md docs  # only these files / folders

Exit 1, listing `file:line: link — why`, when a link is broken; 0 otherwise.
"""
import re
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+).*?\1")
# [text](target) and ![alt](target); target up to whitespace or ')', optional "title".
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ID = re.compile(r"""<a\s+(?:[^>]*?\s)?(?:id|name)=["']([^"']+)["']""", re.I)


def markdown_files(args):
    if args:
        out = []
        for a in args:
            p = (Path.cwd() / a).resolve()
            out.extend(sorted(p.rglob("*.md")) if p.is_dir() else [p])
        return out
    listed = subprocess.run(["git", "ls-files", "*.md", "**/*.md"], cwd=root, capture_output=True, text=True)
    files = {root / f for f in listed.stdout.split()} if listed.returncode == 0 else set(root.rglob("*.md"))
    return sorted(f for f in files if "node_modules" not in f.parts and "target" not in f.parts and f.exists())


def lines_outside_code(text):
    """(line number, line with inline code blanked) for every line outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links → their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


_anchors = {}


def anchors(path):
    if path not in _anchors:
        found, seen = set(), {}
        text = path.read_text(encoding="utf-8")
        fenced = False
        for line in text.splitlines():
            if FENCE.match(line):
                fenced = not fenced
                continue
            if fenced:
                continue
            m = HEADING.match(line)
            if m:
                base = slug(m.group(2))
                k = seen.get(base, 0)
                seen[base] = k + 1
                found.add(base if k == 0 else f"{base}-{k}")
            found.update(HTML_ID.findall(line))
        _anchors[path] = found
    return _anchors[path]


def check(path):
    problems = []
    text = path.read_text(encoding="utf-8")
    for n, line in lines_outside_code(text):
        targets = [m.group(1) for m in LINK.finditer(line)]
        m = REF_DEF.match(line)
        if m:
            targets.append(m.group(1))
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, …
                continue
            file_part, _, anchor = target.partition("#")
            dest = path if not file_part else (path.parent / file_part).resolve()
            where = f"{path.relative_to(root)}:{n}: {target}"
            if not dest.exists():
                problems.append(f"{where} — no such file")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where} — no heading or <a id> \"{anchor}\" in {dest.relative_to(root)}")
    return problems


def main():
    files = markdown_files(sys.argv[1:])
    problems = [p for f in files for p in check(f)]
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(f"{len(problems)} broken link(s) in {len(files)} Markdown files")
    print(f"every relative link resolves ({len(files)} Markdown files)")


if __name__ == "__main__":
    main()
