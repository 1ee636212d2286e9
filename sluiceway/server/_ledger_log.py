"""The ledger's own durable log: `<data_dir>/ledger/ledger.log`, framed records
(`u32 length | u32 crc32 | JSON`), appended by one writer thread that shares one
`fdatasync` among the records waiting (group commit). A record the server answered a
push for is on disk first, so the ledger survives a crash as the WAL does. A torn or
damaged frame costs only itself (reading resumes at the next frame that checks out).

Past `max_bytes` the writer replaces the log by one snapshot record (the whole state,
which already holds every record appended: the owner applies a record before it
appends it), written to a new file renamed over the old one (`durable.replace`).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson

from sluiceway.durable import ensure_dir, fsync_dir, replace

log = logging.getLogger("sluiceway.ledger")
_HDR = struct.Struct("<II")
_MAX = 64 << 20


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    pos, skipped = 0, 0
    while pos + _HDR.size <= len(data):
        n, crc = _HDR.unpack_from(data, pos)
        body = data[pos + _HDR.size:pos + _HDR.size + n]
        if n <= _MAX and len(body) == n and zlib.crc32(body) == crc:
            try:
                rec = orjson.loads(body)
            except orjson.JSONDecodeError:
                rec = None
            if isinstance(rec, dict):
                yield rec
            pos += _HDR.size + n
            continue
        skipped += 1
        pos += 1  # resynchronise byte by byte: records are small
    if skipped or pos < len(data):
        log.warning("ledger log %s: damaged or torn data skipped", path)


class LedgerLog:
    def __init__(self, directory: Path, snapshot: Callable[[], dict[str, Any]],
                 sync: bool = True, max_bytes: int = 64 << 20) -> None:
        ensure_dir(directory)
        self.snapshot = snapshot
        self.max_bytes = max_bytes
        self.path = directory / "ledger.log"
        self.sync = sync
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(directory)
        self.bytes = os.fstat(self._fd).st_size
        self._cond = threading.Condition()
        self._pending: list[tuple[bytes, Future[None] | None]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ledger-log", daemon=True)
        self._thread.start()

    @staticmethod
    def frame(rec: dict[str, Any]) -> bytes:
        body = orjson.dumps(rec)
        return _HDR.pack(len(body), zlib.crc32(body)) + body

    def append(self, rec: dict[str, Any], wait: bool) -> Future[None] | None:
        """Queue a record; with `wait`, a future that resolves once it is on disk."""
        fut: Future[None] | None = Future() if wait else None
        with self._cond:
            if self._closed:
                if fut is not None:
                    fut.set_exception(OSError("the ledger log is closed"))
                return fut
            self._pending.append((self.frame(rec), fut))
            self._cond.notify()
        return fut

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                batch, self._pending = self._pending, []
                closed = self._closed
            if batch:
                err: BaseException | None = None
                try:
                    data = b"".join(b for b, _ in batch)
                    os.write(self._fd, data)
                    if self.sync and any(f is not None for _, f in batch):
                        os.fdatasync(self._fd)
                    self.bytes += len(data)
                except OSError as exc:
                    err = exc
                    log.error("ledger log %s: write failed: %s", self.path, exc)
                for _, fut in batch:
                    if fut is not None:
                        if err is None:
                            fut.set_result(None)
                        else:
                            fut.set_exception(err)
                if self.bytes > self.max_bytes:
                    try:
                        self._compact(self.snapshot())
                    except OSError as exc:
                        log.error("ledger log %s: compaction failed: %s", self.path, exc)
            if closed and not batch:
                return

    def _compact(self, state: dict[str, Any]) -> None:
        """On the writer thread: the log becomes one snapshot record."""
        if True:
            tmp = self.path.with_name("ledger.log.new")
            with open(tmp, "wb") as f:
                f.write(self.frame({"t": "snapshot", "state": state}))
                f.flush()
                os.fsync(f.fileno())
            replace(tmp, self.path)
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            self.bytes = os.fstat(self._fd).st_size

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5)
        try:
            if self.sync:
                os.fsync(self._fd)
        except OSError:
            pass
        os.close(self._fd)
