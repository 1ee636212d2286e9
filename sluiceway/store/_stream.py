"""One stream's state: head blocks in memory, blocks being flushed, and flushed chunk refs.

Locking: `Stream.lock` guards every change to a stream and the snapshots readers take.
`sealed` and `chunks` are replaced, never changed in place, so a snapshot (the list
objects) stays valid after the lock is released; `head` only grows at its end until
`seal` replaces it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from sluiceway.model import EntryBlock
from sluiceway.store._ingestlog import Position
from sluiceway.store._memory import block_bytes

NO_TS = -(1 << 62)  # max_ts of a stream without data


@dataclass(frozen=True, slots=True)
class ChunkRef:
    path: str  # relative to the tenant directory
    mint: int
    maxt: int
    n: int
    raw_bytes: int
    size: int
    level: int = 1  # zstd level it was written with; the compactor raises it
    created: float = 0.0  # unix seconds the file was written


@dataclass(slots=True)
class HeadPiece:
    block: EntryBlock
    mint: int
    maxt: int


@dataclass(slots=True)
class Sealed:
    """Head contents handed to the flusher; still served to queries until the chunk exists.
    `after`: every log record up to this position had been applied before the head's
    first piece (None: from the start of the log), so it stays replayable from there."""

    pieces: list[HeadPiece]
    after: Position | None
    held: int = 0  # bytes its pieces keep alive (`_memory.block_bytes`), counted in the heads


@dataclass(slots=True, eq=False)
class Stream:
    fp: int
    labels: dict[str, str]
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    head: list[HeadPiece] = field(default_factory=list)
    head_bytes: int = 0  # bytes of lines in `head` (what chunk_target_size is about)
    head_held: int = 0  # memory `head` keeps alive (`_memory.block_bytes` of its pieces)
    head_after: Position | None = None  # as Sealed.after, for the head (when not empty)
    head_started: float = 0.0
    last_append: float = 0.0
    sealed: list[Sealed] = field(default_factory=list)
    chunks: list[ChunkRef] = field(default_factory=list)
    max_ts: int = NO_TS
    gone: bool = False  # forgotten by its tenant (retention): find or make it anew

    def append(self, block: EntryBlock, after: Position | None) -> int:
        """Add `block` to the head; returns the memory it keeps alive."""
        mint, maxt = int(block.ts.min()), int(block.ts.max())
        now = time.monotonic()
        if not self.head:
            self.head_after = after
            self.head_started = now
        self.head.append(HeadPiece(block, mint, maxt))
        self.head_bytes += block.nbytes
        held = block_bytes(block)
        self.head_held += held
        self.last_append = now
        self.max_ts = max(self.max_ts, maxt)
        return held

    def seal(self) -> Sealed | None:
        if not self.head:
            return None
        s = Sealed(self.head, self.head_after, self.head_held)
        self.sealed = [*self.sealed, s]
        self.head, self.head_bytes, self.head_held, self.head_after = [], 0, 0, None
        return s

    def memory_pieces(self) -> list[HeadPiece]:
        out = [p for s in self.sealed for p in s.pieces]
        out.extend(self.head)
        return out

    def has_memory(self) -> bool:
        return bool(self.head or self.sealed)

    def pinned_after(self) -> tuple[bool, Position | None]:
        """(True, the oldest `after` of its data not yet in chunks), or (False, None)."""
        afters = [s.after for s in self.sealed]
        if self.head:
            afters.append(self.head_after)
        if not afters:
            return False, None
        return True, None if None in afters else min(afters)  # type: ignore[type-var]

    def drop_known(self, block: EntryBlock) -> EntryBlock:
        """Remove entries equal (ts and line) to one in memory or earlier in `block`."""
        return drop_known(block, self.memory_pieces(), self.max_ts)


def drop_known(block: EntryBlock, pieces: list[HeadPiece], held_max_ts: int) -> EntryBlock:
    """`block` without entries equal (ts and line) to one in `pieces` (whose newest entry
    is at `held_max_ts`) or earlier in `block`.

    Only entries whose exact timestamp is already held, or repeats inside the block, are
    compared line by line; an out-of-order push (concurrent shippers) costs a few numpy
    calls, not a Python loop per line.
    """
    ts = block.ts
    if not len(ts) or (int(ts.min()) > held_max_ts and bool((np.diff(ts) > 0).all())):
        return block  # the usual, in-order case
    lo, hi = int(ts.min()), int(ts.max())
    held = [p.block for p in pieces if p.maxt >= lo and p.mint <= hi]
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

