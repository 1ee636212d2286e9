"""Column operations on EntryBlocks: sort by time, drop exact duplicates."""

from __future__ import annotations

import numpy as np

from sluiceway.model import EntryBlock


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
