"""Queue entries and how a run of them becomes spill records."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from sluiceway.buffer._codec import Codec

# (item, size in bytes, protected, tag, units): a tuple keeps the put path light.
Entry = tuple[Any, int, bool, Hashable, int]


def chunk(entries: list[Entry], max_items: int, max_bytes: int) -> list[list[Entry]]:
    """Split in order into runs of at most max_items / max_bytes (at least one entry)."""
    chunks: list[list[Entry]] = []
    cur: list[Entry] = []
    cur_bytes = 0
    for e in entries:
        if cur and (len(cur) >= max_items or cur_bytes + e[1] > max_bytes):
            chunks.append(cur)
            cur, cur_bytes = [], 0
        cur.append(e)
        cur_bytes += e[1]
    if cur:
        chunks.append(cur)
    return chunks


def encode(codec: Codec, run: list[Entry],
           on_bad: Callable[[Entry], None]) -> tuple[bytes, list[Entry]] | None:
    """Encode a run as one record payload. If the codec refuses it, find the items it
    refuses one by one, report each to `on_bad` and encode the rest."""
    try:
        return codec.encode([e[0] for e in run]), run
    except Exception:
        pass
    good = []
    for e in run:
        try:
            codec.encode([e[0]])
            good.append(e)
        except Exception:
            on_bad(e)
    if not good:
        return None
    return codec.encode([e[0] for e in good]), good
