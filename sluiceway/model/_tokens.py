"""Whole-word tokens: the one rule shared by the block filters the store writes and the
token requirements the query engine derives from a query.

A token is a maximal run of ASCII word bytes (`[A-Za-z0-9_]`, the bytes RE2's `\\b` sees as
word characters), lower-cased; every other byte (punctuation, spaces, any byte of a
non-ASCII character) separates tokens. The store indexes, per block, the tokens of every
line, of every line with its JSON string escapes decoded (`decode_escapes`: so a value
`| json` or `| logfmt` unescapes is indexed as the parser sees it), and of every
structured metadata value.
"""

from __future__ import annotations

import re

WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# Lower-cases ASCII letters, turns every non-word byte into a space.
_TO_WORDS = bytes((c | 0x20) if 65 <= c <= 90 else c if c in WORD_BYTES else 32
                  for c in range(256))
# A JSON escape (`\uXXXX`, or a backslash and the character after it), paired left to
# right as a JSON scanner pairs them.
_ESCAPE = re.compile(rb"\\(?:u([0-9A-Fa-f]{4})|.)", re.DOTALL)


def words(data: bytes) -> list[bytes]:
    """The tokens of `data`, in order (repeats kept)."""
    return data.translate(_TO_WORDS).split()


def is_word_byte(c: int) -> bool:
    return c in WORD_BYTES


def _decoded(m: re.Match[bytes]) -> bytes:
    hex4 = m.group(1)
    if hex4 is not None:
        code = int(hex4, 16)
        if code < 128 and code in WORD_BYTES:
            return bytes([code])
    return b" "


def decode_escapes(data: bytes) -> bytes:
    """`data` with each JSON escape replaced by the character it stands for when that is a
    word character, else by a space: its tokens are those of the text a JSON (or logfmt)
    parser reads out of quoted values (the parsers' other characters are separators
    either way)."""
    return _ESCAPE.sub(_decoded, data) if b"\\" in data else data
