"""Positions: how far each file is durable downstream, persisted atomically with a checksum.

A file is keyed by `dev:ino` and carries a fingerprint of its first bytes, so a rename
keeps its position and a reused inode does not inherit one. The tailer hands over byte
ranges in read order; a range becomes *done* once every line in it is acked by the
backend or written to the spill. `committed` only moves over a done prefix, and done
ranges beyond it are saved too, so a restart neither re-reads nor re-sends what the
spill already holds.
"""

from __future__ import annotations

import bisect
import logging
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml

from sluiceway.durable import atomic_write, ensure_dir, remove_temp_files

log = logging.getLogger("sluiceway.agent")
_MAGIC = b"sluiceway-positions v1 crc32="


@dataclass(slots=True)
class FilePos:
    path: str
    committed: int = 0
    gen: int = 0
    fp: str = ""
    fp_len: int = 0
    # [start, end, done] in start order; the first one starts at `committed`.
    pending: list[list[int]] = field(default_factory=list)
    size: int = 0
    read_pos: int = 0
    released: bool = False
    lag_lines: int | None = None  # whole lines past read_pos, when counted (see _tail)

    def done_ranges(self) -> list[list[int]]:
        return [[s, e] for s, e, d in self.pending if d]

    def advance(self) -> None:
        p = self.pending
        i = 0
        while i < len(p) and p[i][2] and p[i][0] <= self.committed:
            self.committed = max(self.committed, p[i][1])
            i += 1
        if i:
            del p[:i]


Checkpoint = tuple[str, int, int, int]  # key, generation, start, end


class Positions:
    """Thread-safe tracker shared by the tailers (add ranges) and the queue (mark done)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._files: dict[str, FilePos] = {}
        self._first_start = not self.path.exists()
        self._saved: dict[str, dict[str, object]] = self._load()
        self._dirty = True
        self._imported: dict[str, int] = {}

    # -- startup ---------------------------------------------------------------------------
    def _load(self) -> dict[str, dict[str, object]]:
        if self.path.parent.is_dir():
            remove_temp_files(self.path.parent, self.path.name)  # a save a crash cut short
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        head, _, body = raw.partition(b"\n")
        try:
            if not head.startswith(_MAGIC) or int(head[len(_MAGIC):]) != zlib.crc32(body):
                raise ValueError("checksum mismatch")
            files = orjson.loads(body)["files"]
            if not isinstance(files, dict):
                raise ValueError("no files map")
            return files
        except (ValueError, KeyError, TypeError) as exc:
            # A torn or corrupt file must not crash-loop the agent (grafana/loki#1457).
            log.error("positions file %s unreadable (%s); starting without positions",
                      self.path, exc)
            return {}

    def saved(self, key: str) -> dict[str, object] | None:
        return self._saved.get(key)

    def import_promtail(self, path: Path, ignore_invalid: bool = False) -> int:
        """At the first start (no positions of our own yet), take the read offsets of a
        Promtail positions file (`positions: {<path>: "<offset>"}`) for files that have no
        position here; returns how many. A file Promtail cannot read makes the agent
        refuse to start, as Promtail does, unless `ignore_invalid` (its
        `ignore_invalid_yaml`)."""
        if not self._first_start:
            return 0
        try:
            doc = yaml.safe_load(path.read_text())
            found = (doc or {}).get("positions") or {}
            if not isinstance(found, dict):
                raise ValueError("positions is not a map")
            offsets = {str(k): int(str(v)) for k, v in found.items()
                       if str(k).startswith("/")}  # journal cursors and the like are not files
        except FileNotFoundError:
            log.info("no Promtail positions file at %s; files start as configured", path)
            return 0
        except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
            if not ignore_invalid:
                raise ValueError(f"Promtail positions file {path} is invalid ({exc}); set "
                                 "positions.ignore_invalid_yaml to start without it") from None
            log.warning("Promtail positions file %s is invalid (%s); ignored", path, exc)
            return 0
        self._imported = {k: v for k, v in offsets.items() if v >= 0}
        log.info("read %d file positions from the Promtail positions file %s",
                 len(self._imported), path)
        return len(self._imported)

    def imported(self, path: str) -> int | None:
        """The Promtail offset of `path`, for a file with no position of its own."""
        return self._imported.get(path)

    def prune(self, seen: set[str]) -> None:
        """Forget saved positions of files no input found at startup (deleted meanwhile)."""
        with self._lock:
            for key in [k for k in self._saved if k not in seen]:
                del self._saved[key]
                self._dirty = True

    # -- tailer side -----------------------------------------------------------------------
    def register(self, key: str, path: str, committed: int, fp: str, fp_len: int,
                 done: list[tuple[int, int]] | None = None) -> FilePos:
        with self._lock:
            fpos = FilePos(path, committed, 0, fp, fp_len,
                           [[s, e, 1] for s, e in sorted(done or []) if e > committed])
            old = self._files.get(key)
            if old is not None:
                fpos.gen = old.gen + 1
            self._files[key] = fpos
            self._dirty = True
            return fpos

    def tracked(self, key: str) -> bool:
        with self._lock:
            f = self._files.get(key)
            return f is not None and not f.released

    def add(self, key: str, gen: int, start: int, end: int) -> None:
        """Range [start, end) of generation `gen` was handed downstream, not yet durable.
        A range of an older generation (content a truncation replaced) is not tracked."""
        if end <= start:
            return
        with self._lock:
            f = self._files.get(key)
            if f is not None and f.gen == gen:
                bisect.insort(f.pending, [start, end, 0])

    def restart(self, key: str, fp: str, fp_len: int) -> int:
        """The file was truncated: start over at 0 with a new generation; returns it."""
        with self._lock:
            f = self._files[key]
            f.gen += 1
            f.committed, f.pending, f.fp, f.fp_len = 0, [], fp, fp_len
            self._dirty = True
            return f.gen

    def update(self, key: str, **attrs: object) -> None:
        with self._lock:
            f = self._files.get(key)
            if f is not None:
                for k, v in attrs.items():
                    setattr(f, k, v)

    def release(self, key: str) -> None:
        with self._lock:
            f = self._files.get(key)
            if f is not None:
                f.released = True
                self._dirty = True
                self._forget_if_done(key, f)

    def _forget_if_done(self, key: str, f: FilePos) -> None:
        if f.released and not f.pending:
            del self._files[key]
            self._saved.pop(key, None)

    # -- queue side ------------------------------------------------------------------------
    def done(self, checkpoints: list[Checkpoint] | list[list[object]]) -> None:
        """The lines of these ranges are durable downstream (acked, spilled or lost)."""
        with self._lock:
            for key, gen, start, _end in checkpoints:
                f = self._files.get(str(key))
                if f is None or f.gen != gen:
                    continue  # a truncated generation or a replay from a previous run
                i = bisect.bisect_left(f.pending, [start, 0, 0])
                if i < len(f.pending) and f.pending[i][0] == start:
                    f.pending[i][2] = 1
                f.advance()
                self._dirty = True
                self._forget_if_done(str(key), f)

    def gen(self, key: str) -> int:
        with self._lock:
            return self._files[key].gen

    # -- persistence -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, FilePos]:
        with self._lock:
            return {k: FilePos(f.path, f.committed, f.gen, f.fp, f.fp_len,
                               [list(p) for p in f.pending], f.size, f.read_pos, f.released,
                               f.lag_lines)
                    for k, f in self._files.items()}

    def save(self, force: bool = False) -> None:
        with self._lock:
            if not (self._dirty or force):
                return
            files: dict[str, dict[str, object]] = dict(self._saved)
            for k, f in self._files.items():
                files[k] = {"path": f.path, "offset": f.committed, "fp": f.fp,
                            "fp_len": f.fp_len, "done": f.done_ranges()}
            self._dirty = False
        body = orjson.dumps({"files": files})
        ensure_dir(self.path.parent)
        atomic_write(self.path, _MAGIC + str(zlib.crc32(body)).encode() + b"\n" + body,
                     mode=0o600)

