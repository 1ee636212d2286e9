"""LogQL tokens with line/column positions (columns count characters from 1, like Go)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from sluiceway.logql._errors import ParseError
from sluiceway.model import go_unquote, parse_humanize_bytes, quote

# Kinds: IDENT STRING NUMBER DURATION BYTES FLAG OP EOF
_OPS = ("|=", "|~", "|>", "!=", "!~", "!>", "=~", "==", ">=", "<=", "=", ">", "<", "|",
        "(", ")", "{", "}", "[", "]", ",", "+", "-", "*", "/", "%", "^")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FLAG_RE = re.compile(r"--[A-Za-z][A-Za-z0-9_-]*")
_NUM_RE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DUR_RE = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d|w|y))+(?![A-Za-z0-9_])")
# What may follow a number in a bytes literal (Loki's lexer): units without EB, digits, `.`.
_BYTES_RUNES = frozenset("BikKMGTP.")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str  # the source text (for STRING: the unquoted value)
    line: int
    col: int

    def describe(self) -> str:
        """How goyacc names the token in `unexpected X`."""
        if self.kind == "EOF":
            return "$end"
        if self.kind == "OP":
            return self.text
        if self.kind == "IDENT":
            return "IDENTIFIER"
        return self.kind


def _unquote(body: str, line: int, col: int) -> str:
    """Go strconv.Unquote of a double-quoted string body."""
    try:
        return go_unquote(body)
    except (ValueError, OverflowError):
        raise ParseError("invalid syntax", line, col) from None


class Lexer:
    """Turns query text into tokens; `#` comments run to the end of the line."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.line_start = 0

    def _col(self, pos: int) -> int:
        return pos - self.line_start + 1

    def _skip_space(self) -> None:
        t = self.text
        while self.pos < len(t):
            ch = t[self.pos]
            if ch == "\n":
                self.pos += 1
                self.line += 1
                self.line_start = self.pos
            elif ch in " \t\r":
                self.pos += 1
            elif ch == "#":
                end = t.find("\n", self.pos)
                self.pos = len(t) if end < 0 else end
            else:
                return

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        while True:
            tok = self._next()
            out.append(tok)
            if tok.kind == "EOF":
                return out

    def _next(self) -> Token:
        self._skip_space()
        t, p = self.text, self.pos
        line, col = self.line, self._col(p)
        if p >= len(t):
            return Token("EOF", "", line, col)
        ch = t[p]
        if ch == '"' or ch == "`":
            return self._string(ch, line, col)
        if "0" <= ch <= "9" or (ch == "." and "0" <= t[p + 1 : p + 2] <= "9"
                                and t[p + 1 : p + 2] != ""):
            return self._number(line, col)
        m = _IDENT_RE.match(t, p)
        if m:
            self.pos = m.end()
            return Token("IDENT", m.group(), line, col)
        m = _FLAG_RE.match(t, p)
        if m:
            self.pos = m.end()
            return Token("FLAG", m.group(), line, col)
        for op in _OPS:
            if t.startswith(op, p):
                self.pos = p + len(op)
                return Token("OP", op, line, col)
        raise ParseError(f"syntax error: unexpected character {ch!r}", line, col)

    def _string(self, quote: str, line: int, col: int) -> Token:
        t, start = self.text, self.pos + 1
        if quote == "`":
            end = t.find("`", start)
            if end < 0:
                raise ParseError("literal not terminated", line, col)
            body = t[start:end]
            for _ in range(body.count("\n")):
                self.line += 1
            if "\n" in body:
                self.line_start = start + body.rfind("\n") + 1
            self.pos = end + 1
            return Token("STRING", body, line, col)
        i = start
        while i < len(t):
            c = t[i]
            if c == "\\":
                i += 2
                continue
            if c == '"':
                self.pos = i + 1
                return Token("STRING", _unquote(t[start:i], line, col), line, col)
            if c == "\n":
                break
            i += 1
        raise ParseError("literal not terminated", line, col)

    def _number(self, line: int, col: int) -> Token:
        t, p = self.text, self.pos
        m = _DUR_RE.match(t, p)
        if m:
            self.pos = m.end()
            return Token("DURATION", m.group(), line, col)
        m = _NUM_RE.match(t, p)
        assert m is not None
        end = m.end()  # a bytes literal as Loki's lexer takes one: the number, then units
        while end < len(t) and (t[end] in _BYTES_RUNES
                                or unicodedata.category(t[end]).startswith("N")):
            end += 1
        if end > m.end():
            try:
                parse_humanize_bytes(t[p:end])
            except ValueError:
                pass
            else:
                self.pos = end
                return Token("BYTES", t[p:end], line, col)
        if math.isinf(float(m.group())):  # as Go's ParseFloat, which Loki's lexer uses
            raise ParseError(f"strconv.ParseFloat: parsing {quote(m.group())}: value out of "
                             "range", line, col)
        self.pos = m.end()
        return Token("NUMBER", m.group(), line, col)


_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w|y)")
_DUR_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
           "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000,
           "w": 604_800_000_000_000, "y": 31_536_000_000_000_000}


MAX_DURATION_NS = 2**63 - 1  # Go's time.Duration: about 292 years


def duration_ns(text: str) -> int:
    """`1h30m`, `1.5s`, `2d` → ns (Prometheus units plus Go's fractional parts). Raises
    ValueError past int64 nanoseconds, where Loki's duration parsers fail too."""
    total = 0.0
    for num, unit in _DUR_PART.findall(text):
        total += float(num) * _DUR_NS[unit]
    if not total <= MAX_DURATION_NS:  # also infinity, from a number of 300 digits
        raise ValueError("duration out of range")
    return int(round(total))


_GO_DUR_RE = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_GO_DUR_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


_GO_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)",
                       re.IGNORECASE)


def parse_go_float(text: str) -> float | None:
    """A label value parsed like Go's strconv.ParseFloat (no spaces, no `_`), or None."""
    return float(text) if _GO_FLOAT.fullmatch(text) else None


def parse_go_duration(text: str) -> float | None:
    """A label value parsed like Go's time.ParseDuration (seconds), or None."""
    s = text.replace("\u03bcs", "µs")  # Go takes the Greek mu as well as the micro sign
    sign = -1.0 if s.startswith("-") else 1.0
    if s[:1] in "+-" and s:
        s = s[1:]
    if s == "0":
        return 0.0
    if not s or _GO_DUR_RE.fullmatch(s) is None:
        return None
    total = sum(float(n) * _DUR_NS[u] for n, u in _GO_DUR_PART.findall(s))
    return sign * total / 1e9


def parse_bytes(text: str) -> float | None:
    """A bytes literal or label value as Go's humanize.ParseBytes reads it (`10k`,
    `1.5 MB`, `1 KiB`, `1,000`; no sign), or None."""
    try:
        return float(parse_humanize_bytes(text))
    except ValueError:
        return None


def _bytes_error(text: str) -> str:
    try:
        parse_humanize_bytes(text)
    except ValueError as exc:
        return str(exc)
    return ""


# How a label value becomes a number, for typed label filters (by literal kind) and for
# `unwrap` (by conversion function), and the error detail Loki reports when it fails.
CONVERTERS: dict[str, tuple[Callable[[str], float | None], Callable[[str], str]]] = {
    "number": (parse_go_float, 'strconv.ParseFloat: parsing "{}": invalid syntax'.format),
    "duration": (parse_go_duration, 'time: invalid duration "{}"'.format),
    "duration_seconds": (parse_go_duration, 'time: invalid duration "{}"'.format),
    "bytes": (parse_bytes, _bytes_error),
}
