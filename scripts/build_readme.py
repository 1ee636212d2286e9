"""Refresh README.md: the sections that live in docs/readme/*.md, and the table of contents.

README.md holds `<!-- include: docs/readme/NAME.md -->` ... `<!-- end include -->` pairs;
this script replaces what stands between them with the file's current text. It then
writes the table of contents between `<!-- toc -->` and `<!-- end toc -->` from the
README's `##`, `###` and `####` headings (anchors as GitHub makes them), so it never goes stale.
`--check` exits 1 when README.md is out of date (the test suite runs it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_BLOCK = re.compile(r"(<!-- include: (\S+) -->\n)(.*?)(<!-- end include -->)", re.DOTALL)
_TOC = re.compile(r"(<!-- toc -->\n)(.*?)(<!-- end toc -->)", re.DOTALL)


_LINK = re.compile(r"(\]\()(?!https?:|#|/)([^)\s]+)(\))")


def _rebase(body: str, source: Path) -> str:
    """Relative links in a section are written from its own folder; README is at the root."""
    def fix(m: re.Match[str]) -> str:
        path, sep, frag = m.group(2).partition("#")
        target = (source.parent / path).resolve()
        return m.group(1) + target.relative_to(ROOT).as_posix() + sep + frag + m.group(3)

    return _LINK.sub(fix, body)


def headings(text: str) -> list[tuple[int, str]]:
    """(level, text) of each Markdown heading outside code fences, in order."""
    out: list[tuple[int, str]] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"(#{1,6}) +(.+?) *#*$", line)
        if m and not fenced:
            out.append((len(m.group(1)), m.group(2)))
    return out


def _plain(title: str) -> str:
    """A heading's text as rendered: links keep their text; code and emphasis marks go."""
    return _linkless(title).replace("`", "").replace("**", "").replace("*", "")


def _linkless(title: str) -> str:
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)


def anchors(text: str) -> list[tuple[int, str, str]]:
    """(level, title, anchor) per heading, with GitHub's -1, -2 for repeated titles."""
    seen: dict[str, int] = {}
    out = []
    for level, title in headings(text):
        slug = re.sub(r"[^\w\- ]", "", _plain(title).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.append((level, _linkless(title), slug if n == 0 else f"{slug}-{n}"))
    return out


def toc(text: str) -> str:
    """The table of contents of `text`: a bullet per `##` heading, a nested one per `###`,
    and the `####` headings on the line of the bullet above them. The heading just above
    the toc marker (the toc's own) is left out, and so is a `###` that repeats its
    `##` (its `####` go on the `##` line)."""
    own = len(headings(text[:text.find("<!-- toc -->")])) - 1
    lines: list[str] = []
    parent, children = "", False
    for i, (level, title, slug) in enumerate(anchors(text)):
        if i == own:
            continue
        if level == 2:
            parent, children = title, False
            lines.append(f"- [{title}](#{slug})")
        elif level == 3 and title != parent:
            children = False
            lines.append(f"  - [{title}](#{slug})")
        elif level == 4 and lines:
            lines[-1] += f"{' · ' if children else ' — '}[{title}](#{slug})"
            children = True
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    def fill(m: re.Match[str]) -> str:
        source = ROOT / m.group(2)
        body = _rebase(source.read_text().rstrip() + "\n", source)
        return m.group(1) + body + m.group(4)

    text = _BLOCK.sub(fill, text)
    contents = toc(text)
    return _TOC.sub(lambda m: m.group(1) + contents + m.group(3), text)


def main() -> int:
    current = README.read_text()
    fresh = render(current)
    if "--check" in sys.argv[1:]:
        if fresh != current:
            print("README.md is out of date: run python scripts/build_readme.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
