"""Write-ahead log: framed, checksummed records in numbered segment files, with group
commit; `FileWal` is the single-node `IngestLog`.

Frame: u32 payload length | u32 CRC32 of payload | payload (a `PushRecord`). A damaged
record is skipped and replay resumes at the next valid one (`_frames`); a torn tail is
skipped with a warning. A position is (segment number, offset just past the record).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from sluiceway.durable import ensure_dir, fsync_dir
from sluiceway.model import EntryBlock, PushRecord, RecordError, looks_like_record
from sluiceway.store._frames import HDR as _HDR
from sluiceway.store._frames import Damage, scan
from sluiceway.store._memory import HeldBytes

log = logging.getLogger("sluiceway.wal")

_MAX_RECORD = 1 << 31
_IOV_MAX = 1024  # Linux's limit on buffers per writev


@dataclass(frozen=True, order=True, slots=True)
class WalPos:
    """Position just past a record: (segment number, byte offset)."""

    segment: int
    offset: int


def decode_record(payload: bytes) -> tuple[str, list[EntryBlock]]:
    """A WAL record's tenant and blocks (what the pattern miner reads). Module-level, so it
    pickles by name to a spawned process. Raises RecordError."""
    record = PushRecord.decode(payload)
    return record.tenant, record.blocks


def _segment_path(wal_dir: Path, n: int) -> Path:
    return wal_dir / f"{n:08d}.wal"


def list_segments(wal_dir: Path) -> list[int]:
    return sorted(int(p.stem) for p in wal_dir.glob("*.wal") if p.stem.isdigit())


def _plausible(data: bytes, start: int, length: int) -> bool:
    return looks_like_record(data, start, length)


def read_segment(path: Path, segment: int,
                 on_damage: Callable[[str, Damage], None] | None = None
                 ) -> Iterator[tuple[WalPos, bytes]]:
    """Whole records with the position just past each. Damaged ones are skipped (reading
    resumes at the next valid record) and handed to `on_damage`; a torn tail, a write
    cut short by a crash and so never acknowledged, is only logged."""
    data = path.read_bytes()
    for item in scan(data, _plausible):
        if isinstance(item, Damage):
            if item.torn:
                log.warning("WAL %s: torn record at offset %d skipped (%d bytes; a write cut "
                            "short by a crash, never acknowledged)", path.name, item.start,
                            item.end - item.start)
            elif on_damage is not None:
                on_damage(path.name, item)
            else:
                log.warning("WAL %s: %d damaged record(s) at offset %d skipped", path.name,
                            item.records, item.start)
            continue
        start, end = item
        yield WalPos(segment, end), data[start + _HDR.size : end]


def replay(wal_dir: Path, on_damage: Callable[[str, Damage], None] | None = None
           ) -> Iterator[tuple[WalPos, bytes]]:
    for n in list_segments(wal_dir):
        yield from read_segment(_segment_path(wal_dir, n), n, on_damage)


class WalWriteError(OSError):
    """The WAL could not be written or synced: the batch is not durable (HTTP 503)."""


@dataclass(slots=True)
class _Pending:
    payload: bytes
    crc: int
    future: Future[WalPos]


class WalWriter:
    """Appends records on one thread; concurrent submitters share one write + fsync.

    A record's future resolves once its group is durable (sync mode "always") or written
    (mode "interval"), futures in WAL order. `first_segment`: the lowest number the first
    new segment may take (it also follows every segment on disk).
    """

    def __init__(self, wal_dir: Path, segment_bytes: int = 128 << 20,
                 sync_mode: str = "always", sync_interval_s: float = 0.1,
                 first_segment: int = 1, held: HeldBytes | None = None) -> None:
        self.dir = wal_dir
        self.held = held if held is not None else HeldBytes()  # bytes of records not yet written
        ensure_dir(self.dir)
        self.segment_bytes = segment_bytes
        self.sync_mode = sync_mode
        self.sync_interval_s = sync_interval_s
        segs = list_segments(wal_dir)
        # Never append to a possibly torn file, never reuse a number a position named.
        self.segment = max([first_segment, *(n + 1 for n in segs[-1:])])
        self._fd = self._open(self.segment)
        self._offset = 0
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._closed = False
        self._last_sync = time.monotonic()
        self._rotate_requested = False
        self.records = 0
        self.bytes = 0
        self.syncs = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="wal-writer", daemon=True)
        self._thread.start()

    def _open(self, n: int) -> int:
        fd = os.open(_segment_path(self.dir, n), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(self.dir)
        return fd

    def submit(self, payload: bytes, crc: int | None = None) -> Future[WalPos]:
        """Queue a record; `crc` is `zlib.crc32(payload)` when the caller computed it
        already (ingest workers do, off this process's GIL)."""
        fut: Future[WalPos] = Future()
        crc = zlib.crc32(payload) if crc is None else crc
        with self._cond:
            if self._closed:
                fut.set_exception(WalWriteError("WAL is closed"))
                return fut
            self._pending.append(_Pending(payload, crc, fut))
            self.held.add(len(payload))
            self._cond.notify()
        return fut

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed and not self._rotate_requested:
                    self._cond.wait(self.sync_interval_s if self.sync_mode == "interval" else None)
                    if self.sync_mode == "interval" and not self._pending:
                        self._maybe_interval_sync(force=True)
                if self._rotate_requested and not self._pending:
                    self._rotate_requested = False
                    if self._offset:
                        self._rotate()
                    continue
                group, self._pending = self._pending, []
                if not group and self._closed:
                    break
            try:
                self._write_group(group)
            finally:
                self.held.sub(sum(len(p.payload) for p in group))
        self._sync()
        os.close(self._fd)

    def _write_group(self, group: list[_Pending]) -> None:
        start = self._offset
        frames: list[bytes] = []
        positions: list[WalPos] = []
        off = start
        for p in group:
            frames.append(_HDR.pack(len(p.payload), p.crc))
            frames.append(p.payload)
            off += _HDR.size + len(p.payload)
            positions.append(WalPos(self.segment, off))
        try:
            self._write_all(frames)
            if self.sync_mode == "always":
                self._sync()
            else:
                self._maybe_interval_sync()
        except OSError as exc:
            self.failures += 1
            self._recover_after_failure(start)
            err = WalWriteError(f"WAL write failed: {exc.strerror or exc}")
            for p in group:
                p.future.set_exception(err)
            return
        self._offset = off
        self.records += len(group)
        self.bytes += off - start
        for p, pos in zip(group, positions, strict=True):
            p.future.set_result(pos)
        if self._offset >= self.segment_bytes:
            self._rotate()

    def _write_all(self, frames: list[bytes]) -> None:
        # One writev: joining the frames first would copy every record once more. A short
        # write (file size limit, disk nearly full) is not an exception: keep going until
        # the kernel either takes every byte or raises.
        views = [memoryview(f) for f in frames if f]
        while views:
            n = os.writev(self._fd, views[:_IOV_MAX])
            while views and n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            if n:
                views[0] = views[0][n:]

    def _sync(self) -> None:
        os.fdatasync(self._fd)
        self.syncs += 1
        self._last_sync = time.monotonic()

    def _maybe_interval_sync(self, force: bool = False) -> None:
        if time.monotonic() - self._last_sync >= self.sync_interval_s or force:
            try:
                self._sync()
            except OSError:
                log.exception("WAL interval fsync failed")

    def _recover_after_failure(self, good_offset: int) -> None:
        # A partial frame must not sit in front of later records: cut it off, or start a
        # fresh segment when even that fails.
        try:
            os.ftruncate(self._fd, good_offset)
        except OSError:
            log.error("WAL: could not truncate partial write; starting a new segment")
            self._rotate()

    def _rotate(self) -> None:
        try:
            self._sync()
        except OSError:
            log.exception("WAL fsync before rotation failed")
        os.close(self._fd)
        self.segment += 1
        self._fd = self._open(self.segment)
        self._offset = 0

    @property
    def closed(self) -> bool:
        """True once `close` was called: nothing more is written, rotations included."""
        return self._closed

    @property
    def current_bytes(self) -> int:
        """Bytes in the open segment."""
        return self._offset

    def request_rotation(self) -> None:
        """Start a new segment when idle, so a fully flushed one can be deleted."""
        with self._cond:
            self._rotate_requested = True
            self._cond.notify()

    def size_bytes(self) -> int:
        """Bytes of the segments on disk; one released while it is counted counts 0."""
        total = 0
        for p in self.dir.glob("*.wal"):
            with contextlib.suppress(FileNotFoundError):
                total += p.stat().st_size
        return total

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(30)


class FileWal:
    """The ingest log of one node (`IngestLog[WalPos]`): a `WalWriter` appending to new
    segments, replay of the segments on disk, and release of segments whose records are
    all at or before a position. `after` is the checkpoint the log is opened at: new
    segments are numbered past it, so a position is never handed out twice even when
    every segment was released."""

    def __init__(self, wal_dir: Path, segment_bytes: int = 128 << 20,
                 sync_mode: str = "always", sync_interval_s: float = 0.1,
                 after: WalPos | None = None, held: HeldBytes | None = None) -> None:
        """`held`: where the bytes of records waiting to be written are counted."""
        self.dir = wal_dir
        self.records_lost = 0  # damaged records skipped at replay (torn tails not counted)
        self.lines_lost = 0  # lines in them, as far as their bytes still tell
        self._writer = WalWriter(wal_dir, segment_bytes, sync_mode, sync_interval_s,
                                 after.segment + 1 if after is not None else 1, held)

    # --- IngestLog -------------------------------------------------------------------
    def append(self, record: PushRecord) -> Future[WalPos]:
        """Durable (or, in interval mode, written) when the future resolves; futures
        resolve in the order of `append` calls, which is the order of positions."""
        return self._writer.submit(record.encode(), record.crc32)

    def replay(self, after: WalPos | None) -> Iterator[tuple[WalPos, PushRecord]]:
        """The records after `after` (all when None) in segments written before this log
        was opened, oldest first. Damaged ones are skipped, counted and logged."""
        for n in list_segments(self.dir):
            if n >= self._writer.segment or (after is not None and n < after.segment):
                continue
            for pos, payload in read_segment(_segment_path(self.dir, n), n, self._damage):
                if after is not None and pos <= after:
                    continue
                try:
                    record = PushRecord.decode(payload)
                except RecordError as exc:
                    self.records_lost += 1
                    log.warning("WAL record at %s could not be decoded, skipped (1 record, "
                                "an unknown number of lines lost): %s", pos, exc)
                    continue
                yield pos, record

    def release(self, upto: WalPos) -> int:
        """Delete closed segments whose records all lie at or before `upto` (empty ones
        too); returns how many."""
        removed = 0
        for n in list_segments(self.dir):
            if n >= self._writer.segment and not self._writer.closed:
                continue  # the segment being written
            path = _segment_path(self.dir, n)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if n < upto.segment or size == 0 or (n == upto.segment and size == upto.offset):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def next_unit(self, pos: WalPos | None) -> WalPos:
        """The first position past the segment holding `pos` (the oldest segment when
        None): what must be released to free that segment."""
        if pos is not None:
            return WalPos(pos.segment + 1, 0)
        segs = list_segments(self.dir)
        return WalPos((segs[0] if segs else self._writer.segment) + 1, 0)

    @staticmethod
    def position_to_json(pos: WalPos) -> object:
        return [pos.segment, pos.offset]

    @staticmethod
    def position_from_json(obj: object) -> WalPos:
        if (not isinstance(obj, list) or len(obj) != 2
                or not all(isinstance(x, int) and x >= 0 for x in obj)):
            raise ValueError(f"not a WAL position: {obj!r}")
        return WalPos(obj[0], obj[1])

    def size_bytes(self) -> int:
        return self._writer.size_bytes()

    def close(self) -> None:
        self._writer.close()

    # --- the file WAL's own ----------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._writer.closed

    @property
    def segment(self) -> int:
        """The number of the segment being written."""
        return self._writer.segment

    @property
    def current_bytes(self) -> int:
        return self._writer.current_bytes

    def request_rotation(self) -> None:
        self._writer.request_rotation()

    @property
    def records(self) -> int:
        return self._writer.records

    @property
    def bytes(self) -> int:
        return self._writer.bytes

    @property
    def syncs(self) -> int:
        return self._writer.syncs

    @property
    def failures(self) -> int:
        return self._writer.failures

    def _damage(self, segment: str, damage: Damage) -> None:
        """Count and report what a damaged stretch of a segment held, as far as its bytes
        still tell: a record whose frame length was intact is usually decodable."""
        lines: list[int] = []
        tenants: set[str] = set()
        for payload in damage.payloads:
            try:
                record = PushRecord.decode(payload)
            except RecordError:
                continue  # too damaged to tell
            lines.append(record.lines)
            tenants.add(record.tenant)
        unknown = damage.records - len(lines)
        self.records_lost += damage.records
        self.lines_lost += sum(lines)
        what = f"{sum(lines)} lines" if not unknown else \
            f"{sum(lines)} lines and an unknown number more" if lines else \
            "an unknown number of lines"
        log.warning("WAL %s: damaged data at offset %d (%d bytes) skipped: %d record%s (%s) "
                    "lost%s", segment, damage.start, damage.end - damage.start, damage.records,
                    "" if damage.records == 1 else "s", what,
                    f" of tenant {', '.join(sorted(tenants))}" if tenants else "")
