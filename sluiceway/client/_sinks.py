"""Sinks: anything with `write_batch(records)`; the stock ones serialise with orjson.

A sink is called from its own worker thread only, so it needs no locking of its own.
Optional attributes a sink may carry: `name` (for stats), `batch_wait` (seconds the
worker lingers to fill a batch), `max_batch` (records per call), `close()`,
`after_fork()` (rebuild sockets or files in a forked child).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import orjson

from sluiceway.durable import ensure_dir, fsync_dir

_OPTS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


@runtime_checkable
class Sink(Protocol):
    def write_batch(self, records: list[dict[str, Any]]) -> None: ...


def json_lines(records: list[dict[str, Any]]) -> bytes:
    """One JSON object per line; values orjson cannot encode become `str(value)`."""
    return b"".join([orjson.dumps(r, default=str, option=_OPTS) for r in records])


_COLORS = {"DEBUG": "\x1b[2m", "INFO": "\x1b[32m", "WARNING": "\x1b[33m", "ERROR": "\x1b[31m",
           "CRITICAL": "\x1b[41m", "AUDIT": "\x1b[36m", "SECURITY": "\x1b[35m"}
_SKIP = ("ts", "level", "logger", "msg", "exc", "_ep", "_seq", "_src")
# The ledger's numbering (`_ep`, `_seq`): written by the file sink (an agent tailing the
# file reads it back), never shown on stdout.
_NUMBERING = ("_ep", "_seq")


def pretty_line(r: dict[str, Any], color: bool = True) -> str:
    ts = dt.datetime.fromtimestamp(r["ts"] / 1e9).strftime("%H:%M:%S.%f")[:-3]
    lvl = str(r.get("level", ""))
    if color:
        lvl = f"{_COLORS.get(lvl, '')}{lvl:<8}\x1b[0m"
    extra = " ".join(f"{k}={v!r}" for k, v in r.items() if k not in _SKIP)
    line = f"{ts} {lvl} {r.get('logger', '')}: {r.get('msg', '')}"
    line = f"{line}  {extra}" if extra else line
    exc = r.get("exc")
    return f"{line}\n{exc}" if exc else line


class StdoutSink:
    """JSON lines, or a coloured human line per record when the stream is a TTY.

    `format`: "auto" (pretty on a TTY, JSON otherwise), "json" or "pretty".
    """

    def __init__(self, format: str = "auto", stream: IO[str] | None = None) -> None:
        if format not in ("auto", "json", "pretty"):
            raise ValueError("format must be auto, json or pretty")
        self.name = "stdout"
        self.format = format
        self._stream = stream

    def write_batch(self, records: list[dict[str, Any]]) -> None:
        stream = self._stream or sys.stdout
        pretty = self.format == "pretty" or (self.format == "auto" and stream.isatty())
        if pretty:
            stream.write("".join(pretty_line(r) + "\n" for r in records))
            stream.flush()
            return
        data = json_lines([{k: v for k, v in r.items() if k not in _NUMBERING}
                           if "_seq" in r else r for r in records])
        buf = getattr(stream, "buffer", None)
        if buf is not None:
            stream.flush()
            buf.write(data)
            buf.flush()
        else:
            stream.write(data.decode())
            stream.flush()


class RotatingFileSink:
    """JSON lines to `path`, rotated by size: path → path.1 → … → path.<backups>."""

    def __init__(self, path: str | Path, max_bytes: int = 10 << 20, backups: int = 5,
                 fsync: bool = False, lineage: bool = True) -> None:
        self.name = f"file:{path}"
        # The ledger (set by the runtime): each line carries its source (`_src`), epoch
        # (`_ep`) and number (`_seq`), so an agent tailing the file ships the lines under
        # this sink's numbers (lineage). `lineage=False` writes none of the three.
        self.lineage = lineage
        self.ledger_source: str | None = None
        self.ledger_epoch = ""
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self._f: IO[bytes] | None = None
        self._size = 0
        self._new_name = False  # a file was created or renamed since the directory's sync

    def _open(self) -> IO[bytes]:
        if self._f is None:
            ensure_dir(self.path.parent)
            self._new_name = self._new_name or not self.path.exists()
            self._f = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
            self._size = self._f.tell()
        return self._f

    def write_batch(self, records: list[dict[str, Any]]) -> None:
        src = self.ledger_source
        if not self.lineage:
            records = [{k: v for k, v in r.items() if k not in _NUMBERING} if "_seq" in r
                       else r for r in records]
        elif src is not None:
            ep = self.ledger_epoch
            records = [{"_ep": ep, **r, "_src": src} if "_seq" in r else r for r in records]
        data = json_lines(records)
        f = self._open()
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
            f = self._open()
        f.write(data)
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())
            if self._new_name:  # the file's name (and a rotation's renames) too
                fsync_dir(self.path.parent)
                self._new_name = False
        self._size += len(data)

    def _rotate(self) -> None:
        self.close()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._new_name = True

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def after_fork(self) -> None:
        self._f = None  # the parent keeps its handle; the child reopens in append mode
