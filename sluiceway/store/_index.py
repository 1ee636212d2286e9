"""Per-tenant index log: an append-only file of framed records naming every chunk.

Records (orjson): {"op":"add", "fp", "labels", "path", "mint", "maxt", "n", "raw", "size",
"seg", "off"} and {"op":"del", "fp", "path"}. Loading it rebuilds series → chunks and the
label postings. A damaged record is skipped and reading resumes at the next valid one
(`_frames`); a torn tail (a crash mid-append) is cut off before anything is appended, so
no record ever lands behind bytes the reader cannot get past.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sluiceway.durable import atomic_write, ensure_dir, fsync_dir
from sluiceway.store._frames import HDR, Damage, scan

log = logging.getLogger("sluiceway.index")
_PREFIX = b'{"op":'  # every record is a JSON object whose first key is "op"


@dataclass(slots=True)
class IndexScan:
    records: list[dict[str, Any]] = field(default_factory=list)
    end: int = 0  # just past the last valid record: where appending may continue
    damage: list[Damage] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Damaged records; a torn tail never was a whole record and does not count."""
        return sum(d.records for d in self.damage if not d.torn)


def _plausible(data: bytes, start: int, length: int) -> bool:
    return length > len(_PREFIX) and data.startswith(_PREFIX, start)


def read_index(path: Path) -> IndexScan:
    out = IndexScan()
    if not path.exists():
        return out
    data = path.read_bytes()
    for item in scan(data, _plausible, _PREFIX):
        if isinstance(item, Damage):
            out.damage.append(item)
            if item.torn:
                log.warning("index %s: torn record at offset %d (%d bytes), a write cut "
                            "short by a crash; it is cut off", path, item.start,
                            item.end - item.start)
            else:
                for off in item.offsets:
                    log.warning("index %s: damaged record at offset %d skipped", path, off)
            continue
        start, end = item
        try:
            rec = orjson.loads(data[start + HDR.size : end])
        except orjson.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict):
            log.warning("index %s: record at offset %d is not a JSON object; skipped", path,
                        start)
            out.damage.append(Damage(start, end, [start], [], False))
            continue
        out.records.append(rec)
        out.end = end
    return out


class IndexLog:
    """Appends whole frames, fsynced. `end` (from `read_index`) is where the valid records
    end: anything after it is cut off first."""

    def __init__(self, path: Path, end: int | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()  # the flusher and the compactor both append
        ensure_dir(path.parent)
        created = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if created:
            fsync_dir(path.parent)  # the log's name must outlive a power cut, as its records
        self._size = os.fstat(self._fd).st_size
        if end is not None and self._size > end:
            log.warning("index %s: cutting %d bytes after the last valid record (offset %d) "
                        "before appending", path, self._size - end, end)
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
            self._size = end

    @staticmethod
    def _frames(records: list[dict[str, Any]]) -> bytes:
        frames = []
        for r in records:
            payload = orjson.dumps(r)
            frames.append(HDR.pack(len(payload), zlib.crc32(payload)) + payload)
        return b"".join(frames)

    def append(self, records: list[dict[str, Any]]) -> None:
        """All records or none: a failed or short write is cut back off, then raised, so no
        torn record sits in front of later ones."""
        buf = memoryview(self._frames(records))
        with self._lock:
            start = self._size
            try:
                while buf:
                    n = os.write(self._fd, buf)
                    if n <= 0:
                        raise OSError(errno.EIO, "write took no bytes")
                    buf = buf[n:]
                os.fsync(self._fd)
            except OSError:
                self._cut_back(start)
                raise
            self._size = os.fstat(self._fd).st_size

    def _cut_back(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        except OSError:
            # The reader resynchronises past the partial frame; appends continue after it.
            log.exception("index %s: could not cut a failed append back to %d bytes",
                          self.path, size)

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the log with `records` (compaction after many deletions), atomically
        and durably (file and directory synced)."""
        data = self._frames(records)
        with self._lock:
            atomic_write(self.path, data)
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        os.close(self._fd)
