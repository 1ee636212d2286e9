"""One stream's state: head blocks in memory, blocks being flushed, and flushed chunk refs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sluiceway.model import EntryBlock
from sluiceway.store._wal import ZERO_POS, WalPos


@dataclass(frozen=True, slots=True)
class ChunkRef:
    path: str  # relative to the tenant directory
    mint: int
    maxt: int
    n: int
    raw_bytes: int
    size: int
    wal_pos: WalPos  # every WAL record of this stream up to here is in chunks
    level: int = 1  # zstd level it was written with; the compactor raises it
    created: float = 0.0  # unix seconds the file was written


@dataclass(slots=True)
class HeadPiece:
    block: EntryBlock
    mint: int
    maxt: int


@dataclass(slots=True)
class Sealed:
    """Head contents handed to the flusher; still served to queries until the chunk exists."""

    pieces: list[HeadPiece]
    first_pos: WalPos
    last_pos: WalPos


@dataclass(slots=True)
class Stream:
    fp: int
    labels: dict[str, str]
    head: list[HeadPiece] = field(default_factory=list)
    head_bytes: int = 0
    head_first_pos: WalPos | None = None
    head_last_pos: WalPos = ZERO_POS
    head_started: float = 0.0
    last_append: float = 0.0
    sealed: list[Sealed] = field(default_factory=list)
    chunks: list[ChunkRef] = field(default_factory=list)
    flushed_pos: WalPos = ZERO_POS
    max_ts: int = -(1 << 62)

    def append(self, block: EntryBlock, pos: WalPos) -> None:
        mint, maxt = int(block.ts.min()), int(block.ts.max())
        self.head.append(HeadPiece(block, mint, maxt))
        self.head_bytes += block.nbytes
        now = time.monotonic()
        if self.head_first_pos is None:
            self.head_first_pos = pos
            self.head_started = now
        self.head_last_pos = pos
        self.last_append = now
        self.max_ts = max(self.max_ts, maxt)

    def seal(self) -> Sealed | None:
        if not self.head or self.head_first_pos is None:
            return None
        s = Sealed(self.head, self.head_first_pos, self.head_last_pos)
        self.sealed.append(s)
        self.head, self.head_bytes, self.head_first_pos = [], 0, None
        return s

    def memory_pieces(self) -> list[HeadPiece]:
        out = [p for s in self.sealed for p in s.pieces]
        out.extend(self.head)
        return out

    def oldest_pinned_segment(self) -> int | None:
        """The oldest WAL segment holding data of this stream that is not yet in a chunk."""
        segs = [s.first_pos.segment for s in self.sealed]
        if self.head_first_pos is not None:
            segs.append(self.head_first_pos.segment)
        return min(segs) if segs else None

    def drop_known(self, block: EntryBlock) -> EntryBlock:
        """Remove entries equal (ts and line) to one in memory or earlier in `block`.

        Only entries whose exact timestamp is already held, or repeats inside the block, are
        compared line by line; an out-of-order push (concurrent shippers) costs a few numpy
        calls, not a Python loop per line.
        """
        ts = block.ts
        if int(ts.min()) > self.max_ts and bool((np.diff(ts) > 0).all()):
            return block  # the usual, in-order case
        lo, hi = int(ts.min()), int(ts.max())
        held = [p.block for p in self.memory_pieces() if p.maxt >= lo and p.mint <= hi]
        uniq, counts = np.unique(ts, return_counts=True)
        repeated = uniq[counts > 1]
        held_ts = [b.ts[np.isin(b.ts, ts)] for b in held]
        known_ts = np.concatenate([repeated, *held_ts]) if held_ts else repeated
        if not len(known_ts):
            return block
        cand = np.flatnonzero(np.isin(ts, known_ts))
        seen: set[tuple[int, bytes]] = set()
        for b in held:
            for i in np.flatnonzero(np.isin(b.ts, ts)).tolist():
                seen.add((int(b.ts[i]), b.line(i)))
        keep = np.ones(len(block), dtype=bool)
        for i in cand.tolist():
            key = (int(ts[i]), block.line(i))
            if key in seen:
                keep[i] = False
            else:
                seen.add(key)
        return block if bool(keep.all()) else block.take(keep)
