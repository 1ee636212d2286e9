"""The single-node store: one WAL for all tenants, per-tenant heads, chunks and index."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import orjson

from sluiceway.model import EntryBlock, Matcher, fingerprint
from sluiceway.store._cache import ChunkCache
from sluiceway.store._compactor import CompactionStats, Compactor
from sluiceway.store._record import decode_record, encode_record
from sluiceway.store._stream import Sealed, Stream
from sluiceway.store._tenant import TenantStore
from sluiceway.store._wal import WalPos, WalWriter, replay

log = logging.getLogger("sluiceway.store")

FORMAT_NAME = "sluiceway-store"
FORMAT_VERSION = 1
_SAFE_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,150}$")


class StoreError(RuntimeError):
    """The data directory cannot be used (wrong format version, unwritable, damaged)."""


@dataclass(slots=True)
class StoreConfig:
    data_dir: Path
    wal_sync: str = "always"  # "always": fsync before ack (group commit); "interval"
    wal_sync_interval_s: float = 0.1
    wal_segment_bytes: int = 128 << 20
    max_wal_bytes: int = 2 << 30
    chunk_target_bytes: int = 4 << 20
    max_chunk_age_s: float = 7200.0
    chunk_idle_s: float = 1800.0
    compression_level: int = 1
    flush_check_interval_s: float = 10.0
    retention_period_s: float = 0.0  # 0 keeps data forever, as Loki's default
    retention_check_interval_s: float = 600.0
    cache_bytes: int = 512 << 20
    flush_on_shutdown: bool = True
    compaction_enabled: bool = True
    compaction_level: int = 17
    compaction_target_bytes: int = 16 << 20
    compaction_min_age_s: float = 900.0
    compaction_interval_s: float = 600.0


@dataclass(frozen=True, slots=True)
class StoreSeries:
    tenant: str
    fp: int
    labels: dict[str, str]


def tenant_dirname(tenant: str) -> str:
    # Tenant ids never become raw path components: safe ones get a prefix, others hex.
    return f"t-{tenant}" if _SAFE_TENANT.match(tenant) else f"x-{tenant.encode().hex()}"


def tenant_from_dirname(name: str) -> str | None:
    if name.startswith("t-"):
        return name[2:]
    if name.startswith("x-"):
        try:
            return bytes.fromhex(name[2:]).decode()
        except ValueError:
            return None
    return None


class Store:
    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.root = cfg.data_dir
        self._check_format()
        self.cache = ChunkCache(cfg.cache_bytes)
        self.tenants: dict[str, TenantStore] = {}
        self._tenants_lock = threading.Lock()
        self._flush_q: list[tuple[TenantStore, Stream, Sealed]] = []
        self._flush_cond = threading.Condition()
        self._flush_mutex = threading.Lock()  # held while chunks are being written
        self._closing = False
        self.chunks_flushed = 0
        self.flush_failures = 0
        self.retention_deleted = 0
        # Bumped whenever stored data changes other than by new lines (compaction,
        # retention): cached query results of closed time ranges key on it.
        self.generation = 0
        self.ready = False
        for d in sorted((self.root / "tenants").glob("*")):
            t = tenant_from_dirname(d.name)
            if t is not None and d.is_dir():
                self.tenant(t)
        self.replayed_records = self._replay()
        self.wal = WalWriter(self.root / "wal", cfg.wal_segment_bytes, cfg.wal_sync,
                             cfg.wal_sync_interval_s)
        self._last_retention = time.monotonic()  # first pass one interval after start
        self._last_periodic = 0.0
        self._flusher = threading.Thread(target=self._flush_loop, name="flusher", daemon=True)
        self._flusher.start()
        self.compactor = Compactor(cfg.compaction_level, cfg.compaction_target_bytes,
                                   cfg.compaction_min_age_s)
        self._compact_lock = threading.Lock()
        self._stop = threading.Event()
        if cfg.compaction_enabled:
            threading.Thread(target=self._compact_loop, name="compactor", daemon=True).start()
        self.ready = True

    # --- startup ---------------------------------------------------------------------
    def _check_format(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            marker = self.root / "FORMAT"
            if marker.exists():
                info = orjson.loads(marker.read_bytes())
                if info.get("format") != FORMAT_NAME or info.get("version") != FORMAT_VERSION:
                    raise StoreError(
                        f"data dir {self.root} holds {info.get('format')} format version "
                        f"{info.get('version')}; this Sluiceway reads {FORMAT_NAME} version "
                        f"{FORMAT_VERSION}")
            else:
                marker.write_bytes(orjson.dumps({"format": FORMAT_NAME,
                                                 "version": FORMAT_VERSION}))
            probe = self.root / ".write-probe"
            probe.write_bytes(b"ok")
            probe.unlink()
        except (OSError, ValueError) as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"data dir {self.root} is not usable: {exc}") from exc

    def _replay(self) -> int:
        n = 0
        t0 = time.monotonic()
        for pos, payload in replay(self.root / "wal"):
            try:
                tenant, blocks = decode_record(payload)
            except (ValueError, KeyError) as exc:
                log.warning("WAL record at %s could not be decoded, skipped: %s", pos, exc)
                continue
            for s, sealed in self.tenant(tenant).apply(blocks, pos, replay=True):
                self._enqueue_flush(self.tenant(tenant), s, sealed)
            n += 1
        if n:
            log.info("replayed %d WAL records in %.2fs", n, time.monotonic() - t0)
        return n

    def tenant(self, tenant: str) -> TenantStore:
        ts = self.tenants.get(tenant)
        if ts is None:
            with self._tenants_lock:
                ts = self.tenants.get(tenant)
                if ts is None:
                    ts = TenantStore(tenant, self.root / "tenants" / tenant_dirname(tenant),
                                     self.cache, self.cfg.chunk_target_bytes,
                                     self.cfg.compression_level)
                    self.tenants[tenant] = ts
        return ts

    # --- write path ------------------------------------------------------------------
    def push(self, tenant: str, blocks: list[EntryBlock], payload: bytes | None = None,
             crc: int | None = None) -> Future[WalPos]:
        """Append to the WAL; the future resolves once durable and applied (queryable).

        `payload` is `encode_record(tenant, blocks)` when the caller already has it, and
        `crc` its CRC32."""
        payload = payload if payload is not None else encode_record(tenant, blocks)
        ts = self.tenant(tenant)

        def apply(pos: WalPos) -> None:
            for s, sealed in ts.apply(blocks, pos, replay=False):
                self._enqueue_flush(ts, s, sealed)

        return self.wal.submit(payload, apply, crc)

    def stream_max_ts(self, tenant: str, labels: dict[str, str]) -> int | None:
        ts = self.tenants.get(tenant)
        return None if ts is None else ts.max_ts(fingerprint(labels))

    # --- flushing --------------------------------------------------------------------
    def _enqueue_flush(self, ts: TenantStore, s: Stream, sealed: Sealed) -> None:
        with self._flush_cond:
            self._flush_q.append((ts, s, sealed))
            self._flush_cond.notify()

    def _flush_loop(self) -> None:
        while True:
            with self._flush_cond:
                if not self._flush_q and not self._closing:
                    self._flush_cond.wait(self.cfg.flush_check_interval_s)
                closing = self._closing
            with self._flush_mutex:
                with self._flush_cond:
                    jobs, self._flush_q = self._flush_q, []
                for ts, s, sealed in jobs:
                    self._flush_one(ts, s, sealed)
                if closing and not jobs:
                    return
                if not closing and time.monotonic() - self._last_periodic >= \
                        self.cfg.flush_check_interval_s:
                    self._last_periodic = time.monotonic()
                    self._periodic()

    def _flush_one(self, ts: TenantStore, s: Stream, sealed: Sealed) -> None:
        try:
            ts.flush(s, sealed)
            self.chunks_flushed += 1
        except OSError:
            # The data stays in memory and in the WAL; the next periodic pass retries.
            self.flush_failures += 1
            log.exception("flushing a chunk of tenant %s failed; will retry", ts.tenant)
            with self._flush_cond:
                self._flush_q.append((ts, s, sealed))

    def _periodic(self) -> None:
        now = time.monotonic()
        for ts in list(self.tenants.values()):
            for s, sealed in ts.seal_all(older_than=now - self.cfg.max_chunk_age_s,
                                         idle_since=now - self.cfg.chunk_idle_s):
                self._flush_one(ts, s, sealed)
        if self.wal.size_bytes() > self.cfg.max_wal_bytes:
            oldest = self.oldest_pinned_segment()
            if oldest is not None:
                for ts in list(self.tenants.values()):
                    for s, sealed in ts.seal_all(segment_below=oldest + 1):
                        self._flush_one(ts, s, sealed)
        self.truncate_wal()
        if self.cfg.retention_period_s > 0 and \
                now - self._last_retention >= self.cfg.retention_check_interval_s:
            self._last_retention = now
            self.apply_retention()

    def oldest_pinned_segment(self) -> int | None:
        segs = [x for t in list(self.tenants.values())
                if (x := t.oldest_pinned_segment()) is not None]
        return min(segs) if segs else None

    def truncate_wal(self) -> int:
        oldest = self.oldest_pinned_segment()
        return self.wal.remove_segments_before(oldest if oldest is not None else self.wal.segment)

    def flush_all(self) -> int:
        """Seal every head and write it to chunks now (Loki's /flush); when this returns,
        no chunk write is still in progress."""
        n = 0
        with self._flush_mutex:
            with self._flush_cond:
                jobs, self._flush_q = self._flush_q, []
            for ts, s, sealed in jobs:
                self._flush_one(ts, s, sealed)
            n = len(jobs) + self._seal_and_flush_all()
        if self.oldest_pinned_segment() is None and self.wal.current_bytes:
            # Everything is in chunks: close the open segment so it can be deleted too.
            seg = self.wal.segment
            self.wal.request_rotation()
            deadline = time.monotonic() + 5
            while self.wal.segment == seg and time.monotonic() < deadline:
                time.sleep(0.005)
        self.truncate_wal()
        return n

    def _seal_and_flush_all(self) -> int:
        n = 0
        for ts in list(self.tenants.values()):
            for s, sealed in ts.seal_all():
                self._flush_one(ts, s, sealed)
                n += 1
        return n

    def apply_retention(self, now_ns: int | None = None) -> int:
        now_ns = now_ns if now_ns is not None else time.time_ns()
        cutoff = now_ns - int(self.cfg.retention_period_s * 1e9)
        n = sum(t.apply_retention(cutoff) for t in list(self.tenants.values()))
        self.retention_deleted += n
        if n:
            self.generation += 1
        return n

    # --- compaction --------------------------------------------------------------------
    def _compact_loop(self) -> None:
        while not self._stop.wait(self.cfg.compaction_interval_s):
            self.compact()

    def compact(self, min_age_s: float | None = None) -> CompactionStats:
        """Merge and recompress chunks older than `min_age_s` (default: configured)."""
        with self._compact_lock:
            if min_age_s is not None:
                saved, self.compactor.min_age_s = self.compactor.min_age_s, min_age_s
            try:
                out = self.compactor.run(list(self.tenants.values()))
                if out.chunks_in:
                    self.generation += 1
                return out
            finally:
                if min_age_s is not None:
                    self.compactor.min_age_s = saved

    # --- read path ---------------------------------------------------------------------
    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[StoreSeries]:
        out: list[StoreSeries] = []
        for t in tenants:
            ts = self.tenants.get(t)
            if ts is not None:
                out.extend(StoreSeries(t, s.fp, s.labels) for s in ts.select(matchers, start, end))
        return out

    def blocks(self, ref: StoreSeries, start: int, end: int,
               direction: str) -> Iterator[EntryBlock]:
        ts = self.tenants.get(ref.tenant)
        s = ts.streams.get(ref.fp) if ts is not None else None
        if ts is None or s is None:
            return iter(())
        return ts.blocks(s, start, end, direction)

    def label_names(self, tenants: list[str], start: int, end: int,
                    matchers: list[Matcher] | None = None) -> list[str]:
        names: set[str] = set()
        for s in self.series(tenants, matchers or [], start, end):
            names.update(s.labels)
        return sorted(names)

    def label_values(self, tenants: list[str], name: str, start: int, end: int,
                     matchers: list[Matcher] | None = None) -> list[str]:
        vals = {s.labels[name] for s in self.series(tenants, matchers or [], start, end)
                if name in s.labels}
        return sorted(vals)

    # --- stats and shutdown ----------------------------------------------------------
    def disk_usage(self) -> dict[str, int]:
        chunks = index = 0
        for t in self.tenants.values():
            chunks += sum(p.stat().st_size for p in t.root.glob("chunks/*/*.chunk"))
            idx = t.root / "index.log"
            index += idx.stat().st_size if idx.exists() else 0
        return {"chunks": chunks, "index": index, "wal": self.wal.size_bytes()}

    def close(self) -> None:
        self._stop.set()
        self.wal.close()
        if self.cfg.flush_on_shutdown:
            self.flush_all()
            if self.oldest_pinned_segment() is None:
                # Everything is in chunks: the closed WAL holds nothing to replay.
                self.wal.remove_segments_before(self.wal.segment + 1)
        with self._flush_cond:
            self._closing = True
            self._flush_cond.notify()
        self._flusher.join(60)
        for t in self.tenants.values():
            t.close()


def index_stats(store: Store, tenants: list[str], matchers: list[Matcher], start: int,
                end: int) -> dict[str, int]:
    """Loki's /index/stats from chunk metadata alone (no decompression); in-memory head
    data counts as one chunk per stream, since our store has no ingester/store gap."""
    out = {"streams": 0, "chunks": 0, "entries": 0, "bytes": 0}
    for ref in store.series(tenants, matchers, start, end):
        ts = store.tenants[ref.tenant]
        with ts.lock:
            s = ts.streams.get(ref.fp)
            if s is None:
                continue
            chunks = [c for c in s.chunks if c.maxt >= start and c.mint < end]
            mem = [p for p in s.memory_pieces() if p.maxt >= start and p.mint < end]
        out["streams"] += 1
        out["chunks"] += len(chunks) + (1 if mem else 0)
        out["entries"] += sum(c.n for c in chunks) + sum(len(p.block) for p in mem)
        out["bytes"] += sum(c.raw_bytes for c in chunks) + sum(p.block.nbytes for p in mem)
    return out
