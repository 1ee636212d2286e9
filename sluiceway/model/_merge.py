"""The one merge of a stream's blocks: sort, drop exact duplicates, and turn blocks that
may overlap in time into time-disjoint blocks in read order.

Every reader of entries goes through here: the store (chunks and the in-memory head of a
stream), `logql.MemorySource`, and live tail's `BlocksSource` (the blocks of one push).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from sluiceway.model._block import EntryBlock

T = TypeVar("T")


def sort_dedupe(block: EntryBlock) -> EntryBlock:
    """Entries ascending by ts (stable); an entry equal in ts and line to another is dropped."""
    n = len(block)
    if n == 0:
        return block
    d = np.diff(block.ts)
    if bool((d > 0).all()):
        return block  # the common case: already ordered, no equal timestamps
    order = np.argsort(block.ts, kind="stable")
    ts = block.ts[order]
    keep = np.ones(n, dtype=bool)
    same = np.flatnonzero(ts[1:] == ts[:-1])
    if len(same):
        lines = block.lines()
        # Only runs of equal timestamps need a line comparison.
        run_start = -1
        seen: set[bytes] = set()
        for j in np.unique(np.concatenate([same, same + 1])).tolist():
            if run_start < 0 or ts[j] != ts[run_start]:
                run_start, seen = j, set()
            line = lines[int(order[j])]
            if line in seen:
                keep[j] = False
            else:
                seen.add(line)
    if bool((np.diff(order) == 1).all()) and bool(keep.all()):
        return block
    idx = order[keep]
    return block.take(idx)


def in_read_order(spans: Iterable[tuple[int, int, T]], direction: str,
                  ) -> list[tuple[int, int, T]]:
    """`(mint, maxt, item)` spans in the order `merge_blocks` takes them: forward by
    `mint`, backward by `maxt`, newest first."""
    if direction == "backward":
        return sorted(spans, key=lambda s: -s[1])
    return sorted(spans, key=lambda s: s[0])


def merge_blocks(spans: Sequence[tuple[int, int]], blocks: Iterable[EntryBlock | None],
                 direction: str, start: int, end: int) -> Iterator[EntryBlock]:
    """Time-disjoint blocks in `direction` order (forward: oldest first), each ascending
    by ts, exact duplicates removed, clipped to [start, end).

    `blocks` are the blocks of one stream, each as `sort_dedupe` leaves it, with their
    bounds `spans` (`(mint, maxt)`, as `in_read_order` orders them); they may
    overlap. A None block (one that could not be read) is left out. See `merge_stream`."""
    forward = direction != "backward"
    n = len(spans)

    def bounded() -> Iterator[tuple[EntryBlock | None, int | None]]:
        for i, block in enumerate(blocks):
            yield block, (None if i + 1 >= n else
                          spans[i + 1][0] if forward else spans[i + 1][1])

    return merge_stream(bounded(), direction, start, end)


def merge_stream(items: Iterable[tuple[EntryBlock | None, int | None]], direction: str,
                 start: int, end: int) -> Iterator[EntryBlock]:
    """`merge_blocks` for callers that know more than each block's span: each item is a
    block (None: unreadable, left out) and where every block still to come starts
    (forward: the smallest start; backward: the largest end; None when none follows).
    Blocks are merged as a stream, pulling one at a time: after each block, what lies
    before that bound (backward: after it) is final and goes out; only the rest is kept
    and merged with the next, so blocks that do not overlap are never copied."""
    forward = direction != "backward"
    pending: EntryBlock | None = None
    for block, bound in items:
        parts = [b for b in (pending, block) if b is not None and len(b)]
        if not parts:
            pending = None
            continue
        merged = parts[0] if len(parts) == 1 else sort_dedupe(EntryBlock.concat(parts))
        if bound is None:
            out, pending = merged, None
        elif forward:
            cut = int(np.searchsorted(merged.ts, bound, "left"))
            out, pending = merged.slice(0, cut), merged.slice(cut, len(merged))
        else:
            cut = int(np.searchsorted(merged.ts, bound, "right"))
            out, pending = merged.slice(cut, len(merged)), merged.slice(0, cut)
        out = out.clip(start, end)
        if len(out):
            yield out
    if pending is not None and len(pending):  # the blocks it waited for were unreadable
        out = pending.clip(start, end)
        if len(out):
            yield out
