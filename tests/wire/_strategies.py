"""Hypothesis strategies for StreamBatch lists in the form decode_push returns them."""

from __future__ import annotations

from hypothesis import strategies as st

from sluiceway.model import Metadata, StreamBatch

NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True)
TS = st.integers(-(2**63), 2**63 - 1)
META = st.none() | st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=3)


@st.composite
def batches(draw: st.DrawFn) -> StreamBatch:
    labels = draw(st.dictionaries(NAMES, st.text(max_size=20), max_size=5))
    n = draw(st.integers(0, 8))
    ts = draw(st.lists(TS, min_size=n, max_size=n))
    lines = draw(st.lists(st.text(max_size=40), min_size=n, max_size=n))
    metadata: list[Metadata | None] | None = None
    if draw(st.booleans()):
        metadata = [m or None for m in draw(st.lists(META, min_size=n, max_size=n))]
        if not any(metadata):
            metadata = None  # the decoder's form when no entry carries metadata
    return StreamBatch(labels, ts, lines, metadata)


BATCHES = st.lists(batches(), max_size=4)
