"""Paths of `| json label="a.b[0].c"` and `["key with.dots"]`: compiled to a getter."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_STEP = re.compile(r'\.?([^.\[\]"]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


class JsonPathError(ValueError):
    pass


def parse_path(text: str) -> list[str | int]:
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None or m.end() == pos:
            raise JsonPathError(f"invalid json path {text!r}")
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(int(m.group(2)))
        else:
            steps.append(m.group(3).replace('\\"', '"'))
        pos = m.end()
    if not steps:
        raise JsonPathError("empty json path")
    return steps


def compile_path(text: str) -> Callable[[Any], Any]:
    """A function returning the value at the path, or None when any step is missing."""
    steps = parse_path(text)

    def get(obj: Any) -> Any:
        cur = obj
        for s in steps:
            if isinstance(s, int):
                if not isinstance(cur, list) or s >= len(cur):
                    return None
                cur = cur[s]
            else:
                if not isinstance(cur, dict) or s not in cur:
                    return None
                cur = cur[s]
        return cur

    return get
