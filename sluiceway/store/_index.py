"""Per-tenant index log: an append-only file of framed records naming every chunk.

Records (orjson): {"op":"add", "fp", "labels", "path", "mint", "maxt", "n", "raw", "size",
"seg", "off"} and {"op":"del", "fp", "path"}. Loading it rebuilds series → chunks and the
label postings. A torn tail record (crash mid-append) is skipped with a warning.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

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
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, records: list[dict[str, Any]]) -> None:
        frames = []
        for r in records:
            payload = orjson.dumps(r)
            frames.append(_HDR.pack(len(payload), zlib.crc32(payload)) + payload)
        os.write(self._fd, b"".join(frames))
        os.fsync(self._fd)

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the log with `records` (compaction after many deletions), atomically."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for r in records:
                payload = orjson.dumps(r)
                f.write(_HDR.pack(len(payload), zlib.crc32(payload)) + payload)
            f.flush()
            os.fsync(f.fileno())
        os.close(self._fd)
        os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def close(self) -> None:
        os.close(self._fd)
