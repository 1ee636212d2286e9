"""All streams of one tenant: its streams and label postings, flushing sealed heads to
chunks, the index, and reads.

Locking: each stream has its own lock (`Stream.lock`, see `_stream`); the tenant's lock
(`_streams_lock`) is held only to add or forget a stream. Reads never hold a lock while
they scan: a `/series` or `/labels` call, however long, delays no push.

Chunk bytes are read, written and deleted only through the store's `ObjectStore`, under
the tenant's key prefix (`<tenant dir>/`); a chunk's key below it is its index path
(`chunks/<day>/<fp hex>-<mint>-<id>.chunk`). The index log stays a local file in `root`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sluiceway.durable import ensure_dir
from sluiceway.model import EntryBlock, Matcher, format_labels, parse_labels
from sluiceway.store._blocks import sort_dedupe
from sluiceway.store._cache import ChunkCache
from sluiceway.store._chunk import ChunkError, decode_chunk, encode_chunk
from sluiceway.store._index import IndexLog, read_index
from sluiceway.store._ingestlog import Position
from sluiceway.store._memory import StoreMemory
from sluiceway.store._objstore import NotFound, ObjectInfo, ObjectStore
from sluiceway.store._quarantine import CORRUPT, set_aside
from sluiceway.store._stream import ChunkRef, HeadPiece, Sealed, Stream

log = logging.getLogger("sluiceway.store")

# Chunk decoding runs here so decompression overlaps with filtering on the query thread.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chunk-load")
_PREFETCH = 3


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
                 memory: StoreMemory | None = None) -> None:
        """`root`: the tenant's local directory (its index log); `objects` and `prefix`:
        where its chunks are (`prefix` + a chunk's path is its key); `memory`: the store's
        accounting of what its heads hold."""
        self.tenant = tenant
        self.root = root
        self.objects = objects
        self.prefix = prefix
        self.cache = cache
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
        ensure_dir(root)
        self.index_records_lost = 0  # damaged index records skipped at load
        self.chunks_readded = 0  # chunk files the index no longer named, taken back
        self.chunks_quarantined: dict[str, int] = {}  # by reason
        self.generation = 0  # chunks taken out of service (part of `Store.generation`)
        self.deleted_paths: set[str] = set()  # of "del" records, kept for recover_chunks
        self.index_damaged = False
        end = self._load_index()
        self.index = IndexLog(root / "index.log", end)

    # --- loading -------------------------------------------------------------------
    def _load_index(self) -> int:
        scan = read_index(self.root / "index.log")
        self.index_records_lost = scan.lost
        # The index lost records (or all of them): recover_chunks compares it with the disk.
        self.index_damaged = bool(scan.damage) or (
            not scan.records and bool(self.chunk_objects()))
        for r in scan.records:
            try:
                self._apply_index_record(r)
            except (KeyError, ValueError, TypeError) as exc:
                self.index_records_lost += 1
                self.index_damaged = True
                log.warning("index %s: malformed record skipped (%r): %s",
                            self.root / "index.log", exc, r)
        for s in self.streams.values():
            s.chunks = sorted(s.chunks, key=lambda c: c.mint)
            if s.chunks:
                s.max_ts = max(c.maxt for c in s.chunks)
        return scan.end

    def _apply_index_record(self, r: dict[str, Any]) -> None:
        # Records before the ingest log seam also name a WAL position ("seg", "off"):
        # replay no longer needs it (`Heads` drops what chunks hold), so it is not read.
        if r["op"] == "add":
            s = self.stream(int(r["fp"]), parse_labels(r["labels"]))
            s.chunks.append(ChunkRef(r["path"], r["mint"], r["maxt"], r["n"], r["raw"],
                                     r["size"], r.get("lvl", 1), r.get("at", 0.0)))
        elif r["op"] == "del":
            self.deleted_paths.add(r["path"])
            s2 = self.streams.get(int(r["fp"]))
            if s2 is not None:
                s2.chunks = [c for c in s2.chunks if c.path != r["path"]]

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

    def delete_chunk_objects(self, rels: list[str]) -> None:
        """Delete chunks no index record names any more (idempotent)."""
        self.objects.delete_many([self.key(r) for r in rels])

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
        then one index append naming the ones that are durable. Returns the jobs that
        could not be written (they stay in memory and in the WAL) and the first error."""
        files: list[tuple[str, bytes]] = []
        refs: list[ChunkRef] = []
        encoded = 0  # the chunks made, counted in `flush_batch` until they are written
        try:
            for s, sealed in jobs:
                block = sort_dedupe(EntryBlock.concat([p.block for p in sealed.pieces]))
                data, ref = self._encode(s, block, self.compression_level)
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
            try:
                self.index.append([self.add_record(jobs[i][0], refs[i]) for i in done])
            except OSError as exc:
                # Never named: nothing may keep them.
                self.objects.delete_many([files[i][0] for i in done])
                return jobs, exc
        for i in done:
            s, sealed = jobs[i]
            with s.lock:  # the chunk in, then the memory out: a reader never misses both
                s.chunks = sorted([*s.chunks, refs[i]], key=lambda c: c.mint)
                s.sealed = [x for x in s.sealed if x is not sealed]
            self.memory.written(sealed.held)
        # Not put in the chunk cache: under ingest it would hold only what was just
        # written (nobody asked for it) and push out what queries read.
        return [jobs[i] for i, r in enumerate(results) if r is not None], error

    def _encode(self, s: Stream, block: EntryBlock, level: int) -> tuple[bytes, ChunkRef]:
        data, meta = encode_chunk(block, level)
        day = _day(meta.mint // _DAY_NS)
        rel = f"chunks/{day}/{s.fp:016x}-{meta.mint}-{uuid.uuid4().hex[:8]}.chunk"
        return data, ChunkRef(rel, meta.mint, meta.maxt, meta.n, meta.raw_bytes, meta.size,
                              level, time.time())

    def write_chunk(self, s: Stream, block: EntryBlock, level: int) -> ChunkRef:
        """One chunk object, durable when this returns (not yet in the index)."""
        data, ref = self._encode(s, block, level)
        self.objects.put(self.key(ref.path), data)
        return ref

    @staticmethod
    def add_record(s: Stream, ref: ChunkRef) -> dict[str, object]:
        return {"op": "add", "fp": s.fp, "labels": format_labels(s.labels), "path": ref.path,
                "mint": ref.mint, "maxt": ref.maxt, "n": ref.n, "raw": ref.raw_bytes,
                "size": ref.size, "lvl": ref.level, "at": ref.created}

    def replace_chunks(self, s: Stream, old: list[ChunkRef], new: ChunkRef) -> None:
        """Swap `old` for `new` in the index (one append) and in memory."""
        self.index.append([self.add_record(s, new),
                           *({"op": "del", "fp": s.fp, "path": c.path} for c in old)])
        with s.lock:
            s.chunks = sorted([c for c in s.chunks if c not in old] + [new],
                              key=lambda c: c.mint)
        for c in old:
            self.cache.discard(self.key(c.path))

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

    def apply_retention(self, cutoff_ns: int) -> int:
        """Delete whole chunks whose newest entry is older than `cutoff_ns`."""
        doomed = [(s, c) for s in self.stream_list() for c in s.chunks if c.maxt < cutoff_ns]
        if not doomed:
            return 0
        self.index.append([{"op": "del", "fp": s.fp, "path": c.path} for s, c in doomed])
        by_stream: dict[int, tuple[Stream, list[ChunkRef]]] = {}
        for s, c in doomed:
            by_stream.setdefault(id(s), (s, []))[1].append(c)
        for s, gone in by_stream.values():
            with s.lock:
                s.chunks = [c for c in s.chunks if c not in gone]
            for c in gone:
                self.cache.discard(self.key(c.path))
        self._forget_empty_streams([s for s, _ in by_stream.values()])
        self.delete_chunk_objects([c.path for _s, c in doomed])
        return len(doomed)

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
               warn: Callable[[str], None] | None = None) -> Iterator[EntryBlock]:
        """Time-disjoint sorted blocks of one stream in [start, end), in `direction` order;
        a chunk that cannot be read is left out and `warn` is told (`load_or_take_out`).

        Chunks may overlap in time (concurrent pushers, out-of-order writes), so they are
        merged as a stream: after each chunk, everything that lies before the next chunk's
        start (or, backward, after its end) is final and goes out; only the rest is kept.
        """
        chunks, mem = self.snapshot(s, start, end)
        items: list[tuple[int, int, ChunkRef | list[HeadPiece]]] = [
            (c.mint, c.maxt, c) for c in chunks]
        if mem:
            items.append((min(p.mint for p in mem), max(p.maxt for p in mem), mem))
        forward = direction != "backward"
        items.sort(key=(lambda t: t[0]) if forward else (lambda t: -t[1]))
        pending: EntryBlock | None = None
        for i, block in enumerate(self._loaded(s, [it[2] for it in items], warn)):
            # An unreadable chunk is None; chunks that do not overlap leave an empty
            # block pending: neither is merged, so the next chunk is not copied.
            parts = [b for b in (pending, block) if b is not None and len(b)]
            if not parts:
                continue
            merged = parts[0] if len(parts) == 1 else sort_dedupe(EntryBlock.concat(parts))
            if i + 1 < len(items):
                if forward:
                    cut = int(np.searchsorted(merged.ts, items[i + 1][0], "left"))
                    out, pending = merged.slice(0, cut), merged.slice(cut, len(merged))
                else:
                    cut = int(np.searchsorted(merged.ts, items[i + 1][1], "right"))
                    out, pending = merged.slice(cut, len(merged)), merged.slice(0, cut)
            else:
                out, pending = merged, None
            out = out.clip(start, end)
            if len(out):
                yield out

    def _loaded(self, s: Stream, items: list[ChunkRef | list[HeadPiece]],
                warn: Callable[[str], None] | None) -> Iterator[EntryBlock | None]:
        """Each item as one sorted, deduplicated block; chunks are decoded a few ahead on
        the pool (zstd releases the GIL) while the caller filters the current one. A chunk
        that cannot be read is None (and `warn` is told why)."""
        ahead: deque[Future[EntryBlock | None]] = deque()
        it = iter(items)

        def submit() -> None:
            item = next(it, None)
            if item is None:
                return
            if isinstance(item, ChunkRef):
                ahead.append(_POOL.submit(self.load_or_take_out, s, item, warn))
            else:
                done: Future[EntryBlock | None] = Future()
                done.set_result(sort_dedupe(EntryBlock.concat([p.block for p in item])))
                ahead.append(done)

        for _ in range(_PREFETCH):
            submit()
        while ahead:
            block = ahead.popleft().result()
            submit()
            yield block

    def load(self, s: Stream, ref: ChunkRef, keep: bool = True) -> EntryBlock:
        """The chunk's entries; ChunkError when the file is damaged or is not the one the
        index describes (header fields outside the checksum), OSError when unreadable.
        `keep`: put it in the chunk cache (for queries; not for the store's own reads, the
        compactor's and the replay's, which would only push out what queries read)."""
        key = self.key(ref.path)
        b = self.cache.get(key)
        if b is None:
            b = decode_chunk(self.objects.get(key), s.labels)
            if len(b) != ref.n or int(b.ts[0]) != ref.mint or int(b.ts[-1]) != ref.maxt:
                raise ChunkError(f"chunk holds {len(b)} lines, the index says {ref.n} "
                                 "(or their time range differs)")
            if keep:
                self.cache.put(key, b)
        return b

    def load_or_take_out(self, s: Stream, ref: ChunkRef,
                         warn: Callable[[str], None] | None = None,
                         keep: bool = True) -> EntryBlock | None:
        """`load`, or None: a damaged chunk is quarantined, a missing one leaves the index,
        and `warn` gets a sentence for the answer (Loki's `warnings`)."""
        try:
            return self.load(s, ref, keep)
        except ChunkError as exc:
            msg = self.take_out(s, ref, CORRUPT, str(exc))
        except NotFound:
            msg = self.take_out(s, ref, "missing", "the file is not there")
        except OSError as exc:
            msg = f"{_describe(s, ref)} could not be read ({exc.strerror or exc}); its " \
                  "lines are missing from this answer"
            log.warning("%s", msg)
        if warn is not None:
            warn(msg)
        return None

    def take_out(self, s: Stream, ref: ChunkRef, reason: str, why: str) -> str:
        """Stop serving a chunk that cannot be read: a "del" record for the index, the file
        to quarantine/corrupt/ (reason "corrupt"), a count by reason and a log line.
        Returns the warning for a query's answer."""
        what = _describe(s, ref)
        with s.lock:
            mine = ref in s.chunks  # a concurrent reader may have done it already
            if mine:
                s.chunks = [c for c in s.chunks if c != ref]
        if mine:
            self.count_out(reason)
            self.cache.discard(self.key(ref.path))
            try:
                self.index.append([{"op": "del", "fp": s.fp, "path": ref.path}])
            except OSError:
                log.exception("index of tenant %s: could not record that %s is out of "
                              "service; it is checked again after a restart", self.tenant,
                              ref.path)
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

    def close(self) -> None:
        self.index.close()


def _describe(s: Stream, ref: ChunkRef) -> str:
    span = "/".join(datetime.fromtimestamp(t / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    for t in (ref.mint, ref.maxt))
    return f"chunk {ref.path} of {format_labels(s.labels)} ({ref.n} lines, {span})"
