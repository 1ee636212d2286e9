"""The disk half of a spilling buffer: an append-only log of framed, checksummed records.

Layout of `spill_dir`:
- `<seq:016d>.seg` segment files, each a run of records
  `MAGIC(4) | payload length u32 | item count u32 | crc32(count + payload) u32 | payload`;
- `cursor`: `<seq> <offset>` of the first record not yet acknowledged, replaced atomically.

Writes always go to a fresh segment after a restart, so a torn tail left by SIGKILL is
never appended to; it is found, reported and skipped while reading. A record whose
checksum fails is skipped by scanning forward to the next MAGIC (the payload is
opaque, so a false MAGIC inside it is caught by the checksum of the would-be record).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sluiceway.buffer._config import FsyncPolicy
from sluiceway.durable import (
    DirLock,
    DirLocked,
    atomic_write,
    ensure_dir,
    fsync_dir,
    lock_dir,
    remove_temp_files,
)

log = logging.getLogger("sluiceway.buffer")

MAGIC = b"SWR1"
HEADER = struct.Struct("<4sIII")
MAX_PAYLOAD = 1 << 30


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    end: int  # bytes known to hold whole records (or the torn tail's start)
    items: int  # items in records at or after the read position
    sealed: bool


@dataclass(slots=True)
class _Read:
    seq: int
    end: int
    acked: bool


@dataclass(slots=True)
class DiskRecord:
    """One record handed to a consumer: its payload, item count and ack handle."""

    payload: bytes
    count: int
    ref: _Read


def _crc(count: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<I", count)))


class SpillDirLocked(RuntimeError):
    """Another live process holds this spill directory."""


class SpillLog:
    """Segments on disk with one writer and one reader position; thread-safe."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int,
                 fsync: FsyncPolicy = "always", fsync_interval: float = 0.5) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self._lock = threading.Lock()
        self._segs: deque[_Segment] = deque()
        self._wfd: int | None = None
        self._last_sync = 0.0
        self._read_seq = 0
        self._read_off = 0
        self._inflight: deque[_Read] = deque()
        self._next_seq = 1
        self.corrupt_records = 0
        ensure_dir(self.dir)
        self._dir_lock = self._lock_dir()
        self._recover()

    def _lock_dir(self) -> DirLock:
        """One writer per directory: a second process would interleave segment numbers."""
        try:
            return lock_dir(self.dir, "lock", 0o600)
        except DirLocked as exc:
            who = f" (pid {exc.pid})" if exc.pid else ""
            raise SpillDirLocked(f"spill directory {self.dir} is in use by another "
                                 f"process{who}") from None

    # ---- recovery -------------------------------------------------------------------

    def _recover(self) -> None:
        seqs = sorted(int(p.stem) for p in self.dir.glob("*.seg") if p.stem.isdigit())
        cur_seq, cur_off = self._load_cursor()
        for seq in seqs:
            path = self._path(seq)
            if seq < cur_seq:
                path.unlink(missing_ok=True)
                continue
            start = cur_off if seq == cur_seq else 0
            end, items = self._scan(path, start)
            self._segs.append(_Segment(seq, path, end, items, sealed=True))
        self._next_seq = max([cur_seq, *seqs]) + 1
        if self._segs:
            first = self._segs[0]
            self._read_seq = first.seq
            self._read_off = cur_off if first.seq == cur_seq else 0
        self._tmp_cleanup()

    def _tmp_cleanup(self) -> None:
        remove_temp_files(self.dir, "cursor")  # a cursor write a crash interrupted

    def _load_cursor(self) -> tuple[int, int]:
        try:
            seq, off = (self.dir / "cursor").read_text().split()
            return int(seq), int(off)
        except (OSError, ValueError):
            return 0, 0

    def _scan(self, path: Path, start: int) -> tuple[int, int]:
        """Count items from `start`; returns (end of the last whole record, items)."""
        size = path.stat().st_size
        items, pos = 0, start
        with open(path, "rb") as f:
            while pos + HEADER.size <= size:
                f.seek(pos)
                magic, length, count, _ = HEADER.unpack(f.read(HEADER.size))
                if magic != MAGIC or length > MAX_PAYLOAD:
                    nxt = self._find_magic(f, pos + 1, size)
                    if nxt is None:
                        break
                    pos = nxt
                    continue
                if pos + HEADER.size + length > size:
                    break
                items += count
                pos += HEADER.size + length
        if pos < size:
            log.warning("spill segment %s: %d bytes of torn or corrupt tail skipped",
                        path.name, size - pos)
        return pos, items

    @staticmethod
    def _find_magic(f: BinaryIO, start: int, end: int) -> int | None:
        pos = start
        while pos < end:
            f.seek(pos)
            chunk = f.read(min(1 << 20, end - pos))
            i = chunk.find(MAGIC)
            if i >= 0:
                return pos + i
            if len(chunk) < len(MAGIC):
                return None
            pos += len(chunk) - len(MAGIC) + 1
        return None

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:016d}.seg"

    # ---- writing ----------------------------------------------------------------------

    def disk_bytes(self) -> int:
        with self._lock:
            return self._disk_bytes()

    def _disk_bytes(self) -> int:
        return sum(s.end for s in self._segs)

    def append(self, records: list[tuple[bytes, int]]) -> int:
        """Append `(payload, count)` records in order; returns how many fit under the cap.

        The caller keeps the records that did not fit and tries again after acks free room.
        """
        with self._lock:
            used = self._disk_bytes()
            written = 0
            for payload, count in records:
                frame = HEADER.pack(MAGIC, len(payload), count, _crc(count, payload)) + payload
                if used + len(frame) > self.max_bytes:
                    break
                seg = self._writable()
                os.write(self._fd(), frame)
                seg.end += len(frame)
                seg.items += count
                used += len(frame)
                written += 1
                if seg.end >= self.segment_bytes:
                    self._seal()
            if written:
                self._maybe_sync()
            return written

    def _writable(self) -> _Segment:
        if self._segs and not self._segs[-1].sealed:
            return self._segs[-1]
        seq = self._next_seq
        self._next_seq += 1
        seg = _Segment(seq, self._path(seq), 0, 0, sealed=False)
        self._wfd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self.fsync != "never":
            fsync_dir(self.dir)  # the new segment's name outlives a power cut, as its data
        if len(self._segs) == 0:
            self._read_seq, self._read_off = seq, 0
        self._segs.append(seg)
        return seg

    def _fd(self) -> int:
        assert self._wfd is not None
        return self._wfd

    def _seal(self) -> None:
        if self._wfd is not None:
            if self.fsync != "never":
                os.fsync(self._wfd)
            os.close(self._wfd)
            self._wfd = None
        if self._segs:
            self._segs[-1].sealed = True

    def _maybe_sync(self) -> None:
        if self._wfd is None or self.fsync == "never":
            return
        now = time.monotonic()
        if self.fsync == "always" or now - self._last_sync >= self.fsync_interval:
            os.fsync(self._wfd)
            self._last_sync = now

    # ---- reading ----------------------------------------------------------------------

    def unread_items(self) -> int:
        with self._lock:
            return sum(s.items for s in self._segs)

    def read(self, max_items: int, max_bytes: int) -> list[DiskRecord]:
        """Whole records from the read position: at least one if any, then while they fit."""
        out: list[DiskRecord] = []
        n = nbytes = 0
        with self._lock:
            while True:
                rec = self._next()
                if rec is None:
                    break
                out.append(rec)
                n += rec.count
                nbytes += len(rec.payload)
                if n >= max_items or nbytes >= max_bytes:
                    break
                nxt = self._peek_count()
                if nxt is None or n + nxt > max_items:
                    break
        return out

    def _current(self) -> _Segment | None:
        for s in self._segs:
            if s.seq == self._read_seq:
                return s
        return None

    def _peek_count(self) -> int | None:
        seg = self._current()
        if seg is None or self._read_off + HEADER.size > seg.end:
            return None
        with open(seg.path, "rb") as f:
            f.seek(self._read_off)
            magic, _, count, _ = HEADER.unpack(f.read(HEADER.size))
        return int(count) if magic == MAGIC else None

    def _next(self) -> DiskRecord | None:
        while True:
            seg = self._current()
            if seg is None:
                return None
            if self._read_off >= seg.end:
                seg.items = 0  # counts of records skipped as corrupt end here too
                if not seg.sealed:
                    return None
                idx = self._segs.index(seg)
                if idx + 1 >= len(self._segs):
                    return None
                self._read_seq, self._read_off = self._segs[idx + 1].seq, 0
                continue
            rec = self._read_at(seg)
            if rec is not None:
                return rec

    def _read_at(self, seg: _Segment) -> DiskRecord | None:
        """Read the record at the read position; on damage skip ahead and return None."""
        start = self._read_off
        with open(seg.path, "rb") as f:
            f.seek(start)
            head = f.read(HEADER.size)
            ok = len(head) == HEADER.size
            if ok:
                magic, length, count, crc = HEADER.unpack(head)
                ok = magic == MAGIC and start + HEADER.size + length <= seg.end
            if ok:
                payload = f.read(length)
                ok = len(payload) == length and _crc(count, payload) == crc
            if ok:
                end = start + HEADER.size + length
                ref = _Read(seg.seq, end, acked=False)
                self._read_off = end
                seg.items -= count
                self._inflight.append(ref)
                return DiskRecord(payload, count, ref)
            nxt = self._find_magic(f, start + 1, seg.end)
        self.corrupt_records += 1
        skip_to = seg.end if nxt is None else nxt
        log.warning("spill segment %s: corrupt record at offset %d skipped (%d bytes)",
                    seg.path.name, start, skip_to - start)
        self._read_off = skip_to
        if nxt is None:
            seg.items = 0  # whatever was counted beyond the damage cannot be read
        self._inflight.append(_Read(seg.seq, skip_to, acked=True))
        self._advance_cursor()
        return None

    # ---- acknowledging ----------------------------------------------------------------

    def ack(self, refs: list[_Read]) -> None:
        with self._lock:
            for r in refs:
                r.acked = True
            self._advance_cursor()

    def _advance_cursor(self) -> None:
        moved: _Read | None = None
        while self._inflight and self._inflight[0].acked:
            moved = self._inflight.popleft()
        if moved is None:
            return
        seq, off = moved.seq, moved.end
        # Free every sealed segment wholly behind the cursor; an active segment that is
        # fully read and acked is sealed first so its file can go too.
        while self._segs:
            head = self._segs[0]
            done = head.seq < seq or (head.seq == seq and off >= head.end)
            busy = any(r.seq == head.seq for r in self._inflight)
            if not done or busy or (self._read_seq == head.seq and self._read_off < head.end):
                break
            if not head.sealed:
                self._seal()
            self._segs.popleft()
            head.path.unlink(missing_ok=True)
            if self._segs:
                seq, off = self._segs[0].seq, 0
                if self._read_seq == head.seq:
                    self._read_seq, self._read_off = seq, 0
            else:
                seq, off = head.seq, head.end
        self._write_cursor(seq, off)

    def _write_cursor(self, seq: int, off: int) -> None:
        atomic_write(self.dir / "cursor", f"{seq} {off}\n".encode(), mode=0o600,
                     sync=self.fsync == "always")

    def segment_count(self) -> int:
        with self._lock:
            return len(self._segs)

    def forget_in_child(self) -> None:
        """In a forked child: drop the inherited descriptors so the directory's lock
        lives and dies with the parent alone. Takes no lock: a parent thread may have
        held it at fork time."""
        if self._wfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._wfd)
        self._wfd = None
        self._dir_lock.close()

    def close(self) -> None:
        with self._lock:
            if self._wfd is not None:
                if self.fsync != "never":
                    os.fsync(self._wfd)
                os.close(self._wfd)
                self._wfd = None
            self._dir_lock.close()  # releases the flock
