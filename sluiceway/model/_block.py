"""EntryBlock: the column-wise unit the store hands to the query engine."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sluiceway.model._batch import Metadata

I64 = npt.NDArray[np.int64]

# Per-line results a block keeps for the queries after the one that computed them (see
# `EntryBlock.memo`): at most this many, each of at most two bytes a line (two boolean
# masks), so a block's memo costs at most MEMO_BYTES a line (counted with its arrays).
MEMO_KEYS = 2
MEMO_BYTES = 2 * MEMO_KEYS


@dataclass(slots=True)
class EntryBlock:
    """`n` entries of one series, ascending by timestamp.

    Line `i` is `blob[offsets[i]:offsets[i+1]]`; keeping lines in one blob lets filters
    scan all lines with one C call and map hits back through `offsets`.
    """

    labels: dict[str, str]
    ts: I64
    blob: bytes
    offsets: I64
    metadata: list[Metadata | None] | None = None
    # Per-line results computed from the lines alone (the columnar parsers' line classes),
    # by a key naming the computation: a block is never changed, so they stay valid as
    # long as it lives (a cached block keeps them for the next query; a rewritten chunk
    # is new blocks). At most MEMO_KEYS entries of arrays of `len(self)` rows of at most
    # two bytes; a slice or a selection (`take`) carries its rows of them.
    memo: dict[Hashable, tuple[npt.NDArray[np.bool_], ...]] | None = field(
        default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1] - self.offsets[0]) if len(self) else 0

    def line(self, i: int) -> bytes:
        return self.blob[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def lines(self) -> list[bytes]:
        b, o = self.blob, self.offsets.tolist()
        return [b[o[i] : o[i + 1]] for i in range(len(o) - 1)]

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> EntryBlock:
        """A new block with the selected entries (index array or boolean mask), order kept."""
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        n = len(idx)
        if n == len(self) and bool((idx == np.arange(len(self))).all()):
            return self
        if n == 0:
            return EntryBlock(self.labels, self.ts[:0], b"", np.zeros(1, dtype=np.int64),
                              None if self.metadata is None else [])
        # Copy runs of consecutive entries in one slice each: a nearly sorted selection
        # (the usual case) costs a handful of slices, not one per line.
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        run_first = idx[np.concatenate([[0], breaks])]
        run_last = idx[np.concatenate([breaks - 1, [n - 1]])]
        starts = self.offsets[run_first].tolist()
        ends = self.offsets[run_last + 1].tolist()
        view = memoryview(self.blob)
        blob = b"".join([view[a:b] for a, b in zip(starts, ends, strict=True)])
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.offsets[idx + 1] - self.offsets[idx], out=offsets[1:])
        md = None if self.metadata is None else [self.metadata[i] for i in idx.tolist()]
        memo = None if self.memo is None else {
            k: tuple(a[idx] for a in v) for k, v in self.memo.items()}
        return EntryBlock(self.labels, self.ts[idx], blob, offsets, md, memo)

    def clip(self, start: int, end: int) -> EntryBlock:
        """Entries with start <= ts < end, sharing this block's blob (block sorted by ts)."""
        if not len(self) or (self.ts[0] >= start and self.ts[-1] < end):
            return self
        lo = int(np.searchsorted(self.ts, start, "left"))
        hi = int(np.searchsorted(self.ts, end, "left"))
        return self.slice(lo, hi)

    def compacted(self) -> EntryBlock:
        """The same entries with a blob holding exactly their lines (offsets from 0): for
        work over the whole blob, when this block shares a larger buffer."""
        lo, hi = int(self.offsets[0]), int(self.offsets[-1])
        if lo == 0 and hi == len(self.blob):
            return self
        return EntryBlock(self.labels, self.ts, self.blob[lo:hi], self.offsets - lo,
                          self.metadata, self.memo)

    def slice(self, lo: int, hi: int) -> EntryBlock:
        """Entries lo..hi-1 sharing this block's blob (no copy)."""
        if lo == 0 and hi == len(self):
            return self  # itself: what it keeps (its memo) stays with the cached block
        memo = None if self.memo is None else {
            k: tuple(a[lo:hi] for a in v) for k, v in self.memo.items()}
        return EntryBlock(self.labels, self.ts[lo:hi], self.blob, self.offsets[lo : hi + 1],
                          None if self.metadata is None else self.metadata[lo:hi], memo)

    @staticmethod
    def concat(blocks: list[EntryBlock]) -> EntryBlock:
        """The entries of `blocks` in the given order (not sorted), as one block with the
        first one's labels."""
        if len(blocks) == 1:
            return blocks[0]
        lengths = np.concatenate([np.diff(b.offsets) for b in blocks])
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        md: list[Metadata | None] | None = None
        if any(b.metadata is not None for b in blocks):
            md = [m for b in blocks for m in (b.metadata or [None] * len(b))]
        # Memoryview slices: the lines are copied once, into the joined blob.
        blob = b"".join([memoryview(b.blob)[int(b.offsets[0]) : int(b.offsets[-1])]
                         for b in blocks])
        return EntryBlock(blocks[0].labels, np.concatenate([b.ts for b in blocks]), blob,
                          offsets, md)

    @staticmethod
    def from_lines(
        labels: dict[str, str],
        ts: I64,
        lines: list[bytes],
        metadata: list[Metadata | None] | None = None,
    ) -> EntryBlock:
        offsets = np.zeros(len(lines) + 1, dtype=np.int64)
        if lines:
            np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)),
                      out=offsets[1:])
        return EntryBlock(labels, np.asarray(ts, dtype=np.int64), b"".join(lines), offsets,
                          metadata)
