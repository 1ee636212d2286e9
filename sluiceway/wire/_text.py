"""Lone surrogates (from surrogateescape decoding or escapes) are not encodable as UTF-8;
the wire carries U+FFFD in their place, as Go does for invalid text."""

from __future__ import annotations

import re

from sluiceway.model import StreamBatch

_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def scrub_batch(b: StreamBatch) -> StreamBatch:
    """A copy of `b` whose every string is UTF-8 encodable (the encoders' slow path)."""
    md = None if b.metadata is None else [
        None if m is None else {scrub(k): scrub(v) for k, v in m.items()} for m in b.metadata]
    return StreamBatch({scrub(k): scrub(v) for k, v in b.labels.items()}, b.ts,
                       [scrub(line) for line in b.lines], md)
