#!/usr/bin/env python3
"""Fail on a broken relative link or #anchor in README.md and docs/**/*.md.

    python3 tests/deploy/check_links.py [--fix]

Anchors are GitHub's heading slugs (lowercase; punctuation other than `-` and `_`
dropped; spaces become `-`; a repeated slug gets `-1`, `-2`). Links inside fenced
code blocks and inline code are ignored; http(s) and mailto links are not fetched.
With --fix, a link to an anchor missing from its target but present in exactly one
other page is rewritten to that page (used once when the README was split).
"""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose(text):
    """The lines outside fenced code, inline code removed."""
    out, fenced = [], False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else re.sub(r"`[^`]*`", "``", line))
    return out


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    seen, result = {}, set()
    fenced = False
    for line in open(path, encoding="utf-8").read().split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            k = seen.get(base, 0)
            result.add(base if k == 0 else f"{base}-{k}")
            seen[base] = k + 1
    return result


def pages():
    found = [os.path.join(ROOT, "README.md")]
    for d, _, files in os.walk(os.path.join(ROOT, "docs")):
        found += [os.path.join(d, f) for f in sorted(files) if f.endswith(".md")]
    return sorted(found)


def main():
    fix = "--fix" in sys.argv[1:]
    all_pages = pages()
    cache = {}

    def anchors_of(p):
        if p not in cache:
            cache[p] = anchors(p)
        return cache[p]

    broken = 0
    for page in all_pages:
        text = open(page, encoding="utf-8").read()
        here = os.path.dirname(page)
        lines = prose(text)
        new = text
        for n, line in enumerate(lines, 1):
            for m in LINK.finditer(line):
                target = m.group(1)
                if re.match(r"^(https?:|mailto:)", target):
                    continue
                path, _, frag = target.partition("#")
                dest = os.path.normpath(os.path.join(here, path)) if path else page
                rel = os.path.relpath(page, ROOT)
                if not os.path.exists(dest):
                    print(f"{rel}:{n}: {target}: no such file")
                    broken += 1
                    continue
                if not frag or not dest.endswith(".md") or os.path.isdir(dest):
                    continue
                if frag in anchors_of(dest):
                    continue
                holders = [p for p in all_pages if frag in anchors_of(p)]
                if fix and len(holders) == 1:
                    to = os.path.relpath(holders[0], here)
                    to = "" if holders[0] == page else to
                    new = new.replace(f"]({target})", f"]({to}#{frag})")
                    continue
                print(f"{rel}:{n}: {target}: no heading #{frag} in "
                      f"{os.path.relpath(dest, ROOT)}")
                broken += 1
        if fix and new != text:
            open(page, "w", encoding="utf-8").write(new)
    print(f"links: {len(all_pages)} pages checked, {broken} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
