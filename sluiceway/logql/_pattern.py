"""Loki's pattern language: `<name>` captures, `<_>` skips, literal text in between.

Matching walks the line left to right: the first literal must be a prefix, each capture
runs to the first occurrence of the next literal, a trailing capture takes the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PART_RE = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")


class PatternError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Pattern:
    # ("lit", text) or ("cap", name); "_" captures are skipped.
    parts: tuple[tuple[str, str], ...]

    @property
    def names(self) -> list[str]:
        return [v for k, v in self.parts if k == "cap" and v != "_"]

    @property
    def literals(self) -> list[str]:
        return [v for k, v in self.parts if k == "lit"]

    def match(self, line: str) -> dict[str, str] | None:
        """Captured values, or None when the line does not follow the pattern."""
        out: dict[str, str] = {}
        pos = 0
        parts = self.parts
        for i, (kind, val) in enumerate(parts):
            if kind == "lit":
                if i == 0:
                    if not line.startswith(val):
                        return None
                    pos = len(val)
                continue
            nxt = parts[i + 1][1] if i + 1 < len(parts) else None
            if nxt is None:
                end, after = len(line), len(line)
            else:
                end = line.find(nxt, pos)
                if end < 0:
                    return None
                after = end + len(nxt)
            if val != "_":
                out[val] = line[pos:end]
            pos = after
        return out


def compile_pattern(text: str, *, need_capture: bool = True) -> Pattern:
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in _PART_RE.finditer(text):
        if m.start() > pos:
            parts.append(("lit", text[pos : m.start()]))
        if parts and parts[-1][0] == "cap":
            raise PatternError("consecutive capture")
        parts.append(("cap", m.group(1)))
        pos = m.end()
    if pos < len(text):
        parts.append(("lit", text[pos:]))
    pat = Pattern(tuple(parts))
    names = pat.names
    if need_capture and not names:
        raise PatternError("at least one capture is required")
    if len(set(names)) != len(names):
        raise PatternError("duplicate capture")
    return pat
