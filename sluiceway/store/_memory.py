"""What the store holds in memory, part by part: bytes now, the peak since start, and the
configured bound. The server's `/sluiceway/api/v1/memory` and `/metrics` report them.

Every part counts what it really keeps alive: a block costs its blob (the bytes it
references, which may be more than its own lines: see `own_block`) plus its timestamp and
offset arrays (16 bytes per entry), and the per-line results queries may keep with it
(`EntryBlock.memo`: at most `MEMO_BYTES` per entry).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass

from sluiceway.model import MEMO_BYTES, EntryBlock

# Bytes of a block's arrays per entry: int64 timestamps and int64 offsets, and room for
# the per-line results a query keeps with the block (its memo).
PER_ENTRY = 16 + MEMO_BYTES
# A block that shares a buffer with other streams' lines (a push record with several
# streams) is copied out when that buffer is larger than its lines by more than this
# share: held in a head, it would keep the others' lines alive.
_SHARED_WASTE = 0.25


def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _malloc_trim()


def give_back_free_memory() -> None:
    """Hand the allocator's free pages back to the kernel (glibc's `malloc_trim`), after
    large buffers were freed: without it, what a burst of ingest or a compaction freed
    stays in the process's heaps and counts in its RSS."""
    if _TRIM is not None:
        _TRIM(0)


def block_bytes(b: EntryBlock) -> int:
    """The memory `b` keeps alive: its whole blob and its arrays."""
    return len(b.blob) + PER_ENTRY * len(b)


def own_block(b: EntryBlock) -> EntryBlock:
    """`b`, or a copy of it with a blob of its own lines when the buffer it shares holds
    much more than them (one slice: a stream's lines are contiguous in a push record)."""
    if len(b.blob) - b.nbytes > b.nbytes * _SHARED_WASTE:
        return b.compacted()
    return b


class HeldBytes:
    """Bytes one part holds now (`bytes`), the most it held (`peak`), its bound (`limit`,
    0: none configured). Thread-safe."""

    __slots__ = ("_lock", "bytes", "limit", "peak")

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.bytes = 0
        self.peak = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes += n
            if self.bytes > self.peak:
                self.peak = self.bytes

    def sub(self, n: int) -> None:
        with self._lock:
            self.bytes -= n

    def set(self, n: int) -> None:
        with self._lock:
            self.bytes = n
            if n > self.peak:
                self.peak = n

    def reset_peak(self) -> None:
        with self._lock:
            self.peak = self.bytes

    def view(self) -> MemoryPart:
        return MemoryPart(self.bytes, self.peak, self.limit)


@dataclass(frozen=True, slots=True)
class MemoryPart:
    bytes: int
    peak: int
    limit: int  # 0: no bound of its own

    def to_json(self) -> dict[str, int]:
        return {"bytes": self.bytes, "peak": self.peak, "limit": self.limit}


class StoreMemory:
    """The store's parts. `heads` is every stream's data not yet in chunks, bounded by
    `max_heads_bytes`; `flushing` is the part of it already cut into chunks-to-be, waiting
    for (or being written by) the flusher."""

    def __init__(self, max_heads_bytes: int, cache_bytes: int) -> None:
        self.max_heads_bytes = max_heads_bytes
        self.heads = HeldBytes(max_heads_bytes)
        self.flushing = HeldBytes()
        # The batch the flusher writes: merged copies of its heads and the encoded chunks.
        self.flush_batch = HeldBytes()
        self.chunk_cache = HeldBytes(cache_bytes)
        self.wal = HeldBytes()  # records waiting for the WAL writer, and the group it writes
        # The groups being compacted: their chunks and the merged copy.
        self.compaction = HeldBytes()
        self._room = threading.Condition()

    @property
    def uncut(self) -> int:
        """Bytes in heads not cut yet."""
        return self.heads.bytes - self.flushing.bytes

    def written(self, n: int) -> None:
        """A cut head of `n` bytes is in chunks now: it leaves memory."""
        self.flushing.sub(n)
        self.heads.sub(n)
        with self._room:
            self._room.notify_all()

    def wait_for_room(self, timeout: float) -> bool:
        """Wait until the heads are within their bound; False when `timeout` passed first
        (chunks are not being written)."""
        with self._room:
            return self._room.wait_for(lambda: not self.over(), timeout)

    def over(self) -> bool:
        return bool(self.max_heads_bytes) and self.heads.bytes > self.max_heads_bytes

    def parts(self) -> dict[str, MemoryPart]:
        return {"heads": self.heads.view(), "heads_flushing": self.flushing.view(),
                "flush_batch": self.flush_batch.view(), "chunk_cache": self.chunk_cache.view(),
                "wal_queue": self.wal.view(), "compaction": self.compaction.view()}
