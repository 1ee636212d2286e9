"""A logfmt scanner following go-logfmt's rules (bare keys, quoted values with escapes)."""

from __future__ import annotations

import orjson


def _quoted(line: str, i: int) -> tuple[str | None, int]:
    """Value starting at the opening quote at i → (value or None on error, next index)."""
    j = i + 1
    n = len(line)
    escaped = False
    while j < n:
        c = line[j]
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            raw = line[i : j + 1]
            if "\\" not in raw:
                return raw[1:-1], j + 1
            try:
                return str(orjson.loads(raw)), j + 1
            except orjson.JSONDecodeError:
                return None, j + 1
        j += 1
    return None, n


def scan_logfmt(line: str, strict: bool = False) -> tuple[list[tuple[str, str]], str]:
    """(key, value) pairs and an error message ('' when none).

    Non-strict mode skips a malformed pair and continues; strict mode stops at it.
    """
    out: list[tuple[str, str]] = []
    n = len(line)
    i = 0
    while i < n:
        while i < n and line[i] <= " ":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and line[i] > " " and line[i] not in '="':
            i += 1
        key = line[start:i]
        err = ""
        if not key:
            err = f"logfmt syntax error at pos {i + 1} : unexpected '{line[i]}'"
        elif i < n and line[i] == '"':
            err = f"logfmt syntax error at pos {i + 1} : unexpected '\"'"
        if err:
            if strict:
                return out, err
            while i < n and line[i] > " ":
                i += 1
            continue
        if i >= n or line[i] != "=":
            out.append((key, ""))
            continue
        i += 1
        if i < n and line[i] == '"':
            value, i = _quoted(line, i)
            if value is None:
                if strict:
                    return out, f"logfmt syntax error at pos {i + 1} : unterminated quoted value"
                continue
            out.append((key, value))
            continue
        vstart = i
        while i < n and line[i] > " " and line[i] not in '="':
            i += 1
        if i < n and line[i] in '="':
            if strict:
                return out, f"logfmt syntax error at pos {i + 1} : unexpected '{line[i]}'"
            while i < n and line[i] > " ":
                i += 1
            continue
        out.append((key, line[vstart:i]))
    return out, ""
