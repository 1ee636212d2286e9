"""Which entries of a block a stream's chunks already hold (replay). Sorting and
deduplicating are the model's (`sluiceway.model.sort_dedupe`)."""

from __future__ import annotations

import numpy as np

from sluiceway.model import EntryBlock


def found_in(block: EntryBlock, held: EntryBlock) -> np.ndarray:
    """A mask of the entries of `block` that `held` (sorted by ts) has too, same ts and
    line. Exact for the entries it marks; an entry whose ts `held` has more than once may
    be missed (callers compare what is left line by line). Runs of entries that follow
    each other in both are compared with one bytes comparison each, so a block that a
    chunk holds whole (a replayed record) costs a few numpy calls, not a loop per line."""
    n = len(block)
    found = np.zeros(n, dtype=bool)
    if not n or not len(held):
        return found
    j = np.minimum(np.searchsorted(held.ts, block.ts, "left"), len(held) - 1)
    lengths = np.diff(block.offsets)
    same = (held.ts[j] == block.ts) & (np.diff(held.offsets)[j] == lengths)
    if not same.any():
        return found
    # Runs: consecutive entries of `block` matched to consecutive entries of `held`.
    idx = np.flatnonzero(same)
    breaks = np.flatnonzero((np.diff(idx) != 1) | (np.diff(j[idx]) != 1)) + 1
    bo, ho = block.offsets, held.offsets
    for run in np.split(idx, breaks):
        i0, i1 = int(run[0]), int(run[-1]) + 1
        j0, j1 = int(j[i0]), int(j[i0]) + (i1 - i0)
        if block.blob[int(bo[i0]) : int(bo[i1])] == held.blob[int(ho[j0]) : int(ho[j1])]:
            found[i0:i1] = True
        else:  # some differ: line by line (rare)
            for i in range(i0, i1):
                k = int(j[i])
                found[i] = block.line(i) == held.line(k)
    return found
