"""How a line becomes Drain tokens, by the stream's format (guessed from its first line),
with the rules of Loki's pattern ingester: plain text is cut at spaces and punctuation,
logfmt into its keys and values (time-like fields as placeholders), and JSON lines are
mined only through their message field.

A tokenizer returns the tokens and a `state` its `join` needs to write the pattern back
(the positions of the spaces), or None when the line is not mined.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Protocol

import orjson
import re2

from sluiceway.logql import scan_logfmt

PARAM = "<_>"

Tokens = tuple[list[str], list[int] | None]

# Loki's guess at a stream's format from its first line (RE2: no runaway backtracking).
_LOGFMT_LINE = re2.compile(r'^(\w+?=([^"]\S*?|".+?") )*?(\w+?=([^"]\S*?|".+?"))+$')


def detect_format(line: str) -> str:
    if len(line) < 2:
        return "unknown"
    if line[0] == "{" and line[-1] == "}":
        return "json"
    if _LOGFMT_LINE.search(line):
        return "logfmt"
    return "unknown"


class Tokenizer(Protocol):
    def tokenize(self, line: str) -> Tokens | None: ...

    def join(self, tokens: list[str], state: list[int] | None) -> str: ...


# Cut at spaces (dropped, remembered), `=` and punctuation (each its own token) — but not
# at `_ - . : /`, which hold identifiers, paths, times and addresses together.
_KEEP = set("_-.:/")
_ASCII_CUT = "".join(c for c in map(chr, range(33, 127))
                     if c == "=" or (unicodedata.category(c).startswith("P") and c not in _KEEP))
_CUT_CLASS = "[" + re.escape(_ASCII_CUT) + "]"
# A token (a run of other characters, or one cut character) and the spaces after it.
_ASCII_TOKEN = re.compile("([^ " + re.escape(_ASCII_CUT) + "]+|" + _CUT_CLASS + ")( *)")


def _cuts(c: str) -> bool:
    return c == " " or c == "=" or (unicodedata.category(c)[0] == "P" and c not in _KEEP)


def _pieces(line: str) -> list[tuple[str, str]]:
    """(token, the spaces after it), in order; spaces before the first token dropped."""
    line = line.lstrip(" ")
    if line.isascii():
        return _ASCII_TOKEN.findall(line)
    out: list[tuple[str, str]] = []
    start = 0
    for i, c in enumerate(line):
        if _cuts(c):
            if i > start:
                out.append((line[start:i], ""))
            if c == " ":
                if out:
                    out[-1] = (out[-1][0], out[-1][1] + " ")
            else:
                out.append((c, ""))
            start = i + 1
    if start < len(line):
        out.append((line[start:], ""))
    return out


class PunctuationTokenizer:
    """Tokens, and as state the number of spaces after each (to write the line back)."""

    def __init__(self, max_line_length: int) -> None:
        self.max_line_length = max_line_length

    def tokenize(self, line: str) -> Tokens | None:
        if len(line) > self.max_line_length:
            return None
        pieces = _pieces(line)
        return [t for t, _ in pieces], [len(sp) for _, sp in pieces]

    def join(self, tokens: list[str], state: list[int] | None) -> str:
        spaces = state or [0] * len(tokens)
        return "".join(t + " " * n for t, n in zip(tokens, spaces, strict=False))


_TIME_KEYS = {"ts", "traceid", "time", "timestamp"}  # any case; and `t` as written


def _quote_logfmt(value: str) -> str:
    """A value as go-logfmt writes it: quoted when it holds a space, `=`, `"` or a
    control character."""
    if value and not any(c <= " " or c in '="\ufffd' for c in value):
        return value
    if not value:
        return ""
    return orjson.dumps(value).decode()


# Plain logfmt (`k=v k="quoted \\" v" bare`): checked whole with RE2 (linear time), then
# cut with a regex; anything else goes through the exact (slower) decoder.
_LF_PAIR = r'([^\s="]+)(?:=("(?:[^"\\]|\\.)*"|[^\s"=]*))?'
_LF_PLAIN = re2.compile(rf"\s*(?:{_LF_PAIR}(?:\s+|$))*")
_LF_FIND = re.compile(_LF_PAIR)


def _logfmt_pairs(line: str) -> list[tuple[str, str]] | None:
    """go-logfmt's (key, value) pairs of a line, or None when it is no valid logfmt."""
    if _LF_PLAIN.fullmatch(line):
        out = []
        for k, v in _LF_FIND.findall(line):
            if v.startswith('"'):
                v = str(orjson.loads(v)) if "\\" in v else v[1:-1]
            out.append((k, v))
        return out
    pairs, err = scan_logfmt(line, strict=True)
    return None if err else pairs


class LogfmtTokenizer:
    def __init__(self, max_line_length: int) -> None:
        self.max_line_length = max_line_length

    def tokenize(self, line: str) -> Tokens | None:
        if len(line) > self.max_line_length:
            return None
        try:
            pairs = _logfmt_pairs(line)
        except orjson.JSONDecodeError:  # an escape JSON does not know
            pairs, err = scan_logfmt(line, strict=True)
            pairs = None if err else pairs
        if pairs is None:
            return None
        tokens: list[str] = []
        for k, v in pairs:
            tokens += (k, PARAM if k == "t" or k.lower() in _TIME_KEYS else v)
        return tokens, None

    def join(self, tokens: list[str], state: list[int] | None) -> str:
        if len(tokens) % 2:
            tokens = [*tokens, ""]
        out = []
        for i in range(0, len(tokens), 2):
            k = tokens[i]
            if not k or any(c <= " " or c in '="' for c in k):
                return ""  # go-logfmt refuses such a key, and so the whole pattern
            out.append(f"{k}={_quote_logfmt(tokens[i + 1])}")
        return " ".join(out)


class JsonTokenizer:
    """The first of `fields` that is a string at the top level, cut as plain text; the
    pattern is written `<_>message<_>` (the rest of the line is not mined)."""

    def __init__(self, max_line_length: int, fields: list[str]) -> None:
        self.text = PunctuationTokenizer(max_line_length)
        self.max_line_length = max_line_length
        self.fields = fields

    def tokenize(self, line: str) -> Tokens | None:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        for key in self.fields:
            v = obj.get(key)
            if isinstance(v, str):
                raw = orjson.dumps(v).decode()[1:-1]  # as written in the line
                return None if len(raw) > self.max_line_length else self.text.tokenize(raw)
        return None

    def join(self, tokens: list[str], state: list[int] | None) -> str:
        return PARAM + self.text.join(tokens, state) + PARAM


_RUNS = re.compile("(?:" + re.escape(PARAM) + "){2,}")


def dedupe_params(pattern: str) -> str:
    """`<_><_>` and longer runs written as one `<_>`."""
    return _RUNS.sub(PARAM, pattern) if PARAM + PARAM in pattern else pattern


def tokenizer_for(fmt: str, max_line_length: int, json_fields: list[str]) -> Tokenizer:
    if fmt == "json":
        return JsonTokenizer(max_line_length, json_fields)
    if fmt == "logfmt":
        return LogfmtTokenizer(max_line_length)
    return PunctuationTokenizer(max_line_length)
