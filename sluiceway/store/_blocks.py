"""Column operations on EntryBlocks: concatenate, sort by time, drop exact duplicates."""

from __future__ import annotations

import numpy as np

from sluiceway.model import EntryBlock, Metadata


def concat(blocks: list[EntryBlock]) -> EntryBlock:
    """One block holding all entries of `blocks`, in the given order (not sorted)."""
    if len(blocks) == 1:
        return blocks[0]
    labels = blocks[0].labels
    ts = np.concatenate([b.ts for b in blocks])
    pieces: list[bytes] = []
    offs: list[np.ndarray] = []
    base = 0
    for b in blocks:
        lo, hi = int(b.offsets[0]), int(b.offsets[-1])
        pieces.append(b.blob[lo:hi])
        offs.append(b.offsets[:-1] - lo + base)
        base += hi - lo
    offsets = np.concatenate([*offs, np.array([base], dtype=np.int64)])
    metadata: list[Metadata | None] | None = None
    if any(b.metadata is not None for b in blocks):
        metadata = []
        for b in blocks:
            metadata.extend(b.metadata if b.metadata is not None else [None] * len(b))
    return EntryBlock(labels, ts, b"".join(pieces), offsets, metadata)


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
