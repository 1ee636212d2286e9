"""The heads (Loki's ingester role): durable push records applied to the streams'
in-memory heads, in log order, one stream at a time.

Per stream, as Loki's `stream.go` does: an exact duplicate (same time and line as one in
memory, or earlier in the push) is dropped silently; a line older than the newest line
seen so far (the stream's, then the push's own) minus the out-of-order window is refused
as "entry too far behind". Both depend only on what was applied before in log order, so
a replay makes the same decisions. At replay, lines already in a chunk (the record was
flushed for this stream before the crash, but not for all streams) are dropped too: the
checkpoint is per node, not per stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

import numpy as np
import numpy.typing as npt

from sluiceway.model import EntryBlock, PushRecord, fingerprint, format_labels, rfc3339_micros
from sluiceway.store._blocks import found_in
from sluiceway.store._ingestlog import Position
from sluiceway.store._memory import StoreMemory, own_block
from sluiceway.store._stream import NO_TS, HeadPiece, Sealed, Stream, drop_known
from sluiceway.store._tenant import TenantStore

log = logging.getLogger("sluiceway.store")

OUT_OF_ORDER = "out_of_order"  # Loki's discarded-samples reason


@dataclass(frozen=True, slots=True)
class Rejection:
    """Lines of one stream the heads refused: `newest[i]` is the newest time the stream
    had seen when line i came, `window` how far behind that a line may be (ns)."""

    reason: str
    lines: EntryBlock
    newest: npt.NDArray[np.int64]
    window: int

    def __len__(self) -> int:
        return len(self.lines)

    def detail(self, i: int = 0) -> str:
        """Loki's text for line `i`."""
        floor = int(self.newest[i]) - self.window
        return (f"entry with timestamp {rfc3339_micros(int(self.lines.ts[i]))} ignored, "
                f"reason: 'entry too far behind, oldest acceptable timestamp is: "
                f"{rfc3339_micros(floor)}' for stream: {format_labels(self.lines.labels)}")


@dataclass(slots=True)
class Applied:
    """What `Heads.apply` did with a record: the lines it took (per stream, for live
    tail), the ones it refused, and how many exact duplicates it dropped."""

    blocks: list[EntryBlock] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: int = 0

    @property
    def rejected(self) -> int:
        return sum(len(r) for r in self.rejections)


Flush = Callable[[TenantStore, Stream, Sealed], None]
P = TypeVar("P", bound=Position)


class Heads(Generic[P]):
    """`tenant(name)` finds or makes a tenant's store; `window_ns(name)` is how far behind
    its stream's newest line a tenant's line may be; `on_sealed` gets every head cut
    because it reached `chunk_target_bytes`."""

    def __init__(self, tenant: Callable[[str], TenantStore], chunk_target_bytes: int,
                 window_ns: Callable[[str], int], on_sealed: Flush,
                 memory: StoreMemory | None = None) -> None:
        self._tenant = tenant
        self.memory = memory if memory is not None else StoreMemory(0, 0)
        self.chunk_target_bytes = chunk_target_bytes
        self.window_ns = window_ns
        self._on_sealed = on_sealed
        self.last_applied: P | None = None  # None: nothing applied yet
        self.replay_duplicates = 0  # lines a replay found in chunks already
        self.replay_chunks_read = 0  # chunks a replay read to find them
        self._chunk_maxt: dict[int, int] = {}  # per stream, while replaying

    def apply(self, tenant: str, record: PushRecord, pos: P, replay: bool = False) -> Applied:
        """Take a durable record (at `pos`, after every earlier one) into the heads."""
        ts = self._tenant(tenant)
        window = self.window_ns(tenant)
        out = Applied()
        after = self.last_applied
        sealed: list[tuple[Stream, Sealed]] = []
        for b in record.blocks:
            if not len(b):
                continue
            fp = fingerprint(b.labels)
            done = False
            while not done:
                s = ts.stream(fp, b.labels)
                if replay:
                    b = self._not_in_chunks(ts, s, b)
                with s.lock:
                    if s.gone:
                        continue  # forgotten meanwhile (retention): make it anew
                    cut = self._apply_block(ts, s, b, after, window, out)
                    done = True
                if cut is not None:
                    sealed.append((s, cut))
        self.last_applied = pos
        for s, cut in sealed:
            self._on_sealed(ts, s, cut)
        return out

    def _apply_block(self, ts: TenantStore, s: Stream, b: EntryBlock,
                     after: Position | None, window: int, out: Applied) -> Sealed | None:
        n = len(b)
        b = s.drop_known(b)
        out.duplicates += n - len(b)
        if not len(b):
            return None
        b = self._behind(s, b, window, out)
        if not len(b):
            return None
        b = own_block(b)  # a head must not keep other streams' lines alive
        self.memory.heads.add(s.append(b, after))
        ts.mark_active(s.fp)
        out.blocks.append(b)
        if s.head_bytes < self.chunk_target_bytes:
            return None
        cut = s.seal()
        if cut is not None:
            self.memory.flushing.add(cut.held)
        return cut

    @staticmethod
    def _behind(s: Stream, b: EntryBlock, w: int, out: Applied) -> EntryBlock:
        """`b` without the lines more than `w` ns behind; those go to `out.rejections`."""
        lo, hi = int(b.ts.min()), int(b.ts.max())
        if lo >= max(s.max_ts, hi) - w:
            return b  # nothing can be behind: the usual case
        newest = np.maximum.accumulate(b.ts)
        if s.max_ts != NO_TS:
            newest = np.maximum(newest, s.max_ts)
        # newest >= ts: the unsigned difference is exact, where a signed one could wrap.
        behind = (newest.astype(np.uint64) - b.ts.astype(np.uint64)) > np.uint64(w)
        if not behind.any():
            return b
        out.rejections.append(Rejection(OUT_OF_ORDER, b.take(behind), newest[behind], w))
        return b.take(~behind)

    def _not_in_chunks(self, ts: TenantStore, s: Stream, b: EntryBlock) -> EntryBlock:
        """At replay: `b` without the lines that the stream's chunks hold already."""
        chunks = s.chunks
        if not chunks:
            return b
        lo, hi = int(b.ts.min()), int(b.ts.max())
        maxt = self._chunk_maxt.get(s.fp)
        if maxt is None:
            maxt = self._chunk_maxt[s.fp] = max(c.maxt for c in chunks)
        if lo > maxt:
            return b
        pieces: list[HeadPiece] = []
        keep = np.ones(len(b), dtype=bool)
        for c in chunks:
            if c.maxt >= lo and c.mint <= hi:
                block = ts.load_or_take_out(s, c, keep=False)
                self.replay_chunks_read += 1
                if block is not None:
                    pieces.append(HeadPiece(block, c.mint, c.maxt))
                    keep &= ~found_in(b, block)
        if not pieces:
            return b
        kept = b if bool(keep.all()) else b.take(keep)
        if len(kept):  # what is left: new lines, or one whose time a chunk has twice
            kept = drop_known(kept, pieces, maxt)
        self.replay_duplicates += len(b) - len(kept)
        return kept

    def end_replay(self) -> None:
        self._chunk_maxt = {}

    def flushed_upto(self, tenants: list[TenantStore]) -> tuple[bool, P | None]:
        """(whether any data is in memory, P): every record at or before P is in chunks
        (None: none is known to be)."""
        end = self.last_applied  # read first: what is applied later comes after it
        oldest: Position | None = None
        pinned = False
        for ts in tenants:
            for s in ts.memory_streams():
                with s.lock:
                    has, after = s.pinned_after()
                if not has:
                    continue
                if after is None:
                    return True, None
                if oldest is None or after < oldest:
                    oldest = after
                pinned = True
        # Streams hold what `apply` gave them: positions of this log.
        return pinned, (cast(P, oldest) if pinned else end)
