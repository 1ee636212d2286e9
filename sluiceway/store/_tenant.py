"""All streams of one tenant: apply WAL records, flush sealed heads to chunks, answer reads."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sluiceway.model import EntryBlock, Matcher, fingerprint, format_labels, parse_labels
from sluiceway.store._blocks import sort_dedupe
from sluiceway.store._cache import ChunkCache
from sluiceway.store._chunk import decode_chunk, encode_chunk, write_chunk_file
from sluiceway.store._index import IndexLog, read_index
from sluiceway.store._stream import ChunkRef, HeadPiece, Sealed, Stream
from sluiceway.store._wal import WalPos

log = logging.getLogger("sluiceway.store")

# Chunk decoding runs here so decompression overlaps with filtering on the query thread.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chunk-load")
_PREFETCH = 3


class TenantStore:
    def __init__(self, tenant: str, root: Path, cache: ChunkCache, chunk_target_bytes: int,
                 compression_level: int) -> None:
        self.tenant = tenant
        self.root = root
        self.cache = cache
        self.chunk_target_bytes = chunk_target_bytes
        self.compression_level = compression_level
        self.lock = threading.RLock()
        self.streams: dict[int, Stream] = {}
        self.postings: dict[str, dict[str, set[int]]] = {}
        root.mkdir(parents=True, exist_ok=True)
        self._load_index()
        self.index = IndexLog(root / "index.log")

    # --- loading -------------------------------------------------------------------
    def _load_index(self) -> None:
        for r in read_index(self.root / "index.log"):
            if r["op"] == "add":
                s = self._stream(int(r["fp"]), parse_labels(r["labels"]))
                pos = WalPos(int(r["seg"]), int(r["off"]))
                s.chunks.append(ChunkRef(r["path"], r["mint"], r["maxt"], r["n"], r["raw"],
                                         r["size"], pos, r.get("lvl", 1), r.get("at", 0.0)))
                s.flushed_pos = max(s.flushed_pos, pos)
            elif r["op"] == "del":
                s2 = self.streams.get(int(r["fp"]))
                if s2 is not None:
                    s2.chunks = [c for c in s2.chunks if c.path != r["path"]]
        for s in self.streams.values():
            s.chunks.sort(key=lambda c: c.mint)
            if s.chunks:
                s.max_ts = max(c.maxt for c in s.chunks)

    def _stream(self, fp: int, labels: dict[str, str]) -> Stream:
        s = self.streams.get(fp)
        if s is None:
            s = self.streams[fp] = Stream(fp, labels)
            for k, v in labels.items():
                self.postings.setdefault(k, {}).setdefault(v, set()).add(fp)
        return s

    # --- write path (WAL writer thread) --------------------------------------------
    def apply(self, blocks: list[EntryBlock], pos: WalPos, replay: bool) -> list[tuple[Stream,
                                                                                      Sealed]]:
        """Add a durable record's blocks to the heads; return heads sealed for flushing."""
        sealed: list[tuple[Stream, Sealed]] = []
        with self.lock:
            for b in blocks:
                s = self._stream(fingerprint(b.labels), b.labels)
                if replay and pos <= s.flushed_pos:
                    continue  # already in a chunk
                b = s.drop_known(b)
                if not len(b):
                    continue
                s.append(b, pos)
                if s.head_bytes >= self.chunk_target_bytes:
                    cut = s.seal()
                    if cut is not None:
                        sealed.append((s, cut))
        return sealed

    def max_ts(self, fp: int) -> int | None:
        s = self.streams.get(fp)
        return None if s is None else s.max_ts

    # --- flush path (flusher thread) -------------------------------------------------
    def flush(self, s: Stream, sealed: Sealed) -> ChunkRef:
        block = sort_dedupe(EntryBlock.concat([p.block for p in sealed.pieces]))
        ref = self.write_chunk(s, block, self.compression_level, sealed.last_pos)
        self.index.append([self.add_record(s, ref)])
        with self.lock:
            s.chunks.append(ref)
            s.chunks.sort(key=lambda c: c.mint)
            s.sealed.remove(sealed)
            s.flushed_pos = max(s.flushed_pos, sealed.last_pos)
        self.cache.put(str(self.root / ref.path), block)
        return ref

    def write_chunk(self, s: Stream, block: EntryBlock, level: int, pos: WalPos) -> ChunkRef:
        data, meta = encode_chunk(block, level)
        day = datetime.fromtimestamp(meta.mint / 1e9, UTC).strftime("%Y-%m-%d")
        rel = f"chunks/{day}/{s.fp:016x}-{meta.mint}-{uuid.uuid4().hex[:8]}.chunk"
        write_chunk_file(self.root / rel, data)
        return ChunkRef(rel, meta.mint, meta.maxt, meta.n, meta.raw_bytes, meta.size, pos,
                        level, time.time())

    @staticmethod
    def add_record(s: Stream, ref: ChunkRef) -> dict[str, object]:
        return {"op": "add", "fp": s.fp, "labels": format_labels(s.labels), "path": ref.path,
                "mint": ref.mint, "maxt": ref.maxt, "n": ref.n, "raw": ref.raw_bytes,
                "size": ref.size, "seg": ref.wal_pos.segment, "off": ref.wal_pos.offset,
                "lvl": ref.level, "at": ref.created}

    def replace_chunks(self, s: Stream, old: list[ChunkRef], new: ChunkRef) -> None:
        """Swap `old` for `new` in the index (one append) and in memory."""
        self.index.append([self.add_record(s, new),
                           *({"op": "del", "fp": s.fp, "path": c.path} for c in old)])
        with self.lock:
            s.chunks = sorted([c for c in s.chunks if c not in old] + [new],
                              key=lambda c: c.mint)
        for c in old:
            self.cache.discard(str(self.root / c.path))

    def seal_all(self, older_than: float | None = None, idle_since: float | None = None,
                 segment_below: int | None = None) -> list[tuple[Stream, Sealed]]:
        """Seal heads matching any given condition (all heads when none is given)."""
        out: list[tuple[Stream, Sealed]] = []
        with self.lock:
            for s in self.streams.values():
                if not s.head:
                    continue
                cond = older_than is None and idle_since is None and segment_below is None
                cond = cond or (older_than is not None and s.head_started < older_than)
                cond = cond or (idle_since is not None and s.last_append < idle_since)
                cond = cond or (segment_below is not None and s.head_first_pos is not None
                                and s.head_first_pos.segment < segment_below)
                if cond:
                    cut = s.seal()
                    if cut is not None:
                        out.append((s, cut))
        return out

    def oldest_pinned_segment(self) -> int | None:
        with self.lock:
            segs = [x for s in self.streams.values()
                    if (x := s.oldest_pinned_segment()) is not None]
        return min(segs) if segs else None

    def apply_retention(self, cutoff_ns: int) -> int:
        """Delete whole chunks whose newest entry is older than `cutoff_ns`."""
        doomed: list[tuple[Stream, ChunkRef]] = []
        with self.lock:
            for s in self.streams.values():
                for c in s.chunks:
                    if c.maxt < cutoff_ns:
                        doomed.append((s, c))
            if not doomed:
                return 0
            self.index.append([{"op": "del", "fp": s.fp, "path": c.path} for s, c in doomed])
            for s, c in doomed:
                s.chunks.remove(c)
                self.cache.discard(str(self.root / c.path))
            self._forget_empty_streams()
        for _s, c in doomed:
            (self.root / c.path).unlink(missing_ok=True)
        return len(doomed)

    def _forget_empty_streams(self) -> None:
        for fp in [fp for fp, s in self.streams.items()
                   if not s.chunks and not s.head and not s.sealed]:
            s = self.streams.pop(fp)
            for k, v in s.labels.items():
                self.postings.get(k, {}).get(v, set()).discard(fp)

    # --- read path ---------------------------------------------------------------------
    def select(self, matchers: list[Matcher], start: int, end: int) -> list[Stream]:
        with self.lock:
            cands: set[int] | None = None
            for m in matchers:
                if m.op == "=" and m.value:
                    fps = self.postings.get(m.name, {}).get(m.value, set())
                    cands = set(fps) if cands is None else cands & fps
            pool = (self.streams[fp] for fp in cands) if cands is not None \
                else iter(self.streams.values())
            return [s for s in pool
                    if all(m.matches(s.labels.get(m.name, "")) for m in matchers)
                    and self._has_data(s, start, end)]

    @staticmethod
    def _has_data(s: Stream, start: int, end: int) -> bool:
        if any(c.maxt >= start and c.mint < end for c in s.chunks):
            return True
        return any(p.maxt >= start and p.mint < end for p in s.memory_pieces())

    def blocks(self, s: Stream, start: int, end: int, direction: str) -> Iterator[EntryBlock]:
        """Time-disjoint sorted blocks of one stream in [start, end), in `direction` order.

        Chunks may overlap in time (concurrent pushers, out-of-order writes), so they are
        merged as a stream: after each chunk, everything that lies before the next chunk's
        start (or, backward, after its end) is final and goes out; only the rest is kept.
        """
        with self.lock:
            chunks = [c for c in s.chunks if c.maxt >= start and c.mint < end]
            mem = [p for p in s.memory_pieces() if p.maxt >= start and p.mint < end]
        items: list[tuple[int, int, ChunkRef | list[HeadPiece]]] = [
            (c.mint, c.maxt, c) for c in chunks]
        if mem:
            items.append((min(p.mint for p in mem), max(p.maxt for p in mem), mem))
        forward = direction != "backward"
        items.sort(key=(lambda t: t[0]) if forward else (lambda t: -t[1]))
        pending: EntryBlock | None = None
        for i, block in enumerate(self._loaded(s, [it[2] for it in items])):
            # Chunks that do not overlap leave nothing pending: no copy of the next one.
            merged = (block if pending is None or not len(pending)
                      else sort_dedupe(EntryBlock.concat([pending, block])))
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

    def _loaded(self, s: Stream,
                items: list[ChunkRef | list[HeadPiece]]) -> Iterator[EntryBlock]:
        """Each item as one sorted, deduplicated block; chunks are decoded a few ahead on
        the pool (zstd releases the GIL) while the caller filters the current one."""
        ahead: deque[Future[EntryBlock]] = deque()
        it = iter(items)

        def submit() -> None:
            item = next(it, None)
            if item is None:
                return
            if isinstance(item, ChunkRef):
                ahead.append(_POOL.submit(self.load, s, item))
            else:
                done: Future[EntryBlock] = Future()
                done.set_result(sort_dedupe(EntryBlock.concat([p.block for p in item])))
                ahead.append(done)

        for _ in range(_PREFETCH):
            submit()
        while ahead:
            block = ahead.popleft().result()
            submit()
            yield block

    def load(self, s: Stream, ref: ChunkRef) -> EntryBlock:
        key = str(self.root / ref.path)
        b = self.cache.get(key)
        if b is None:
            b = decode_chunk((self.root / ref.path).read_bytes(), s.labels)
            self.cache.put(key, b)
        return b

    def close(self) -> None:
        self.index.close()
