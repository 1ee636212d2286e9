"""Refresh the sections of README.md that live in docs/readme/*.md.

README.md holds `<!-- include: docs/readme/NAME.md -->` ... `<!-- end include -->` pairs;
this script replaces what stands between them with the file's current text.
`--check` exits 1 when README.md is out of date (the test suite runs it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_BLOCK = re.compile(r"(<!-- include: (\S+) -->\n)(.*?)(<!-- end include -->)", re.DOTALL)


_LINK = re.compile(r"(\]\()(?!https?:|#|/)([^)\s]+)(\))")


def _rebase(body: str, source: Path) -> str:
    """Relative links in a section are written from its own folder; README is at the root."""
    def fix(m: re.Match[str]) -> str:
        target = (source.parent / m.group(2)).resolve()
        return m.group(1) + target.relative_to(ROOT).as_posix() + m.group(3)

    return _LINK.sub(fix, body)


def render(text: str) -> str:
    def fill(m: re.Match[str]) -> str:
        source = ROOT / m.group(2)
        body = _rebase(source.read_text().rstrip() + "\n", source)
        return m.group(1) + body + m.group(4)

    return _BLOCK.sub(fill, text)


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
