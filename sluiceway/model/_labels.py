"""Label sets: parsing Loki/Prometheus label strings, canonical form, fingerprints."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# One `name op "value"` pair inside `{...}`; the value is a Go/Prometheus quoted string.
_PAIR_RE = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)', re.DOTALL
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v", "'": "'"}


class LabelError(ValueError):
    """A label string or label name that Loki would reject (answered with HTTP 400)."""


def go_unquote(body: str) -> str:
    """Go's strconv.Unquote of a double-quoted string's body; ValueError when invalid.

    Shared by label strings and the LogQL lexer, which both carry Go string literals."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1 : i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width:
                raise ValueError(f"invalid escape \\{nxt}{digits}")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        elif nxt and nxt in "01234567":
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise ValueError(f"invalid escape \\{nxt}")
    return "".join(out)


def parse_labels(text: str) -> dict[str, str]:
    """Parse `{a="b", c="d"}` (the form Loki push protobuf carries) into a dict."""
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise LabelError(f"parse error: labels must be enclosed in braces: {text!r}")
    body = s[1:-1]
    out: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        if not body[pos:].strip():
            break
        m = _PAIR_RE.match(body, pos)
        if m is None:
            raise LabelError(f"parse error at position {pos + 1} in labels {text!r}")
        try:
            out[m.group(1)] = go_unquote(m.group(2))
        except (ValueError, OverflowError) as exc:
            raise LabelError(f"parse error in labels {text!r}: {exc}") from exc
        pos = m.end()
    return out


def quote(value: str) -> str:
    """Quote a label value as Go's strconv.Quote does for printable text."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
        .replace("\t", "\\t").replace("\r", "\\r") + '"'


def format_labels(labels: Mapping[str, str]) -> str:
    """Canonical label string: names sorted, `{a="1", b="2"}` as Loki prints it."""
    return "{" + ", ".join(f"{k}={quote(labels[k])}" for k in sorted(labels)) + "}"


def fingerprint(labels: Mapping[str, str]) -> int:
    """Stable 64-bit fingerprint of a label set (independent of insertion order)."""
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(labels):
        h.update(k.encode())
        h.update(b"\xff")
        h.update(labels[k].encode())
        h.update(b"\xfe")
    return int.from_bytes(h.digest(), "big") >> 1  # fits a signed int64


def validate_label_names(labels: Mapping[str, str]) -> None:
    for name in labels:
        if not LABEL_NAME_RE.fullmatch(name):
            raise LabelError(f"invalid label name {name!r}")
