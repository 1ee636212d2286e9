"""The single-node store: the ingest log (one WAL for all tenants) → the heads, applied in
log order → chunks and index objects in the object store, with the checkpoint replay
starts from."""

from __future__ import annotations

import base64
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import orjson

from sluiceway.durable import (
    DirLock,
    DirLocked,
    atomic_write,
    ensure_dir,
    lock_dir,
    remove_temp_files,
)
from sluiceway.model import (
    BlockSummary,
    EntryBlock,
    Matcher,
    PushRecord,
    ReadHints,
    SeriesRef,
    sort_dedupe,
)
from sluiceway.store._applier import Applier
from sluiceway.store._cache import ChunkCache
from sluiceway.store._checkpoint import read_checkpoint, write_checkpoint
from sluiceway.store._chunkio import LogPositions
from sluiceway.store._compactor import CompactionStats, Compactor
from sluiceway.store._config import CompactorConfig, StoreConfig
from sluiceway.store._deletes import Applying, DeleteRequests, without_deleted
from sluiceway.store._heads import Applied, Heads
from sluiceway.store._index import PREFIX as INDEX_PREFIX
from sluiceway.store._index import Writer, tenant_dirs
from sluiceway.store._indexlog import Migrated, finish, migrate
from sluiceway.store._memory import StoreMemory, give_back_free_memory
from sluiceway.store._objstore import LocalDir, ObjectInfo, ObjectStore
from sluiceway.store._orphans import SweepResult, sweep_orphans
from sluiceway.store._recover import recover_chunks
from sluiceway.store._stream import Sealed, Stream
from sluiceway.store._tenant import TenantStore
from sluiceway.store._unnamed import Judge
from sluiceway.store._wal import FileWal, WalPos

log = logging.getLogger("sluiceway.store")

# How chunk footers name positions of the ingest log (the WAL's JSON form).
_POSITIONS = LogPositions(FileWal.position_to_json, FileWal.position_from_json)
FORMAT_NAME = "sluiceway-store"
# 2: new chunks are chunk format 2 (`_chunkfmt`); a release that reads only format-1
# chunks refuses the dir instead of quarantining every newer chunk.
# 3: the index is immutable objects in the object store (`_index`); a release that reads
# only index logs refuses the dir instead of finding every chunk unindexed.
# A version-1 or -2 dir is opened as it is (chunks of both formats are read), its index
# logs are migrated to index objects, and its marker is raised to 3, with a log line.
FORMAT_VERSION = 3
READS_VERSIONS = (1, 2, 3)
# Seconds a line may lie behind its stream's newest when the owner gives no
# `unordered_window_for` (Loki's default `unordered_window`: max_chunk_age / 2).
UNORDERED_WINDOW_S = 3600.0
_SAFE_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,150}$")
LOCK_NAME = "LOCK"
# Heads written per batch: the encoded chunks of one batch are held in memory together.
_BATCH_FILES = 8192
_BATCH_BYTES = 16 << 20
# After chunks are written, the checkpoint moves at most this often (it scans the heads).
_CHECKPOINT_EVERY_S = 1.0
# Back-off between attempts while chunks cannot be written (disk full, I/O errors).
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 30.0

Job = tuple[TenantStore, Stream, Sealed]


class StoreError(RuntimeError):
    """The data directory cannot be used (wrong format version, unwritable, damaged,
    in use by another process)."""


class ChunkWriteError(StoreError):
    """Chunks could not be written now (disk full, I/O error); their data stays in memory
    and in the WAL, and the flusher retries with back-off."""


def lock_data_dir(data_dir: Path) -> DirLock:
    """Take the data directory for this process alone (an flock on `LOCK`, released by
    the kernel even on SIGKILL); a second process gets a StoreError naming the owner."""
    try:
        ensure_dir(data_dir)
        return lock_dir(data_dir, LOCK_NAME)
    except DirLocked as exc:
        who = f" (pid {exc.pid})" if exc.pid else ""
        raise StoreError(f"data dir {data_dir} is in use by another Sluiceway server{who}; "
                         "two servers cannot share one data dir") from None
    except OSError as exc:
        raise StoreError(f"data dir {data_dir} is not usable: {exc}") from exc


_MAX_NAME = 255  # bytes in a file name (ext4, xfs, btrfs, tmpfs)
_HEX_MAX = (_MAX_NAME - 2) // 2  # id bytes whose hex name fits: 126


def tenant_dirname(tenant: str) -> str:
    """The directory of a tenant: never the raw id (it may be `..` or hold `/`), one name
    per id and back (`tenant_from_dirname`). Ids of letters, digits, `_` and `-` keep
    their text after `t-`; others are hex after `x-`, or, when hex would pass 255 bytes
    (Loki allows 150 characters), unpadded lowercase base32 after `b-`, which fits up to
    158 bytes. Existing `t-` and `x-` directories keep their names."""
    if _SAFE_TENANT.match(tenant):
        return f"t-{tenant}"
    raw = tenant.encode()
    if len(raw) <= _HEX_MAX:
        return f"x-{raw.hex()}"
    name = "b-" + base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    if len(name) > _MAX_NAME:
        raise ValueError(f"tenant id of {len(raw)} bytes is too long to store")
    return name


def tenant_from_dirname(name: str) -> str | None:
    """The tenant id of a directory, or None for one `tenant_dirname` does not make."""
    try:
        if name.startswith("t-"):
            tenant = name[2:]
        elif name.startswith("x-"):
            tenant = bytes.fromhex(name[2:]).decode()
        elif name.startswith("b-"):
            text = name[2:].upper()
            tenant = base64.b32decode(text + "=" * (-len(text) % 8)).decode()
        else:
            return None
        # Only the name tenant_dirname gives the id: no two directories mean one tenant.
        return tenant if tenant_dirname(tenant) == name else None
    except ValueError:
        return None


class Store:
    def __init__(self, cfg: StoreConfig, lock: DirLock | None = None,
                 objects: ObjectStore | None = None,
                 unordered_window_for: Callable[[str], float] | None = None, *,
                 compactor: CompactorConfig | None = None,
                 retention_for: Callable[[str], float] | None = None) -> None:
        """Open the data dir; `lock` is its `lock_data_dir` when the caller took it
        already (the store releases it on close), else the store takes it first.
        `objects` holds the chunks, keyed `<tenant dir>/chunks/...`; by default a
        `LocalDir` over `<data_dir>/tenants`, which is today's file layout.
        `unordered_window_for(tenant)`: seconds a tenant's line may be behind its stream's
        newest (default `UNORDERED_WINDOW_S`, Loki's, for all); given here, the WAL replay
        decides as the pushes were decided. `compactor`: Loki's `compactor` keys (its
        intervals win over `cfg`'s). `retention_for(tenant)`: seconds a tenant keeps its
        data (default `cfg.retention_period` for all)."""
        self.cfg = cfg
        self.compactor_cfg = comp = compactor if compactor is not None else CompactorConfig()
        self._compaction_every = comp.compaction_every(cfg)
        self._retention_every = comp.retention_every(cfg)
        self.delete_delay_s = comp.retention_delete_delay
        self.root = cfg.data_dir
        self._lock = lock if lock is not None else lock_data_dir(self.root)
        self.objects = objects if objects is not None else LocalDir(self.root / "tenants")
        found = self._check_format()
        self._remove_temp_files()
        self.writer = Writer()  # names this store's index objects
        self.memory = StoreMemory(cfg.max_heads_size, cfg.cache_size)
        self.cache = ChunkCache(cfg.cache_size, self.memory.chunk_cache)
        self.tenants: dict[str, TenantStore] = {}
        self._tenants_lock = threading.Lock()
        self._flush_q: list[Job] = []  # sealed heads waiting to be written
        self._flush_cond = threading.Condition()
        self._flush_mutex = threading.Lock()  # held while chunks are being written
        self._closing = False
        self.chunks_flushed = 0
        # Batches of heads begun and finished being written (chunks, index object, heads
        # released): a reader that snapshots the heads and then waits until every write
        # begun before has finished knows every line it missed is in an index object.
        self.writes_started = 0
        self.writes_done = 0
        self.flush_failures = 0
        self.flush_failing = False  # the last attempt to write chunks failed
        self._retry_delay = 0.0
        self._retry_at = 0.0  # while failing, no new attempt before this (monotonic)
        self._failing_since = 0.0
        self.retention_deleted = 0
        self.heads_cut_early = 0  # heads cut before their target size: max_heads_bytes
        # Seconds each tenant keeps its data (0: forever); the server sets it per tenant.
        self.retention_for: Callable[[str], float] = (
            retention_for or (lambda _t: cfg.retention_period))
        # Per-stream retention (Loki's `retention_stream`): tenant, stream labels -> the
        # seconds that stream keeps its data (0: forever); None: the tenant's for all.
        self.stream_retention_for: Callable[[str, dict[str, str]], float] | None = None
        # Seconds a tenant's line may lie behind its stream's newest; the server sets it.
        self.unordered_window_for: Callable[[str], float] = (
            unordered_window_for or (lambda _t: UNORDERED_WINDOW_S))
        # How a compacted block's lines are labelled at read time (`detected_level`), to
        # keep their counts by it in the footer: tenant, block -> (rules key, one value
        # per line or one for all) or None. The server sets it; None: no counts kept.
        self.block_labels: Callable[[str, EntryBlock],
                                    tuple[str, str | list[str]] | None] | None = None
        self._changes = 0  # compactions and retention passes that changed something
        self.ready = False
        self.garbage_deleted = 0  # chunks and index objects deleted after delete_delay
        self.orphans_deleted = 0  # chunk objects no index object named (`sweep_orphans`)
        self.orphan_bytes_deleted = 0
        # Per tenant, at its last sweep: unnamed chunks kept, their lines served nowhere
        # else (the `sluiceway_store_unnamed_chunks` gauge): count, bytes.
        self.unnamed_kept: dict[str, tuple[int, int]] = {}
        self._last_sync = time.monotonic()  # the index was listed (at start, just below)
        # Delete requests (Loki's delete API), read before any query can run.
        self.deletes = DeleteRequests(self.objects, tenant_dirname, tenant_from_dirname)
        try:
            self.deletes.load()
        except OSError as exc:
            raise StoreError(f"the delete requests cannot be read: {exc}") from exc
        self.lines_deleted = 0  # lines the compactor removed for delete requests
        migrated = self._migrate_index_logs()
        self._load_index(migrated)
        self.heads: Heads[WalPos] = Heads(
            self.tenant, cfg.chunk_target_size,
            lambda t: int(self.unordered_window_for(t) * 1e9), self._enqueue_flush,
            self.memory)
        self._checkpoint_lock = threading.Lock()
        self._last_checkpoint = 0.0
        self._checkpointed = self._read_checkpoint()
        self.wal = FileWal(self.root / "wal", cfg.wal_segment_size, cfg.wal_sync,
                           cfg.wal_sync_interval, after=self._checkpointed,
                           held=self.memory.wal)
        self.replayed_records = self._replay(self._checkpointed)
        take_back = self._judge_for if cfg.recover_chunks else None
        for ts in list(self.tenants.values()):
            # After the replay: the WAL's streams' labels are known (and its lines cover
            # the orphans it wrote again). Retention is not known yet: nothing is expired.
            recover_chunks(ts, take_back(ts.tenant, None) if take_back else None)
        self._finish_migration(found, migrated)
        self._append_lock = threading.Lock()
        self._applier: Applier[WalPos, Applied] = Applier(self._apply)
        self._last_retention = time.monotonic()  # first pass one interval after start
        self._last_periodic = 0.0
        self._flusher = threading.Thread(target=self._flush_loop, name="flusher", daemon=True)
        self._flusher.start()
        self.compactor = Compactor(cfg.compaction_level, cfg.compaction_target_size,
                                   cfg.compaction_min_age, comp.max_compaction_parallelism)
        self._compact_lock = threading.Lock()
        self._stop = threading.Event()
        if cfg.compaction_enabled:
            threading.Thread(target=self._compact_loop, name="compactor", daemon=True).start()
        if cfg.index_sync_period > 0:
            threading.Thread(target=self._sync_loop, name="index-sync", daemon=True).start()
        self.ready = True

    # --- startup ---------------------------------------------------------------------
    def _check_format(self) -> int:
        try:
            return self._check_format_marker()
        except BaseException:
            self._lock.close()  # not ours after all
            raise

    def _check_format_marker(self) -> int:
        """The data dir's format version (written as this release's when new)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            marker = self.root / "FORMAT"
            if marker.exists():
                info = orjson.loads(marker.read_bytes())
                if info.get("format") != FORMAT_NAME or \
                        info.get("version") not in READS_VERSIONS:
                    raise StoreError(
                        f"data dir {self.root} holds {info.get('format')} format version "
                        f"{info.get('version')}; this Sluiceway reads {FORMAT_NAME} versions "
                        f"{', '.join(map(str, READS_VERSIONS))}")
                found = int(info["version"])
            else:
                atomic_write(marker, orjson.dumps({"format": FORMAT_NAME,
                                                   "version": FORMAT_VERSION}))
                found = FORMAT_VERSION
            probe = self.root / ".write-probe"
            probe.write_bytes(b"ok")
            probe.unlink()
        except (OSError, ValueError) as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"data dir {self.root} is not usable: {exc}") from exc
        return found

    def _local_tenant_dirs(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for d in sorted((self.root / "tenants").glob("*")):
            if tenant_from_dirname(d.name) is not None and d.is_dir():
                out[d.name] = d
        return out

    def _migrate_index_logs(self) -> dict[str, Migrated]:
        """Each version-1 index log as index objects (`_indexlog`); by tenant."""
        out: dict[str, Migrated] = {}
        for name, d in self._local_tenant_dirs().items():
            tenant = tenant_from_dirname(name)
            assert tenant is not None
            try:
                m = migrate(d, self.tenant(tenant).index)
            except OSError as exc:
                raise StoreError(f"the index log of tenant {tenant!r} ({d}) could not be "
                                 f"migrated to index objects: {exc}") from exc
            if m is not None:
                out[tenant] = m
        return out

    def _load_index(self, migrated: dict[str, Migrated]) -> None:
        """Every tenant's index objects, and the tenants that have none but a directory."""
        try:
            by_dir = tenant_dirs(self.objects.list(INDEX_PREFIX))
        except OSError as exc:
            raise StoreError(f"the index objects cannot be listed: {exc}") from exc
        for name in sorted(set(by_dir) | set(self._local_tenant_dirs())):
            tenant = tenant_from_dirname(name)
            if tenant is None:
                continue
            ts = self.tenant(tenant)
            m = migrated.get(tenant)
            if m is not None:
                ts.legacy_lost, ts.damaged_at_start = m.lost, m.damaged
            try:
                ts.load_index(by_dir.get(name, []))
            except OSError as exc:
                raise StoreError(f"the index of tenant {tenant!r} cannot be read: "
                                 f"{exc}") from exc

    def _finish_migration(self, found: int, migrated: dict[str, Migrated]) -> None:
        """The start that migrated index logs is done with them: they go, and the marker
        says this release's version."""
        for m in migrated.values():
            finish(m)
        if found != FORMAT_VERSION:
            atomic_write(self.root / "FORMAT", orjson.dumps({"format": FORMAT_NAME,
                                                             "version": FORMAT_VERSION}))
            chunks = "" if found >= 2 else "its chunks are read as they are, new chunks " \
                "are written in chunk format 2; "
            log.info("data dir %s: format version %d raised to %d: %sthe index logs of %d "
                     "tenants are index objects now (%d chunks); releases before this one "
                     "no longer open it", self.root, found, FORMAT_VERSION, chunks,
                     len(migrated), sum(m.chunks for m in migrated.values()))

    def _remove_temp_files(self) -> None:
        """Temp files of writes a crash interrupted (FORMAT, index rewrites) and what
        interrupted object writes left (chunks)."""
        n = remove_temp_files(self.root)
        for t in (self.root / "tenants").glob("*"):
            n += remove_temp_files(t)
        n += self.objects.clean_interrupted()
        if n:
            log.info("removed %d temp files left by an interrupted write", n)

    def _read_checkpoint(self) -> WalPos | None:
        after = read_checkpoint(self.root)
        try:
            return None if after is None else FileWal.position_from_json(after)
        except ValueError as exc:
            log.warning("checkpoint: %s; replaying the whole WAL", exc)
            return None

    def _replay(self, after: WalPos | None) -> int:
        """Apply the WAL's records after the checkpoint, as when they were pushed."""
        n = lines = 0
        t0 = time.monotonic()
        self.heads.last_applied = after
        for pos, record in self.wal.replay(after):
            self.heads.apply(record.tenant, record, pos, replay=True)
            n += 1
            lines += record.lines
            if self.memory.over():
                # As Loki's replay_memory_ceiling: write chunks and carry on, so a WAL
                # larger than memory replays (the flusher does not run yet).
                self._relieve()
                self._write(self._take_queue())
        self.heads.end_replay()
        if after is not None:
            self.wal.release(after)  # a crash may have come between checkpoint and release
        if n:
            h = self.heads
            log.info("replayed %d WAL records in %.2fs (%d lines; %d of them were in chunks "
                     "already, found reading %d chunks)", n, time.monotonic() - t0, lines,
                     h.replay_duplicates, h.replay_chunks_read)
        return n

    @property
    def wal_records_lost(self) -> int:
        return self.wal.records_lost

    @property
    def wal_lines_lost(self) -> int:
        return self.wal.lines_lost

    def tenant(self, tenant: str) -> TenantStore:
        ts = self.tenants.get(tenant)
        if ts is None:
            with self._tenants_lock:
                ts = self.tenants.get(tenant)
                if ts is None:
                    name = tenant_dirname(tenant)
                    ts = TenantStore(tenant, self.root / "tenants" / name, self.objects,
                                     f"{name}/", self.cache, self.cfg.chunk_target_size,
                                     self.cfg.compression_level, _POSITIONS, self.writer,
                                     memory=self.memory)
                    ts.block_labels = functools.partial(self._block_labels, tenant)
                    self.tenants[tenant] = ts
        return ts

    def _block_labels(self, tenant: str, block: EntryBlock
                      ) -> tuple[str, str | list[str]] | None:
        labeler = self.block_labels
        return labeler(tenant, block) if labeler is not None else None

    # --- write path ------------------------------------------------------------------
    def ingest(self, record: PushRecord) -> Future[Applied]:
        """Append to the ingest log, then apply to the heads in log order: the future
        resolves once the record is durable and applied (queryable), to what the heads
        did with it (lines refused, duplicates dropped); to WalWriteError when it could
        not be stored."""
        return self.ingest_at(record)[1]

    def ingest_at(self, record: PushRecord) -> tuple[Future[WalPos], Future[Applied]]:
        """`ingest`, with the future of the record's position in the ingest log too (the
        cluster maps it to the JetStream sequence the record came from: once the
        checkpoint passes it, that sequence is in chunks)."""
        out: Future[Applied] = Future()
        with self._append_lock:  # the applier's order is the log's
            logged = self.wal.append(record)
            self._applier.submit(record, logged, out)
        return logged, out

    def _apply(self, record: PushRecord, pos: WalPos) -> Applied:
        out = self.heads.apply(record.tenant, record, pos)
        if self.memory.over():
            self._relieve()
        return out

    def _relieve(self) -> None:
        """The streams hold more than `max_heads_bytes`: cut the largest heads until at most
        half of it is left in heads, for the flusher to write."""
        m = self.memory
        keep = m.max_heads_bytes // 2
        if m.uncut <= keep:
            return  # what is over is cut already: the flusher is on it
        streams = [(s.head_held, ts, s) for ts in list(self.tenants.values())
                   for s in ts.memory_streams() if s.head_held]
        streams.sort(key=lambda x: x[0], reverse=True)
        cuts = 0
        for _, ts, s in streams:
            if m.uncut <= keep:
                break
            cut = ts.seal_stream(s)
            if cut is not None:
                cuts += 1
                self._enqueue_flush(ts, s, cut)
        self.heads_cut_early += cuts

    def over_memory(self) -> bool:
        """The streams hold more than `max_heads_bytes`: a writer should wait for room."""
        return self.memory.over()

    def wait_for_room(self, timeout: float) -> bool:
        """Wait until the streams hold at most `max_heads_bytes` (the flusher writes what
        was cut); False when `timeout` passed first."""
        return self.memory.wait_for_room(timeout)

    def push(self, tenant: str, blocks: list[EntryBlock]) -> Future[Applied]:
        """`ingest` of a record of `blocks`."""
        return self.ingest(PushRecord(tenant, blocks))

    # --- flushing --------------------------------------------------------------------
    def _enqueue_flush(self, ts: TenantStore, s: Stream, sealed: Sealed) -> None:
        with self._flush_cond:
            self._flush_q.append((ts, s, sealed))
            self._flush_cond.notify()

    def _due(self, now: float) -> bool:
        """Queued heads may be written now (at once, or after the back-off delay)."""
        return bool(self._flush_q) and (not self.flush_failing or now >= self._retry_at)

    def _flush_loop(self) -> None:
        while True:
            with self._flush_cond:
                now = time.monotonic()
                if not self._closing and not self._due(now):
                    wake = self._last_periodic + self.cfg.flush_check_period
                    if self._flush_q and self.flush_failing:
                        wake = min(wake, self._retry_at)
                    self._flush_cond.wait(max(0.01, wake - now))
                closing = self._closing
            with self._flush_mutex:
                now = time.monotonic()
                if closing:
                    if self._flush_q and not self.flush_failing:
                        self._write(self._take_queue())  # one last try, no retries
                    return
                if self._due(now) and self._write(self._take_queue()) is None \
                        and now - self._last_checkpoint >= _CHECKPOINT_EVERY_S:
                    self.checkpoint()  # less to replay after a crash
                    give_back_free_memory()  # what the written heads held
                if now - self._last_periodic >= self.cfg.flush_check_period:
                    self._last_periodic = now
                    self._periodic()

    def _take_queue(self) -> list[Job]:
        with self._flush_cond:
            jobs, self._flush_q = self._flush_q, []
        return jobs

    def _write(self, jobs: list[Job]) -> BaseException | None:
        """Write `jobs` as chunks, in batches per tenant. What fails goes back to the queue
        and the flusher backs off; the first error is returned."""
        failed: list[Job] = []
        error: BaseException | None = None
        for ts, batch in _batches(jobs):
            self.writes_started += 1
            try:
                bad, err = ts.flush_many([(s, sealed) for _, s, sealed in batch])
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the flusher
                bad, err = [(s, sealed) for _, s, sealed in batch], exc
            finally:
                self.writes_done += 1
            self.chunks_flushed += len(batch) - len(bad)
            self.flush_failures += len(bad)
            failed += [(ts, s, sealed) for s, sealed in bad]
            error = error or err
        if failed:
            with self._flush_cond:
                self._flush_q[:0] = failed
            self._failed(error, len(failed))
        elif jobs:
            self._recovered()
        if len(failed) < len(jobs) and \
                time.monotonic() - self._last_sync >= self.cfg.index_relist_after_write:
            self.sync_index()  # right after our own writes: what others wrote meanwhile
        return error

    def _failed(self, error: BaseException | None, waiting: int) -> None:
        now = time.monotonic()
        if not self.flush_failing:
            self.flush_failing = True
            self._failing_since = now
            self._retry_delay = _RETRY_FIRST_S
            # Once per state change: this is what the operator needs, not one per attempt.
            log.error("writing chunks failed: %s; the data of %d chunks stays in memory and "
                      "in the WAL, retrying with back-off (up to %.0fs)", error, waiting,
                      _RETRY_MAX_S,
                      exc_info=None if isinstance(error, OSError) else error)
        else:
            self._retry_delay = min(_RETRY_MAX_S, self._retry_delay * 2)
        self._retry_at = now + self._retry_delay

    def _recovered(self) -> None:
        if self.flush_failing:
            self.flush_failing = False
            log.info("writing chunks works again after %.1fs of failures",
                     time.monotonic() - self._failing_since)

    def _write_or_queue(self, jobs: list[Job]) -> None:
        """Write now, or, while writes fail, queue behind the failed ones: the next
        attempt takes them all, so "works again" means nothing is left behind."""
        if self.flush_failing:
            with self._flush_cond:
                self._flush_q += jobs
        elif jobs:
            self._write(jobs)

    def _periodic(self) -> None:
        now = time.monotonic()
        jobs: list[Job] = []
        for ts in list(self.tenants.values()):
            jobs += [(ts, s, sealed) for s, sealed in
                     ts.seal_all(older_than=now - self.cfg.max_chunk_age,
                                 idle_since=now - self.cfg.chunk_idle_period)]
        self._write_or_queue(jobs)
        if self.wal.size_bytes() > self.cfg.max_wal_size:
            # Force out the heads that pin the oldest segment.
            pinned, upto = self.heads.flushed_upto(list(self.tenants.values()))
            if pinned:
                below = self.wal.next_unit(upto)
                jobs = [(ts, s, sealed) for ts in list(self.tenants.values())
                        for s, sealed in ts.seal_all(after_below=below)]
                self._write_or_queue(jobs)
        for ts in list(self.tenants.values()):
            ts.forget_idle(now - self.cfg.chunk_idle_period)
        give_back_free_memory()  # what heads written since the last pass left free
        self.checkpoint()
        if now - self._last_retention >= self._retention_every:
            self._last_retention = now
            self.apply_retention()

    # --- the index of other processes ---------------------------------------------------
    def _sync_loop(self) -> None:
        while not self._stop.wait(self.cfg.index_sync_period):
            self.sync_index()

    def sync_index(self) -> None:
        """List every tenant's index objects and fold in what other processes wrote (and
        forget what was deleted): their chunks are served without a restart. Delete
        requests made, processed or cancelled by another process are folded in too."""
        self._last_sync = time.monotonic()
        try:
            self.deletes.sync()
        except OSError as exc:
            log.warning("delete requests cannot be listed now (%s); tried again in %gs", exc,
                        self.cfg.index_sync_period)
        # Where each tenant's index stood before the listing: what it folds in meanwhile
        # (its own writes) is not in the listing, and not gone.
        steps = {name: ts.index.step for name, ts in list(self.tenants.items())}
        try:
            by_dir = tenant_dirs(self.objects.list(INDEX_PREFIX))
        except Exception as exc:  # noqa: BLE001 - the sync loop must go on
            log.warning("index objects cannot be listed now (%s); tried again in %gs", exc,
                        self.cfg.index_sync_period)
            return
        for name, infos in by_dir.items():
            tenant = tenant_from_dirname(name)
            if tenant is not None:
                self._sync_tenant(self.tenant(tenant), infos, steps.get(tenant, 0))
        for tenant, ts in list(self.tenants.items()):
            if ts.prefix.rstrip("/") not in by_dir and ts.index.object_count():
                self._sync_tenant(ts, [], steps.get(tenant, 0))

    def _sync_tenant(self, ts: TenantStore, listing: list[ObjectInfo] | None = None,
                     listed_at: int | None = None) -> None:
        try:
            ts.sync_index(listing, listed_at=listed_at)
        except OSError as exc:
            log.warning("index of tenant %s cannot be read now (%s); tried again at the "
                        "next sync", ts.tenant, exc)
        except Exception:  # noqa: BLE001 - a bug must not kill the flusher or the sync
            log.exception("syncing the index of tenant %s failed; tried again at the next "
                          "sync", ts.tenant)

    def checkpoint(self) -> WalPos | None:
        """Move the checkpoint to where every record before is in chunks (written
        durably), then release the WAL up to it. Returns the checkpoint."""
        with self._checkpoint_lock:
            self._last_checkpoint = time.monotonic()
            _, upto = self.heads.flushed_upto(list(self.tenants.values()))
            if upto is not None and upto != self._checkpointed:
                try:
                    write_checkpoint(self.root, self.wal.position_to_json(upto))
                except OSError as exc:
                    log.error("checkpoint could not be written (%s); the WAL is kept until "
                              "it can be", exc)
                    return self._checkpointed
                self._checkpointed = upto
            if self._checkpointed is not None:
                self.wal.release(self._checkpointed)
            return self._checkpointed

    def flush_all(self) -> int:
        """Seal every head and write it to chunks now (Loki's /flush), back-off or not;
        returns the number of chunks written. When this returns, no chunk write is still
        in progress. Raises ChunkWriteError when some could not be written."""
        return self._flush_all()[0]

    def _flush_all(self) -> tuple[int, int]:
        """(chunks written, streams they belong to)."""
        with self._flush_mutex:
            jobs = self._take_queue()
            for ts in list(self.tenants.values()):
                jobs += [(ts, s, sealed) for s, sealed in ts.seal_all()]
            error = self._write(jobs) if jobs else None
        give_back_free_memory()  # what the heads held
        if error is not None:
            raise ChunkWriteError(f"could not write chunks, retry later: {error}")
        pinned, _ = self.heads.flushed_upto(list(self.tenants.values()))
        if not pinned and self.wal.current_bytes and not self.wal.closed:
            # Everything is in chunks: close the open segment so it can be deleted too.
            # (A closed writer rotates no more; close() deletes its segments itself.)
            seg = self.wal.segment
            self.wal.request_rotation()
            deadline = time.monotonic() + 5
            while self.wal.segment == seg and time.monotonic() < deadline:
                time.sleep(0.005)
        self.checkpoint()
        return len(jobs), len({(id(ts), s.fp) for ts, s, _ in jobs})

    def flush_before(self, pos: WalPos) -> int:
        """Write now the heads that hold data of records before `pos` (a cluster
        partition's cap on unflushed bytes); returns the number of heads written."""
        with self._flush_mutex:
            jobs = [(ts, s, sealed) for ts in list(self.tenants.values())
                    for s, sealed in ts.seal_all(after_below=pos)]
            self._write_or_queue(jobs)
        self.checkpoint()
        return len(jobs)

    def memory_blocks(self, tenants: list[str], matchers: list[Matcher], start: int,
                      end: int) -> list[tuple[SeriesRef, EntryBlock]]:
        """What is not in chunks yet (heads, and heads being written) of the streams of
        `tenants` matching `matchers`, in [start, end): one sorted block per stream,
        exact duplicates removed (an ingester's answer to the cluster's read path)."""
        out: list[tuple[SeriesRef, EntryBlock]] = []
        for t in tenants:
            ts = self.tenants.get(t)
            if ts is None:
                continue
            for s in ts.select(matchers, start, end):
                _, mem = ts.snapshot(s, start, end)
                if not mem:
                    continue
                block = sort_dedupe(EntryBlock.concat([p.block for p in mem])).clip(start, end)
                if len(block):
                    out.append((SeriesRef(t, s.fp, s.labels), block))
        return out

    def active_streams(self, tenant: str, fps: list[int]) -> tuple[int, set[int]]:
        """The tenant's number of active streams (data in memory, or written to within
        `chunk_idle_period`), and which of `fps` are among them."""
        ts = self.tenants.get(tenant)
        return (0, set()) if ts is None else ts.active_streams(fps)

    def active_fingerprints(self, tenant: str | None = None) -> dict[str, set[int]]:
        """Every tenant's active streams (as `active_streams` counts them), or only
        `tenant`'s."""
        tenants = list(self.tenants.items()) if tenant is None else \
            [(tenant, t) for t in [self.tenants.get(tenant)] if t is not None]
        return {name: set(t.active.copy()) for name, t in tenants}

    @property
    def generation(self) -> int:
        """Changes whenever stored data changes other than by new lines (compaction,
        retention, a chunk taken out of service, a delete request made or cancelled or
        processed, and any change another process made to
        the index, which may add lines to closed time ranges): cached query results of
        closed time ranges key on it. Tenants are never dropped, so it only grows."""
        return (self._changes + self.deletes.version
                + sum(t.generation for t in list(self.tenants.values())))

    def apply_retention(self, now_ns: int | None = None) -> int:
        now_ns = now_ns if now_ns is not None else time.time_ns()
        n = 0
        for name, t in list(self.tenants.items()):
            cutoff = self._retention_cutoff(name, now_ns)
            if cutoff is not None:
                try:
                    n += t.apply_retention(cutoff)
                except OSError as exc:
                    log.error("retention of tenant %s: the index object could not be "
                              "written (%s); tried again at the next pass", name, exc)
        self.retention_deleted += n
        if n:
            self._changes += 1
            self.collect_garbage()
        return n

    def _retention_cutoff(self, tenant: str, now_ns: int
                          ) -> Callable[[dict[str, str]], int | None] | None:
        """The tenant's retention as a stream's cutoff (`labels` -> Unix ns before which
        its lines go; None keeps them), or None when nothing of the tenant expires."""
        per_stream = self.stream_retention_for
        period = self.retention_for(tenant)
        if period <= 0 and per_stream is None:
            return None

        def cutoff(labels: dict[str, str]) -> int | None:
            p = per_stream(tenant, labels) if per_stream is not None else period
            return now_ns - int(p * 1e9) if p > 0 else None
        return cutoff

    def _judge_for(self, tenant: str, now_ns: int | None) -> Judge:
        """What `_unnamed.verdict` needs for the tenant: its retention at `now_ns` (None:
        nothing expires) and its processed delete requests."""
        cutoff = self._retention_cutoff(tenant, now_ns) if now_ns is not None else None

        def deleting(labels: dict[str, str], lo: int, hi: int) -> list[Applying]:
            return self.deletes.for_read(tenant, labels, lo, hi + 1, processed_only=True)
        return Judge(cutoff or (lambda _labels: None), deleting)

    def collect_garbage(self, now: float | None = None) -> int:
        """Delete for good the chunks and index objects out of service for longer than
        `delete_delay`; how many."""
        now = now if now is not None else time.time()
        n = 0
        for ts in list(self.tenants.values()):
            try:
                chunks, objs = ts.collect_garbage(now, self.delete_delay_s)
            except OSError as exc:
                log.warning("tenant %s: deleting chunks and index objects out of service "
                            "failed (%s); tried again at the next pass", ts.tenant, exc)
                continue
            n += chunks + objs
        self.garbage_deleted += n
        return n

    def sweep_orphans(self, now: float | None = None) -> SweepResult:
        """Delete the chunk objects no index object names, older than `delete_delay`
        (`_orphans.sweep_orphans`: the rules, and why the delay); one log line. Not
        during a compactor pass (whose merged chunk waits for its index object)."""
        with self._compact_lock:
            return self._sweep_orphans(now)

    def _sweep_orphans(self, now: float | None = None) -> SweepResult:
        now = now if now is not None else time.time()
        out = SweepResult()
        for ts in list(self.tenants.values()):
            one = sweep_orphans(ts, now, self.delete_delay_s, self._no_write_in_flight,
                                self._judge_for(ts.tenant, int(now * 1e9)))
            out.chunks += one.chunks
            out.bytes += one.bytes
            out.skipped += one.skipped
            out.expired += one.expired
            out.kept += one.kept
            out.kept_bytes += one.kept_bytes
            if not one.skipped:
                self.unnamed_kept[ts.tenant] = (one.kept, one.kept_bytes)
        self.orphans_deleted += out.chunks
        self.orphan_bytes_deleted += out.bytes
        log.info("orphan sweep: %d chunk objects (%d bytes) no index object names deleted "
                 "(older than retention_delete_delay, %gs; %d of them past retention)%s",
                 out.chunks, out.bytes, self.delete_delay_s, out.expired,
                 f"; {out.skipped} tenants skipped (index damaged or not readable now)"
                 if out.skipped else "")
        if out.kept:
            log.warning("orphan sweep: %d chunk objects (%d bytes) no index object names "
                        "hold lines served nowhere else (an index object lost?); kept, not "
                        "deleted. Restart the server once with `sluiceway server "
                        "--recover-chunks` to take them back (tenants: %s)", out.kept,
                        out.kept_bytes, ", ".join(sorted(
                            t for t, (n, _b) in self.unnamed_kept.items() if n)))
        return out

    def _no_write_in_flight(self) -> None:
        """Returns once every chunk write of this store begun before has named its chunks
        in an index object (or failed): writes hold the flush mutex throughout."""
        with self._flush_mutex:
            pass

    # --- compaction --------------------------------------------------------------------
    def _compact_loop(self) -> None:
        while not self._stop.wait(self._compaction_every):
            try:
                self.compact()
            except Exception:  # noqa: BLE001 - one bad pass must not end compaction for good
                log.exception("compaction pass failed; the next one runs in %gs",
                              self._compaction_every)

    def compact(self, min_age_s: float | None = None) -> CompactionStats:
        """One compactor pass: delete what is out of service past `delete_delay` and the
        chunks no index object names (`sweep_orphans`), merge
        and recompress chunks older than `min_age_s` (default: configured), then fold each
        period's index objects into one."""
        with self._compact_lock:
            if min_age_s is not None:
                saved, self.compactor.min_age_s = self.compactor.min_age_s, min_age_s
            try:
                self.collect_garbage()
                swept = self._sweep_orphans()
                out = self.compactor.run(list(self.tenants.values()))
                out.orphans_deleted, out.orphan_bytes_deleted = swept.chunks, swept.bytes
                out.orphans_kept = swept.kept
                if out.chunks_in:
                    self._changes += 1
                out.lines_deleted = self.process_deletes()
                for ts in list(self.tenants.values()):
                    out.index_objects_in += ts.compact_index()
                return out
            finally:
                if min_age_s is not None:
                    self.compactor.min_age_s = saved

    def process_deletes(self, now: float | None = None) -> int:
        """Remove for good the lines of delete requests past their cancel period (tenants
        in `filter-and-delete` mode): what is in memory is written to chunks first, then
        each chunk holding such lines is written again without them (or taken out whole)
        and the request is `processed`. A request whose chunks could not all be done stays
        `received` (still filtered at read) and is tried again at the next pass. Returns
        the lines removed."""
        now = now if now is not None else time.time()
        due = self.deletes.due(now, self.compactor_cfg.delete_request_cancel_period)
        if not due:
            return 0
        try:
            self.flush_all()  # lines still in memory are in chunks before they are cut
        except ChunkWriteError as exc:
            log.warning("delete requests wait: %s", exc)
            return 0
        removed = 0
        for tenant, req, deleter in due:
            ts = self.tenants.get(tenant)
            ok, n = (True, 0) if ts is None else ts.apply_delete(deleter, req.lo, req.hi)
            removed += n
            if n:
                self._changes += 1
            if not ok:
                continue
            try:
                self.deletes.processed(tenant, req)
            except OSError as exc:
                log.warning("delete request %s of tenant %s: its status could not be "
                            "written (%s); tried again at the next pass", req.id, tenant, exc)
                continue
            log.info("delete request %s of tenant %s processed: %d lines removed", req.id,
                     tenant, n)
        self.lines_deleted += removed
        return removed

    # --- read path ---------------------------------------------------------------------
    # What the server's `StoreSource` (the query engine's `LogSource`) reads through; none
    # of these holds a lock while it scans a tenant's streams (each stream's own lock
    # only to take a snapshot of its chunk list and head), so no read delays a push.
    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        """Streams of `tenants` matching all `matchers` with data in [start, end)."""
        out: list[SeriesRef] = []
        for t in tenants:
            ts = self.tenants.get(t)
            if ts is not None:
                out.extend(SeriesRef(t, s.fp, s.labels) for s in ts.select(matchers, start, end))
        return out

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str,
               warn: Callable[[str], None] | None = None,
               hints: ReadHints | None = None,
               on_summary: Callable[[BlockSummary], None] | None = None,
               ) -> Iterator[EntryBlock]:
        """The entries of `ref` in [start, end): time-disjoint blocks in `direction` order,
        duplicates removed (`TenantStore.blocks`). A chunk that cannot be read is left out
        (and quarantined when damaged); `warn` gets a sentence saying so, for Loki's
        `warnings` in the answer. `hints`: what may be left unread (`TenantStore.blocks`);
        `on_summary` is called with each block summarized instead of read (the caller's
        byte count: it may raise to stop the read)."""
        ts = self.tenants.get(ref.tenant)
        s = ts.streams.get(ref.fp) if ts is not None else None
        if ts is None or s is None:
            return iter(())
        deleting = self.deletes.for_read(ref.tenant, s.labels, start, end)
        if not deleting:
            return ts.blocks(s, start, end, direction, warn, hints, on_summary)
        # Delete requests stand over this stream: every block is read (none is counted
        # from its footer, whose counts hold the deleted lines) and their lines dropped.
        if hints is not None:
            hints.summary_grid = 0
        return (kept for b in ts.blocks(s, start, end, direction, warn, hints, on_summary)
                if len(kept := without_deleted(b, deleting)))

    def index_stats(self, tenants: list[str], matchers: list[Matcher], start: int,
                    end: int) -> dict[str, int]:
        """Loki's /index/stats from chunk metadata alone (no decompression): streams, and
        chunks, entries and bytes of the chunks overlapping [start, end). In-memory head
        data counts as one chunk per stream, since our store has no ingester/store gap."""
        out = {"streams": 0, "chunks": 0, "entries": 0, "bytes": 0}
        for ref in self.series(tenants, matchers, start, end):
            ts = self.tenants[ref.tenant]
            s = ts.streams.get(ref.fp)
            if s is None:  # gone since (retention)
                continue
            chunks, entries, nbytes = ts.stats(s, start, end)
            out["streams"] += 1
            out["chunks"] += chunks
            out["entries"] += entries
            out["bytes"] += nbytes
        return out

    # --- stats and shutdown ----------------------------------------------------------
    def disk_usage(self) -> dict[str, int]:
        """Bytes in the object store and the data dir: `chunks` (every chunk object)
        split into `chunks_live` (those the index serves), `chunks_awaiting_deletion`
        (out of service: compaction's inputs, retention, deletes; deleted
        `retention_delete_delay` later) and `chunks_unnamed` (no index object names them:
        orphans, or chunks whose index object is on its way), of which
        `chunks_unnamed_kept` the orphan sweep kept at its last pass (their lines are
        served nowhere else: `--recover-chunks` takes them back); `index`; `wal`."""
        chunks = live = waiting = index = 0
        for t in list(self.tenants.values()):
            listing = t.chunk_objects()
            served = {e.ref.path for e in t.index.live()}
            out = t.index.deleted()
            for rel, o in listing.items():
                chunks += o.size
                if rel in served:
                    live += o.size
                elif rel in out:
                    waiting += o.size
            index += t.index.size_bytes()
        return {"chunks": chunks, "chunks_live": live, "chunks_awaiting_deletion": waiting,
                "chunks_unnamed": chunks - live - waiting,
                "chunks_unnamed_kept": sum(b for _n, b in list(self.unnamed_kept.values())),
                "index": index,
                "wal": self.wal.size_bytes()}

    def close(self) -> None:
        self._stop.set()
        self.wal.close()
        self._applier.close()  # every durable record applied before the last flush
        if self.cfg.flush_on_shutdown:
            t0 = time.monotonic()
            try:
                chunks, streams = self._flush_all()
            except ChunkWriteError as exc:
                log.error("final flush failed after %.2fs: %s; what is not in chunks is in "
                          "the WAL and is replayed at the next start", time.monotonic() - t0,
                          exc)
            else:
                log.info("final flush: %d chunks of %d streams written in %.2fs", chunks,
                         streams, time.monotonic() - t0)
        self.checkpoint()  # what is in chunks leaves the (closed) WAL
        with self._flush_cond:
            self._closing = True
            self._flush_cond.notify()
        self._flusher.join(60)
        self._lock.close()


def _batches(jobs: list[Job]) -> Iterator[tuple[TenantStore, list[Job]]]:
    """`jobs` per tenant, cut so one batch holds at most _BATCH_FILES heads and about
    _BATCH_BYTES of their data."""
    by_tenant: dict[int, list[Job]] = {}
    for job in jobs:
        by_tenant.setdefault(id(job[0]), []).append(job)
    for group in by_tenant.values():
        batch: list[Job] = []
        size = 0
        for job in group:
            batch.append(job)
            size += sum(p.block.nbytes for p in job[2].pieces)
            if len(batch) >= _BATCH_FILES or size >= _BATCH_BYTES:
                yield group[0][0], batch
                batch, size = [], 0
        if batch:
            yield group[0][0], batch

