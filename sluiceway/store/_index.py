"""Per-tenant index log: an append-only file of framed records naming every chunk.

Records (orjson): {"op":"add", "fp", "labels", "path", "mint", "maxt", "n", "raw", "size",
"seg", "off"} and {"op":"del", "fp", "path"}. Loading it rebuilds series → chunks and the
label postings. A torn tail record (crash mid-append) is skipped with a warning.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from sluiceway.durable import atomic_write, ensure_dir, fsync_dir

log = logging.getLogger("sluiceway.index")
_HDR = struct.Struct("<II")


def read_index(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    data = path.read_bytes()
    pos = 0
    while pos + _HDR.size <= len(data):
        length, crc = _HDR.unpack_from(data, pos)
        end = pos + _HDR.size + length
        if end > len(data) or zlib.crc32(data[pos + _HDR.size : end]) != crc:
            log.warning("index %s: damaged record at offset %d skipped (torn write)", path, pos)
            return
        yield orjson.loads(data[pos + _HDR.size : end])
        pos = end


class IndexLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # the flusher and the compactor both append
        ensure_dir(path.parent)
        created = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if created:
            fsync_dir(path.parent)  # the log's name must outlive a power cut, as its records

    @staticmethod
    def _frames(records: list[dict[str, Any]]) -> bytes:
        frames = []
        for r in records:
            payload = orjson.dumps(r)
            frames.append(_HDR.pack(len(payload), zlib.crc32(payload)) + payload)
        return b"".join(frames)

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append and fsync; on failure (disk full) the log is cut back to where it was,
        so no torn record sits in front of later ones."""
        data = memoryview(self._frames(records))
        with self._lock:
            size = os.fstat(self._fd).st_size
            try:
                while data:  # a short write is no error: the next write raises
                    data = data[os.write(self._fd, data):]
                os.fsync(self._fd)
            except OSError:
                try:
                    os.ftruncate(self._fd, size)
                except OSError:
                    log.error("index %s: could not cut back a failed append", self.path)
                raise

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the log with `records` (compaction after many deletions), atomically
        and durably (file and directory synced)."""
        data = self._frames(records)
        with self._lock:
            atomic_write(self.path, data)
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def close(self) -> None:
        os.close(self._fd)
