"""A lenient, streaming walk over a JSON object, with the semantics of the scanner
behind Loki's `| json` (grafana/jsonparser's `ObjectEach`).

Loki does not validate the line first: it emits each leaf as it reaches it and stops at
the first malformed token, so the labels found before the error stay on the entry.
Being lenient the same way matters for matching its results: text after the closing
brace is ignored, a trailing comma is accepted, numbers are taken as written
(`12abc` included), and arrays and nested objects are only bracket-matched until
they are visited. Errors carry jsonparser's messages, which Loki puts in
`__error_details__`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TypeAlias

Path: TypeAlias = tuple[str, ...]

_WS_RUN = re.compile(r"[ \n\r\t]*")
# One `"key": value,` member whose value is a string or a plain scalar, with the
# separator after it: the common case, matched in one step. Anything else (nested
# values, odd tokens, malformed text) goes the character-level way.
_STR = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_MEMBER = re.compile(rf'{_STR}[ \n\r\t]*:[ \n\r\t]*(?:{_STR}|([^ \n\r\t,}}\]"\[{{]+))'
                     r"[ \n\r\t]*([,}])", re.DOTALL)
_TOKEN_END = re.compile(r"[ \n\r\t,}\]]")
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n",
                   "r": "\r", "t": "\t"}
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")

MALFORMED_JSON = "Malformed JSON error"
MALFORMED_STRING = "Value is string, but can't find closing '\"' symbol"
MALFORMED_ARRAY = "Value is array, but can't find closing ']' symbol"
MALFORMED_OBJECT = "Value looks like object, but can't find closing '}' symbol"
MALFORMED_ESCAPE = "Encountered an invalid escape sequence in a string"
UNKNOWN_VALUE = "Unknown value type"


class JsonScanError(Exception):
    """The first malformed token; str(err) is jsonparser's message."""


def _next_token(s: str, i: int) -> int:
    """Index of the first non-whitespace character at or after i, or -1."""
    o = _WS_RUN.match(s, i).end()  # type: ignore[union-attr]  # `*` always matches
    return o if o < len(s) else -1


def _string_end(s: str, i: int) -> int:
    """i is just past an opening quote: the index past the closing one, or -1."""
    while True:
        q = s.find('"', i)
        if q < 0:
            return -1
        j = q - 1
        while j >= i and s[j] == "\\":
            j -= 1
        if (q - 1 - j) % 2 == 0:  # an even run of backslashes does not escape the quote
            return q + 1
        i = q + 1


def _block_end(s: str, i: int, open_sym: str, close_sym: str) -> int:
    """s[i] opens a block: the index past its matching close (strings skipped), or -1."""
    level, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == '"':
            end = _string_end(s, i + 1)
            if end < 0:
                return -1
            i = end
            continue
        if c == open_sym:
            level += 1
        elif c == close_sym:
            level -= 1
            if level == 0:
                return i + 1
        i += 1
    return -1


def _hex4(s: str, i: int) -> int | None:
    return int(s[i:i + 4], 16) if _HEX4.fullmatch(s, i, i + 4) else None


def _unicode_escape(s: str, i: int) -> tuple[str, int] | None:
    """s[i:] starts with `\\u`: the character and the length consumed, or None."""
    r = _hex4(s, i + 2)
    if r is None:
        return None
    if not 0xD800 <= r <= 0xDFFF:
        return chr(r), 6
    # A surrogate must be followed by a low surrogate escape, as in Go's decoder.
    r2 = _hex4(s, i + 8) if s.startswith("\\u", i + 6) else None
    if r2 is None or r2 < 0xDC00:
        return None
    code = ((r - 0xD800) << 10 | (r2 - 0xDC00)) + 0x10000
    return (chr(code) if code <= 0x10FFFF else "\ufffd"), 12


def unescape(s: str) -> str | None:
    """A JSON string body with its escapes decoded; None for an invalid escape."""
    if "\\" not in s:
        return s
    out: list[str] = []
    i = 0
    while (j := s.find("\\", i)) >= 0:
        out.append(s[i:j])
        c = s[j + 1:j + 2]
        if c in _SIMPLE_ESCAPES and c:
            out.append(_SIMPLE_ESCAPES[c])
            i = j + 2
            continue
        got = _unicode_escape(s, j) if c == "u" else None
        if got is None:
            return None
        out.append(got[0])
        i = j + got[1]
    out.append(s[i:])
    return "".join(out)


def _scalar_kind(tok: str) -> str:
    first = tok[:1]
    if first in ("t", "f"):
        if tok in ("true", "false"):
            return "bool"
    elif first in ("n", "u"):
        if tok == "null":
            return "null"
    elif first and (first.isascii() and first.isdigit() or first == "-"):
        return "number"
    raise JsonScanError(UNKNOWN_VALUE)


def _value(s: str, i: int) -> tuple[str, str, int]:
    """The value starting at the next token from i: (kind, text, index past it).

    Strings come back without quotes and still escaped; objects and arrays as their
    whole bracketed text.
    """
    o = _next_token(s, i)
    if o < 0:
        raise JsonScanError(MALFORMED_JSON)
    c = s[o]
    if c == '"':
        end = _string_end(s, o + 1)
        if end < 0:
            raise JsonScanError(MALFORMED_STRING)
        return "string", s[o + 1:end - 1], end
    if c in "[{":
        end = _block_end(s, o, c, "]" if c == "[" else "}")
        if end < 0:
            raise JsonScanError(MALFORMED_ARRAY if c == "[" else MALFORMED_OBJECT)
        return ("array" if c == "[" else "object"), s[o:end], end
    m = _TOKEN_END.search(s, o)
    end = m.start() if m else len(s)
    tok = s[o:end]
    return _scalar_kind(tok), tok, end


def _leaf_text(kind: str, text: str) -> str:
    if kind != "string":
        return text
    value = unescape(text)
    # Loki turns an undecodable string into "" and replacement characters into spaces.
    return "" if value is None else value.replace("\ufffd", " ")


def _after_value(s: str, i: int) -> int:
    """Past a member: the index of the next key, or -1 at the closing brace."""
    o = _next_token(s, i)
    if o < 0:
        raise JsonScanError(MALFORMED_ARRAY)  # jsonparser's message for this case
    if s[o] == "}":
        return -1
    if s[o] != ",":
        raise JsonScanError(MALFORMED_OBJECT)
    return _after_comma(s, o + 1)


def _after_comma(s: str, i: int) -> int:
    o = _next_token(s, i)
    if o < 0:
        raise JsonScanError(MALFORMED_ARRAY)  # jsonparser's message for this case
    return o


def _key(s: str, o: int) -> tuple[str, int]:
    """s[o] should open a member's key: (unescaped key, index past the colon)."""
    if s[o] != '"':
        raise JsonScanError(MALFORMED_OBJECT)
    end = _string_end(s, o + 1)
    if end < 0:
        raise JsonScanError(MALFORMED_JSON)
    key = unescape(s[o + 1:end - 1])
    if key is None:
        raise JsonScanError(MALFORMED_ESCAPE)
    colon = _next_token(s, end)
    if colon < 0 or s[colon] != ":":
        raise JsonScanError(MALFORMED_JSON)
    return key, colon + 1


def scan_leaves(s: str, prefix: Path = ()) -> Iterator[tuple[Path, str]]:
    """Yield (key path, value text) for each string, number and boolean leaf in order.

    Nulls and arrays yield nothing; nested objects are walked when reached. Raises
    JsonScanError at the first malformed token, after yielding every earlier leaf.
    """
    o = _next_token(s, 0)
    if o < 0 or s[o] != "{":
        raise JsonScanError(MALFORMED_OBJECT)
    o = _next_token(s, o + 1)
    if o < 0:
        raise JsonScanError(MALFORMED_JSON)
    while o >= 0:
        if s[o] == "}":
            return
        m = _MEMBER.match(s, o)
        if m is None:  # nested value, odd token or malformed text: step by step
            key, o = _key(s, o)
            kind, text, o = _value(s, o)
            if kind == "object":
                yield from scan_leaves(text, prefix + (key,))
            elif kind not in ("null", "array"):
                yield prefix + (key,), _leaf_text(kind, text)
            o = _after_value(s, o)
            continue
        raw_key, raw_text, scalar, sep = m.groups()
        name = unescape(raw_key)
        if name is None:
            raise JsonScanError(MALFORMED_ESCAPE)
        if raw_text is not None:
            yield prefix + (name,), _leaf_text("string", raw_text)
        elif _scalar_kind(scalar) != "null":
            yield prefix + (name,), scalar
        o = -1 if sep == "}" else _after_comma(s, m.end())
