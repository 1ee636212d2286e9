"""All streams of one tenant: its streams and label postings, flushing sealed heads to
chunks, the index, and reads.

Locking: each stream has its own lock (`Stream.lock`, see `_stream`); the tenant's lock
(`_streams_lock`) is held only to add or forget a stream. Reads never hold a lock while
they scan: a `/series` or `/labels` call, however long, delays no push.

Chunk bytes are read, written and deleted only through the store's `ObjectStore`, under
the tenant's key prefix (`<tenant dir>/`); a chunk's key below it is its index path
(`chunks/<day>/<fp hex>-<mint>-<id>.chunk`). Its index is `index.TenantIndex`: immutable
objects in the same object store, below `index/<tenant dir>/`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sluiceway.durable import ensure_dir
from sluiceway.model import (
    BlockSummary,
    EntryBlock,
    Matcher,
    ReadHints,
    format_labels,
    in_read_order,
    merge_stream,
    parse_labels,
    sort_dedupe,
)
from sluiceway.store._blockfilter import TokenProbe, build_counts, build_filter, summary_rows
from sluiceway.store._cache import ChunkCache
from sluiceway.store._chunk import ChunkError
from sluiceway.store._chunkfmt import VERSION, BlockInfo, Footer
from sluiceway.store._chunkio import ChunkIO, Held, LogPositions
from sluiceway.store._deletes import LineDeleter, deleted_mask
from sluiceway.store._index import Delta, IndexEntry, Removal, TenantIndex, Writer
from sluiceway.store._ingestlog import Position
from sluiceway.store._memory import StoreMemory
from sluiceway.store._objstore import NotFound, ObjectInfo, ObjectStore
from sluiceway.store._quarantine import CORRUPT, set_aside
from sluiceway.store._stream import ChunkRef, HeadPiece, Sealed, Stream

log = logging.getLogger("sluiceway.store")

# Chunk decoding runs here so decompression overlaps with filtering on the query thread.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chunk-load")
_PREFETCH = 3
Loaded = EntryBlock | ChunkError | OSError  # a block read on the pool, or why it failed


_DAY_NS = 86_400 * 10**9


@functools.lru_cache(maxsize=64)
def _day(n: int) -> str:
    """The chunk directory of day `n` since the epoch (UTC)."""
    return datetime.fromtimestamp(n * 86_400, UTC).strftime("%Y-%m-%d")


def is_chunk_key(rel: str) -> bool:
    """A tenant-relative key of the chunk layout: `chunks/<day>/<name>.chunk`."""
    parts = rel.split("/")
    return len(parts) == 3 and parts[0] == "chunks" and parts[2].endswith(".chunk")


class TenantStore:
    def __init__(self, tenant: str, root: Path, objects: ObjectStore, prefix: str,
                 cache: ChunkCache, chunk_target_bytes: int, compression_level: int,
                 positions: LogPositions | None = None, writer: Writer | None = None,
                 memory: StoreMemory | None = None) -> None:
        """`root`: the tenant's local directory (it marks a tenant this data dir has
        written, so a start finds it even when every index object is gone); `objects` and
        `prefix`: where its chunks are (`prefix` + a chunk's path is its key) and, below
        `index/<prefix>`, its index objects, named by `writer`; `positions`: how chunk
        footers name ingest-log positions (None: they name none); `memory`: the store's
        accounting of what its heads hold."""
        self.positions = positions
        self.tenant = tenant
        self.root = root
        self.objects = objects
        self.prefix = prefix
        self.cache = cache
        self.chunkio = ChunkIO(objects, cache)
        self.chunk_target_bytes = chunk_target_bytes
        self.compression_level = compression_level
        self.memory = memory if memory is not None else StoreMemory(0, cache.max_bytes)
        self._streams_lock = threading.Lock()  # adding or forgetting a stream
        self._count_lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
        self.postings: dict[str, dict[str, set[int]]] = {}
        # Streams with data in memory or written to recently (Loki's "active streams",
        # what max_global_streams_per_user counts); see forget_idle. Changed and read with
        # single dict operations (atomic under the GIL); a dict keeps the order streams
        # became active in, so heads are flushed (and indexed) in that order.
        self.active: dict[int, None] = {}
        # Called with each stream a series scan looks at, no lock held (a test's pause).
        self.scan_hook: Callable[[Stream], None] | None = None
        # What a compacted block's lines are labelled at read time, to count them by it
        # (its rules key and one value per line, or one for all; None: not counted).
        self.block_labels: Callable[[EntryBlock], tuple[str, str | list[str]] | None] \
            | None = None
        ensure_dir(root)
        self.chunks_readded = 0  # chunk files the index no longer named, taken back
        self.chunks_quarantined: dict[str, int] = {}  # by reason
        self.generation = 0  # chunks taken out of service (part of `Store.generation`)
        self.legacy_lost = 0  # damaged records of a version-1 index log this start migrated
        self.damaged_at_start = False  # that log was damaged, or no index while chunks are
        # Its changes are applied to the streams holding `index.lock`, in the order made.
        self.index = TenantIndex(tenant, objects, prefix.rstrip("/"), writer)

    # --- the index ---------------------------------------------------------------------
    @property
    def index_records_lost(self) -> int:
        """Damaged index records skipped (objects read, and a migrated version-1 log)."""
        return self.index.records_lost + self.legacy_lost

    @property
    def index_damaged(self) -> bool:
        """The index lost records: `recover_chunks` compares it with the chunks."""
        return self.index.damaged or self.damaged_at_start

    def load_index(self, listing: list[ObjectInfo] | None = None) -> None:
        """Read the tenant's index objects (at start; `listing` when the store listed them
        already). No object while chunks exist: the index is lost, and is damaged."""
        self.sync_index(listing, count=False)
        if not self.index.object_count() and not self.index.unreadable \
                and self.chunk_objects():
            self.damaged_at_start = True

    def sync_index(self, listing: list[ObjectInfo] | None = None, count: bool = True,
                   listed_at: int | None = None) -> None:
        """Fold in index objects written since the last sync (by any process) and forget
        those deleted (`listed_at`: `index.step` before `listing` was made); a change
        bumps the generation (`count`)."""
        with self.index.lock:
            delta = self.index.sync(listing, listed_at)
            self.apply_delta(delta)
        if delta and count:
            with self._count_lock:
                self.generation += 1

    def apply_delta(self, delta: Delta) -> None:
        """Chunks into and out of their streams' lists (the caller holds `index.lock`)."""
        added: dict[int, list[IndexEntry]] = {}
        for e in delta.added:
            added.setdefault(e.fp, []).append(e)
        for fp, entries in added.items():
            s = self.streams.get(fp) or self.stream(fp, parse_labels(entries[0].labels))
            paths = {e.ref.path for e in entries}
            with s.lock:
                s.chunks = sorted([*(c for c in s.chunks if c.path not in paths),
                                   *(e.ref for e in entries)], key=lambda c: c.mint)
                s.max_ts = max(s.max_ts, max(e.ref.maxt for e in entries))
        removed: dict[int, set[str]] = {}
        for e in delta.removed:
            removed.setdefault(e.fp, set()).add(e.ref.path)
            self.cache.discard(self.key(e.ref.path))
        for fp, gone in removed.items():
            s2 = self.streams.get(fp)
            if s2 is not None:
                with s2.lock:
                    s2.chunks = [c for c in s2.chunks if c.path not in gone]

    def entry(self, s: Stream, ref: ChunkRef) -> IndexEntry:
        return IndexEntry(s.fp, format_labels(s.labels), ref)

    def remove_chunks(self, removals: list[Removal]) -> None:
        """Take chunks out of service: in the index (OSError when it cannot be written)
        and in the streams."""
        with self.index.lock:
            self.apply_delta(self.index.remove(removals))

    def collect_garbage(self, now: float, delay: float) -> tuple[int, int]:
        """Delete for good the chunks and index objects out of service for `delay`
        seconds; how many of each."""
        chunks, names = self.index.garbage(now, delay)
        if chunks:
            self.objects.delete_many([self.key(p) for p in chunks])
            self.index.chunks_deleted(chunks)
        if names:
            self.objects.delete_many([self.index.key(n) for n in names])
            with self.index.lock:
                self.apply_delta(self.index.objects_deleted(names))
        return len(chunks), len(names)

    def compact_index(self) -> int:
        """One index object per period (`TenantIndex.compact`)."""
        with self.index.lock:
            return self.index.compact()

    def key(self, rel: str) -> str:
        """The object key of a tenant-relative path (a chunk's `path`)."""
        return self.prefix + rel

    def chunk_objects(self, under: str = "") -> dict[str, ObjectInfo]:
        """The chunk objects of the chunk layout below `under` (a tenant-relative prefix
        such as `quarantine/unindexed/`), by their path relative to `under`."""
        cut = len(self.prefix) + len(under)
        out: dict[str, ObjectInfo] = {}
        for o in self.objects.list(self.key(f"{under}chunks/")):
            rel = o.key[cut:]
            if is_chunk_key(rel):
                out[rel] = o
        return out

    def stream(self, fp: int, labels: dict[str, str]) -> Stream:
        """The stream `fp`, made (and put in the postings) if new."""
        s = self.streams.get(fp)
        if s is None:
            with self._streams_lock:
                s = self.streams.get(fp)
                if s is None:
                    s = Stream(fp, labels)
                    for k, v in labels.items():
                        self.postings.setdefault(k, {}).setdefault(v, set()).add(fp)
                    self.streams[fp] = s  # last: a reader that finds it finds its postings
        return s

    def stream_list(self) -> list[Stream]:
        return list(self.streams.values())

    # --- heads ---------------------------------------------------------------------
    def mark_active(self, fp: int) -> None:
        self.active[fp] = None

    def memory_streams(self) -> list[Stream]:
        """Streams that may have data in memory (every one that has is active)."""
        streams = self.streams
        return [s for fp in list(self.active) if (s := streams.get(fp)) is not None]

    def active_streams(self, fps: list[int]) -> tuple[int, set[int]]:
        """How many streams are active, and which of `fps` are."""
        active = self.active.copy()
        return len(active), {fp for fp in fps if fp in active}

    def forget_idle(self, idle_before: float) -> None:
        """Streams whose data is all in chunks and that got nothing since `idle_before`
        (monotonic) stop being active, as Loki's ingester drops flushed, idle streams."""
        for fp in list(self.active):
            s = self.streams.get(fp)
            if s is None:
                self.active.pop(fp, None)
                continue
            with s.lock:  # an apply between the check and the discard marks it again
                if not s.has_memory() and s.last_append < idle_before:
                    self.active.pop(fp, None)

    # --- flush path (flusher thread) -------------------------------------------------
    def flush_many(self, jobs: list[tuple[Stream, Sealed]]
                   ) -> tuple[list[tuple[Stream, Sealed]], BaseException | None]:
        """Write sealed heads as chunks: every object, their syncs shared (`put_many`),
        then an index object per period naming the ones that are durable; only then do
        their heads leave memory. Returns the jobs that could not be written (they stay
        in memory and in the WAL) and the first error."""
        files: list[tuple[str, bytes]] = []
        refs: list[ChunkRef] = []
        encoded = 0  # the chunks made, counted in `flush_batch` until they are written
        try:
            for s, sealed in jobs:
                block = sort_dedupe(EntryBlock.concat([p.block for p in sealed.pieces]))
                log_pos = self.positions.encode(sealed.after) if self.positions else b""
                data, ref = self._encode(s, block, self.compression_level, log_pos)
                files.append((self.key(ref.path), data))
                refs.append(ref)
                self.memory.flush_batch.add(len(data))
                encoded += len(data)
            return self._write_batch(jobs, files, refs)
        finally:
            self.memory.flush_batch.sub(encoded)

    def _write_batch(self, jobs: list[tuple[Stream, Sealed]], files: list[tuple[str, bytes]],
                     refs: list[ChunkRef]
                     ) -> tuple[list[tuple[Stream, Sealed]], BaseException | None]:
        results = self.objects.put_many(files)
        done = [i for i, r in enumerate(results) if r is None]
        error: BaseException | None = next((r for r in results if r is not None), None)
        if done:
            with self.index.lock:
                delta, unnamed, err = self.index.add([self.entry(jobs[i][0], refs[i])
                                                      for i in done])
                self.apply_delta(delta)
            if unnamed:
                # Never named: nothing may keep them; their heads stay and are written again.
                lost = {e.ref.path for e in unnamed}
                try:
                    self.objects.delete_many([self.key(p) for p in lost])
                except OSError as exc:  # left unnamed: never read
                    log.warning("tenant %s: chunks no index object names could not be "
                                "deleted: %s", self.tenant, exc)
                error = error or err
                done = [i for i in done if refs[i].path not in lost]
        for i in done:
            s, sealed = jobs[i]
            with s.lock:  # the chunk is in (apply_delta), then the memory out
                s.sealed = [x for x in s.sealed if x is not sealed]
            self.memory.written(sealed.held)
        for i in done:
            # Its footer into the cache, not its lines: under ingest the cache would hold
            # only what was just written (nobody asked for it) and push out what queries
            # read.
            self.chunkio.written(files[i][0], files[i][1])
        kept = set(done)
        return [jobs[i] for i in range(len(jobs)) if i not in kept], error

    def _encode(self, s: Stream, block: EntryBlock, level: int, log_pos: bytes,
                filters: bool = False) -> tuple[bytes, ChunkRef]:
        data, meta = self.chunkio.encode(block, level, tenant=self.tenant,
                                         labels=format_labels(s.labels), log_pos=log_pos,
                                         filters=self._slot if filters else None)
        day = _day(meta.mint // _DAY_NS)
        rel = f"chunks/{day}/{s.fp:016x}-{meta.mint}-{uuid.uuid4().hex[:8]}.chunk"
        return data, ChunkRef(rel, meta.mint, meta.maxt, meta.n, meta.raw_bytes, meta.size,
                              level, time.time())

    def write_chunk(self, s: Stream, block: EntryBlock, level: int,
                    sources: Sequence[ChunkRef] = (), filters: bool = True) -> ChunkRef:
        """One chunk object, durable when this returns (not yet in the index); `sources`:
        the chunks it merges (its log position is the earliest of theirs); `filters`:
        with each block's token filter (the compactor's chunks; fresh chunks have none,
        see `_blockfilter`)."""
        log_pos = b""
        if self.positions is not None and sources:
            try:
                log_pos = self.positions.earliest([self.footer(s, c)[0] for c in sources])
            except (ChunkError, OSError):  # read a moment ago: not known after all
                log_pos = self.positions.encode(None)
        data, ref = self._encode(s, block, level, log_pos, filters)
        self.objects.put(self.key(ref.path), data)
        return ref

    def _slot(self, part: EntryBlock) -> bytes:
        """A compacted block's filters slot: its token filter, and (without structured
        metadata: a block with some is always read) its lines counted per minute, and
        per `detected_level` when the owner says how (`block_labels`)."""
        out = build_filter(part)
        if part.metadata is None:
            labeler = self.block_labels
            got = labeler(part) if labeler is not None else None
            out += build_counts(*(got or ("", "")), part)
        return out

    def replace_chunks(self, s: Stream, old: list[ChunkRef], new: ChunkRef) -> None:
        """Swap `old` for `new`: one index object adds the new chunk and takes the old ones
        out of service (deleted `delete_delay` later). When it cannot be written, the new
        chunk is deleted and the OSError raised."""
        try:
            with self.index.lock:
                self.apply_delta(self.index.replace(self.entry(s, new),
                                                    [Removal(s.fp, c.path) for c in old]))
        except OSError:
            self.objects.delete_many([self.key(new.path)])
            raise

    def seal_all(self, older_than: float | None = None, idle_since: float | None = None,
                 after_below: Position | None = None) -> list[tuple[Stream, Sealed]]:
        """Seal heads matching any given condition (all heads when none is given);
        `after_below`: heads whose data goes back before that log position."""
        every = older_than is None and idle_since is None and after_below is None
        out: list[tuple[Stream, Sealed]] = []
        for s in self.memory_streams():
            with s.lock:
                if not s.head:
                    continue
                cond = every or (older_than is not None and s.head_started < older_than)
                cond = cond or (idle_since is not None and s.last_append < idle_since)
                cond = cond or (after_below is not None and (
                    s.head_after is None or s.head_after < after_below))
                cut = s.seal() if cond else None
            if cut is not None:
                self.memory.flushing.add(cut.held)
                out.append((s, cut))
        return out

    def seal_stream(self, s: Stream) -> Sealed | None:
        """Cut the head of `s` now (None when it is empty)."""
        with s.lock:
            cut = s.seal()
        if cut is not None:
            self.memory.flushing.add(cut.held)
        return cut

    def apply_retention(self, cutoff: Callable[[dict[str, str]], int | None]) -> int:
        """Delete whole chunks whose newest entry is older than their stream's cutoff
        (`cutoff(labels)`, Unix ns; None keeps the stream's data)."""
        doomed = []
        for s in self.stream_list():
            cut = cutoff(s.labels)
            if cut is not None:
                doomed += [(s, c) for c in s.chunks if c.maxt < cut]
        if not doomed:
            return 0
        # Out of service now; the files go `delete_delay` later (`collect_garbage`).
        self.remove_chunks([Removal(s.fp, c.path) for s, c in doomed])
        self._forget_empty_streams(list({id(s): s for s, _ in doomed}.values()))
        return len(doomed)

    def apply_delete(self, deleter: LineDeleter, lo: int, hi: int) -> tuple[bool, int]:
        """Remove for good the lines of the chunks `deleter` deletes in [lo, hi] (ns,
        inclusive): a chunk with some is written again without them (with its filters
        and counts) and swapped in by one index object; a chunk they fill is taken out
        whole, without being read when the request has no filter. Returns (every chunk
        done, lines removed)."""
        ok, n = True, 0
        whole: list[tuple[Stream, ChunkRef]] = []
        for s in self.stream_list():
            if not deleter.selects(s.labels):
                continue
            for c in list(s.chunks):
                if c.maxt < lo or c.mint > hi:
                    continue
                if deleter.every_line and lo <= c.mint and c.maxt <= hi:
                    whole.append((s, c))
                    n += c.n
                    continue
                block = self.load_or_take_out(s, c)
                if block is None:
                    ok = False
                    continue
                mask = deleted_mask(block, [(lo, hi, deleter)])
                gone = int(np.count_nonzero(mask))
                if not gone:
                    continue
                if gone == len(block):
                    whole.append((s, c))
                    n += gone
                    continue
                try:
                    new = self.write_chunk(s, block.take(~mask), c.level, [c])
                    self.replace_chunks(s, [c], new)
                except OSError as exc:
                    log.warning("tenant %s: chunk %s could not be written again without "
                                "deleted lines (%s); tried again at the next pass",
                                self.tenant, c.path, exc)
                    ok = False
                    continue
                n += gone
        if whole:
            try:
                self.remove_chunks([Removal(s.fp, c.path) for s, c in whole])
            except OSError as exc:
                log.warning("tenant %s: chunks of deleted lines could not be taken out "
                            "(%s); tried again at the next pass", self.tenant, exc)
                return False, 0
            self._forget_empty_streams(list({id(s): s for s, _ in whole}.values()))
        return ok, n

    def _forget_empty_streams(self, streams: list[Stream]) -> None:
        """Streams without chunks or memory leave the tenant (and its postings). An apply
        that finds one gone (`Stream.gone`) makes it anew."""
        with self._streams_lock:
            for s in streams:
                with s.lock:
                    if s.chunks or s.has_memory():
                        continue
                    s.gone = True
                if self.streams.get(s.fp) is s:
                    del self.streams[s.fp]
                    for k, v in s.labels.items():
                        self.postings.get(k, {}).get(v, set()).discard(s.fp)

    # --- read path ---------------------------------------------------------------------
    def select(self, matchers: list[Matcher], start: int, end: int) -> list[Stream]:
        """Streams matching `matchers` with data in [start, end). Holds no lock while it
        scans (each stream's own only to look at its data)."""
        cands: set[int] | None = None
        for m in matchers:
            if m.op == "=" and m.value:
                # One C-level copy or intersection each: atomic against a new stream.
                fps = self.postings.get(m.name, {}).get(m.value, set())
                cands = fps.copy() if cands is None else cands & fps
        streams = self.streams
        pool = [s for fp in cands if (s := streams.get(fp)) is not None] \
            if cands is not None else list(streams.values())
        out: list[Stream] = []
        hook = self.scan_hook
        for s in pool:
            if hook is not None:
                hook(s)
            if all(m.matches(s.labels.get(m.name, "")) for m in matchers) \
                    and self._has_data(s, start, end):
                out.append(s)
        return out

    @staticmethod
    def _has_data(s: Stream, start: int, end: int) -> bool:
        with s.lock:
            chunks, mem = s.chunks, s.memory_pieces()
        if any(c.maxt >= start and c.mint < end for c in chunks):
            return True
        return any(p.maxt >= start and p.mint < end for p in mem)

    def snapshot(self, s: Stream, start: int, end: int) -> tuple[list[ChunkRef],
                                                                 list[HeadPiece]]:
        """The chunks and in-memory pieces of `s` overlapping [start, end), as one
        consistent view."""
        with s.lock:
            chunks, mem = s.chunks, s.memory_pieces()
        return ([c for c in chunks if c.maxt >= start and c.mint < end],
                [p for p in mem if p.maxt >= start and p.mint < end])

    def blocks(self, s: Stream, start: int, end: int, direction: str,
               warn: Callable[[str], None] | None = None,
               hints: ReadHints | None = None,
               on_summary: Callable[[BlockSummary], None] | None = None,
               ) -> Iterator[EntryBlock]:
        """Time-disjoint sorted blocks of one stream in [start, end), in `direction` order;
        a chunk that cannot be read is left out and `warn` is told (`take_out`).

        Only the blocks of a chunk that overlap [start, end) are read (format 2; a
        format-1 chunk is one block). Chunks may overlap in time (concurrent pushers,
        out-of-order writes): blocks are merged as a stream by `sluiceway.model.merge_stream`,
        each with where the blocks still to come start (the chunk's next block, the next
        chunk), pulled one at a time while the next ones are decoded ahead.

        `hints` (see `ReadHints`): a block whose token filter lacks one of `hints.tokens`
        is not read (counted in `hints.skipped`); with `hints.summary_grid` (forward
        only), a block of a chunk that no other chunk (nor the head) overlaps in time goes
        to `hints.summaries` instead of being read when it qualifies (`_Read.summaries`):
        no other data can hold a duplicate of its entries, so nothing of it is pending in
        the merge. `on_summary` is called with each (it may raise: the read stops).
        """
        chunks, mem = self.snapshot(s, start, end)
        spans: list[tuple[int, int, ChunkRef | list[HeadPiece]]] = [
            (c.mint, c.maxt, c) for c in chunks]
        if mem:
            spans.append((min(p.mint for p in mem), max(p.maxt for p in mem), mem))
        forward = direction != "backward"
        ordered = in_read_order(spans, direction)
        read = _Read(start, end, hints, forward, ordered, on_summary)

        def bounded() -> Iterator[tuple[EntryBlock | None, int | None]]:
            for i, block, inner in self._loaded(s, [it for _, _, it in ordered], read, warn):
                # Where the blocks still to come start: this item's next block, the next item.
                bounds = [inner] if inner is not None else []
                if i + 1 < len(ordered):
                    bounds.append(ordered[i + 1][0] if forward else ordered[i + 1][1])
                yield block, (None if not bounds else min(bounds) if forward else max(bounds))

        return merge_stream(bounded(), direction, start, end)

    def stats(self, s: Stream, start: int, end: int) -> tuple[int, int, int]:
        """Chunks, entries and bytes of the chunks (and the head, as one chunk) of `s`
        overlapping [start, end), from chunk metadata alone (nothing is decoded)."""
        chunks, mem = self.snapshot(s, start, end)
        return (len(chunks) + (1 if mem else 0),
                sum(c.n for c in chunks) + sum(len(p.block) for p in mem),
                sum(c.raw_bytes for c in chunks) + sum(p.block.nbytes for p in mem))

    def _loaded(self, s: Stream, items: list[ChunkRef | list[HeadPiece]], read: _Read,
                warn: Callable[[str], None] | None
                ) -> Iterator[tuple[int, EntryBlock | None, int | None]]:
        """(item index, block, where the item's next block starts) for every block of
        `items` overlapping the read's range, in order: each chunk's blocks in the read's
        direction (the start is their first timestamp forward, their last backward; None
        after the item's last block), the in-memory pieces as one sorted, deduplicated
        block. Blocks are read and decoded a few ahead on the pool (zstd releases the GIL)
        while the caller filters the current one. A chunk that cannot be read is taken
        out of service (`warn` is told why) and its blocks from there on are None."""
        ahead: deque[tuple[int, Future[Loaded], int | None, ChunkRef | None]] = deque()
        plan = self._plan(s, items, read, warn)
        failed: set[str] = set()  # chunks taken out during this read

        def submit() -> None:
            nxt = next(plan, None)
            if nxt is not None:
                ahead.append(nxt)

        for _ in range(_PREFETCH):
            submit()
        while ahead:
            i, fut, inner, ref = ahead.popleft()
            submit()
            got = fut.result()
            block: EntryBlock | None = None
            if ref is None or ref.path not in failed:
                if isinstance(got, EntryBlock):
                    block = got
                elif ref is not None:
                    failed.add(ref.path)
                    self._unreadable(s, ref, got, warn)
            yield i, block, inner

    def _plan(self, s: Stream, items: list[ChunkRef | list[HeadPiece]], read: _Read,
              warn: Callable[[str], None] | None
              ) -> Iterator[tuple[int, Future[Loaded], int | None, ChunkRef | None]]:
        """`_loaded`'s blocks as futures, each decoded on the pool when its turn comes.
        When a chunk's turn comes, its footer (the cache, or one range read of its tail)
        and the bytes of the blocks the range needs (one range read: they are
        neighbours) are read here; blocks the read's token filter rules out are left
        out, and the blocks it summarizes are not read either."""
        for i, item in enumerate(items):
            if not isinstance(item, ChunkRef):
                done: Future[Loaded] = Future()
                done.set_result(sort_dedupe(EntryBlock.concat([p.block for p in item])))
                yield i, done, None, None
                continue
            try:
                footer, held = self.footer(s, item)
                wanted = read.wanted(footer)
                wanted = read.summarize(footer, i, wanted)
                held = self.chunkio.fetch(self.key(item.path), wanted, held)
            except (ChunkError, OSError) as exc:
                self._unreadable(s, item, exc, warn)
                continue
            if not read.forward:
                wanted.reverse()
            for j, b in enumerate(wanted):
                inner = None if j + 1 == len(wanted) else \
                    wanted[j + 1].mint if read.forward else wanted[j + 1].maxt
                yield i, _POOL.submit(self._block_or_error, s, item, footer, b, held), inner, \
                    item

    def footer(self, s: Stream, ref: ChunkRef) -> tuple[Footer, Held]:
        """The footer of chunk `ref` (cached, or one range read of its tail) and the
        bytes read for it.
        ChunkError when it is damaged or is not the chunk the index describes (its lines,
        time range, tenant or stream differ), NotFound when missing, OSError when
        unreadable."""
        key = self.key(ref.path)
        footer, held, fresh = self.chunkio.footer(key, ref.size)
        if fresh:
            if footer.n != ref.n or footer.mint != ref.mint or footer.maxt != ref.maxt:
                raise ChunkError(f"chunk holds {footer.n} lines from {footer.mint} to "
                                 f"{footer.maxt}, the index says {ref.n} from {ref.mint} to "
                                 f"{ref.maxt}")
            if footer.labels is not None and (footer.tenant != self.tenant or
                                              footer.labels != format_labels(s.labels)):
                raise ChunkError(f"chunk belongs to {footer.labels} of tenant "
                                 f"{footer.tenant!r}, not to this stream")
            self.chunkio.keep_footer(key, footer)
        return footer, held

    def _block_or_error(self, s: Stream, ref: ChunkRef, footer: Footer, b: BlockInfo,
                        held: Held) -> Loaded:
        try:
            return self.chunkio.read_block(self.key(ref.path), footer, b, s.labels, held)
        except (ChunkError, OSError) as exc:
            return exc

    def load(self, s: Stream, ref: ChunkRef, keep: bool = True) -> EntryBlock:
        """Every entry of the chunk, as one block; ChunkError when the file is damaged or
        is not the one the index describes, NotFound when missing, OSError when
        unreadable. `keep`: put its blocks in the chunk cache (for queries; not for the
        store's own reads, the compactor's and the replay's, which would only push out
        what queries read)."""
        footer, held = self.footer(s, ref)
        key = self.key(ref.path)
        held = self.chunkio.fetch(key, footer.blocks, held)
        blocks = [self.chunkio.read_block(key, footer, b, s.labels, held, keep)
                  for b in footer.blocks]
        return EntryBlock.concat(blocks)

    def load_or_take_out(self, s: Stream, ref: ChunkRef,
                         warn: Callable[[str], None] | None = None,
                         keep: bool = True) -> EntryBlock | None:
        """`load`, or None: a damaged chunk is quarantined, a missing one leaves the index,
        and `warn` gets a sentence for the answer (Loki's `warnings`)."""
        try:
            return self.load(s, ref, keep)
        except (ChunkError, OSError) as exc:
            self._unreadable(s, ref, exc, warn)
            return None

    def _unreadable(self, s: Stream, ref: ChunkRef, exc: ChunkError | OSError,
                    warn: Callable[[str], None] | None) -> None:
        """A damaged chunk is quarantined, a missing one leaves the index, one that cannot
        be read now stays; `warn` gets a sentence for the answer (Loki's `warnings`)."""
        if isinstance(exc, ChunkError):
            msg = self.take_out(s, ref, CORRUPT, str(exc))
        elif isinstance(exc, NotFound):
            msg = self.take_out(s, ref, "missing", "the file is not there")
        else:
            msg = f"{_describe(s, ref)} could not be read ({exc.strerror or exc}); its " \
                  "lines are missing from this answer"
            log.warning("%s", msg)
        if warn is not None:
            warn(msg)

    def take_out(self, s: Stream, ref: ChunkRef, reason: str, why: str) -> str:
        """Stop serving a chunk that cannot be read: a "del" record for the index, the file
        to quarantine/corrupt/ (reason "corrupt"), a count by reason and a log line.
        Returns the warning for a query's answer."""
        what = _describe(s, ref)
        with self.index.lock:
            mine = ref in s.chunks  # a concurrent reader may have done it already
            if mine:
                try:
                    self.remove_chunks([Removal(s.fp, ref.path)])
                except OSError:
                    log.exception("index of tenant %s: could not record that %s is out of "
                                  "service; it is checked again after a restart", self.tenant,
                                  ref.path)
                with s.lock:
                    s.chunks = [c for c in s.chunks if c != ref]
        if mine:
            self.count_out(reason)
            self.cache.discard(self.key(ref.path))
            where = self._set_aside(ref.path) if reason == CORRUPT else None
            log.warning("tenant %s: %s: %s; %s", self.tenant, what, why,
                        f"moved to {where}" if where is not None else "dropped from the index")
        verb = "is damaged and was quarantined" if reason == CORRUPT else "is missing"
        return f"{what} {verb} ({why}): its lines are missing from this answer"

    def _set_aside(self, rel: str) -> str | None:
        """Move a damaged chunk into quarantine/corrupt/; its new tenant-relative key, or
        None when it is gone or cannot be moved (it stays; the index no longer names it)."""
        try:
            return set_aside(self.objects, self.prefix, rel, CORRUPT)
        except OSError as exc:
            log.warning("tenant %s: could not move damaged chunk %s to quarantine: %s",
                        self.tenant, rel, exc)
            return None

    def count_out(self, reason: str) -> None:
        """One more chunk taken out of service (`chunks_quarantined` by reason)."""
        with self._count_lock:
            self.chunks_quarantined[reason] = self.chunks_quarantined.get(reason, 0) + 1
            self.generation += 1  # lines were lost: results cached before are stale



def _describe(s: Stream, ref: ChunkRef) -> str:
    span = "/".join(datetime.fromtimestamp(t / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    for t in (ref.mint, ref.maxt))
    return f"chunk {ref.path} of {format_labels(s.labels)} ({ref.n} lines, {span})"


class _Read:
    """One read of a stream's blocks: its range, direction and hints, and the time spans
    of its items (chunks, the head), to tell which blocks no other item overlaps."""

    def __init__(self, start: int, end: int, hints: ReadHints | None, forward: bool,
                 items: Sequence[tuple[int, int, object]],
                 on_summary: Callable[[BlockSummary], None] | None = None) -> None:
        self.start, self.end, self.forward, self.hints = start, end, forward, hints
        self.on_summary = on_summary
        self.probe = TokenProbe(hints.tokens) if hints is not None and hints.tokens else None
        self.grid = hints.summary_grid if hints is not None and forward else 0
        self.mints = np.array([it[0] for it in items], dtype=np.int64)
        self.maxts = np.array([it[1] for it in items], dtype=np.int64)

    def wanted(self, footer: Footer) -> list[BlockInfo]:
        """The blocks of a chunk overlapping the range that its filters do not rule out
        (those that do are counted in `hints.skipped`)."""
        wanted = footer.overlapping(self.start, self.end)
        if self.probe is not None and self.hints is not None:
            kept = [b for b in wanted if not self.probe.excludes(b.filters)]
            self.hints.skipped += len(wanted) - len(kept)
            return kept
        return wanted

    def summarize(self, footer: Footer, i: int, wanted: list[BlockInfo]) -> list[BlockInfo]:
        """`wanted` without the blocks of item `i` that go to `hints.summaries`: format 2,
        no metadata, wholly inside the range, no other item (chunk, head) overlapping its
        time span, so none of its entries can be a duplicate the merge would remove, and
        its lines per bucket of the grid (and per value of `hints.label_key`) known from
        its footer (`summary_rows`: kept with the cached footer)."""
        g, hints = self.grid, self.hints
        if not g or footer.version != VERSION or hints is None:
            return wanted
        rest = []
        alone = self._alone(i, int(self.mints[i]), int(self.maxts[i]))  # all its blocks
        for b in wanted:
            rows = None
            if self.start <= b.mint and b.maxt < self.end and not b.has_metadata \
                    and (alone or self._alone(i, b.mint, b.maxt)):
                rows = summary_rows(footer, b, hints.label_key, g)
            if rows is None:
                rest.append(b)
                continue
            summary = BlockSummary(b.n, b.line_bytes, b.mint, b.maxt, rows)
            if self.on_summary is not None:
                self.on_summary(summary)
            hints.summaries.append(summary)
        return rest

    def _alone(self, i: int, mint: int, maxt: int) -> bool:
        """No item but `i` has data in [mint, maxt] (by its span)."""
        over = (self.mints <= maxt) & (self.maxts >= mint)
        return int(np.count_nonzero(over)) == 1 and bool(over[i])
