"""Positions: how far each file is durable downstream, persisted atomically with a checksum.

A file is keyed by `dev:ino` and carries a fingerprint of its first bytes, so a rename
keeps its position and a reused inode does not inherit one. The tailer hands over byte
ranges in read order; a range becomes *done* once every line in it is acked by the
backend or written to the spill. `committed` only moves over a done prefix, and done
ranges beyond it are saved too, so a restart neither re-reads nor re-sends what the
spill already holds.

The ledger's numbers of a file ride along (ARCHITECTURE.md §ledger): a file's content
is an *epoch* of its input's source, numbered from its first line read; each range
carries the numbers of its lines, `line` is the number at `committed`, and the numbers
counted lost (by reason, and which) are saved with the offsets, in the same atomic
write: a line is either done as of the last save (shipped, spilled, or counted lost)
or read again — with the same number — after a crash.
"""

from __future__ import annotations

import bisect
import logging
import secrets
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from sluiceway.durable import atomic_write, ensure_dir, remove_temp_files
from sluiceway.model import RangeSet

log = logging.getLogger("sluiceway.agent")
_MAGIC = b"sluiceway-positions v1 crc32="


@dataclass(slots=True)
class FilePos:
    path: str
    committed: int = 0
    gen: int = 0
    fp: str = ""
    fp_len: int = 0
    # [start, end, done, first number, end number] in start order; the first one starts
    # at `committed`.
    pending: list[list[int]] = field(default_factory=list)
    size: int = 0
    read_pos: int = 0
    released: bool = False
    lag_lines: int | None = None  # whole lines past read_pos, when counted (see _tail)
    # the ledger: this content's source and epoch, the number at `committed`, the
    # numbers handed out so far (over restarts), and what was counted lost
    source: str = ""
    epoch: str = ""
    line: int = 0
    emitted: int = 0
    numbered: bool = True
    lost: dict[str, int] = field(default_factory=dict)
    lost_set: RangeSet = field(default_factory=RangeSet)
    lost_unknown: int = 0

    def done_ranges(self) -> list[list[int]]:
        return [[s, e, a, b] for s, e, d, a, b in self.pending if d]

    def advance(self) -> None:
        p = self.pending
        i = 0
        while i < len(p) and p[i][2] and p[i][0] <= self.committed:
            self.committed = max(self.committed, p[i][1])
            self.line = max(self.line, p[i][4])
            i += 1
        if i:
            del p[:i]


# key, generation, start, end, first number, end number
Checkpoint = tuple[str, int, int, int, int, int]


def new_epoch() -> str:
    """A fresh epoch id: a file's content numbered from its first line read."""
    return secrets.token_hex(6)
# Lost numbers kept per file, at most; past that only the counts.
MAX_LOST_RUNS = 4096


class Positions:
    """Thread-safe tracker shared by the tailers (add ranges) and the queue (mark done)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        # `--dry-run`: the saved positions are read, never written (nor cleaned up).
        self.read_only = read_only
        self._lock = threading.Lock()
        self._files: dict[str, FilePos] = {}
        self._first_start = not self.path.exists()
        # The ledger's figures that no file holds (numbers of other sources this agent
        # carries, `AgentLedger.carried`): saved in the same atomic write, after the
        # files' figures are taken, so a range saved done has its losses saved too.
        self.ledger_state: Callable[[], Any] | None = None
        self.saved_ledger: Any = None
        self._saved: dict[str, dict[str, object]] = self._load()
        self._dirty = True
        self._by_epoch: dict[str, str] = {}  # epoch -> key
        self._imported: dict[str, int] = {}

    # -- startup ---------------------------------------------------------------------------
    def _load(self) -> dict[str, dict[str, object]]:
        if self.path.parent.is_dir() and not self.read_only:
            remove_temp_files(self.path.parent, self.path.name)  # a save a crash cut short
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        head, _, body = raw.partition(b"\n")
        try:
            if not head.startswith(_MAGIC) or int(head[len(_MAGIC):]) != zlib.crc32(body):
                raise ValueError("checksum mismatch")
            doc = orjson.loads(body)
            files = doc["files"]
            if not isinstance(files, dict):
                raise ValueError("no files map")
            self.saved_ledger = doc.get("ledger")
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
                 done: list[tuple[int, int, int, int]] | None = None, *, source: str = "",
                 ledger: dict[str, object] | None = None, numbered: bool = True) -> FilePos:
        """`ledger`: the saved figures of this very content (its position matched), or
        None for content read from its start: a new epoch."""
        with self._lock:
            fpos = FilePos(path, committed, 0, fp, fp_len,
                           [[s, e, 1, a, b] for s, e, a, b in sorted(done or [])
                            if e > committed])
            old = self._files.get(key)
            if old is not None:
                fpos.gen = old.gen + 1
                self._by_epoch.pop(old.epoch, None)
            fpos.source, fpos.numbered = source, numbered
            led = ledger or {}
            fpos.epoch = str(led.get("epoch") or new_epoch())
            fpos.line = int(str(led.get("line", 0)))
            fpos.emitted = max(fpos.line, int(str(led.get("emitted", 0))))
            fpos.lost = {str(k): int(v) for k, v in
                         (led.get("lost") or {}).items()}  # type: ignore[attr-defined]
            fpos.lost_set = RangeSet((int(a), int(b)) for a, b in
                                     led.get("lost_ranges") or [])  # type: ignore[attr-defined]
            fpos.lost_unknown = int(str(led.get("lost_unknown", 0)))
            self._files[key] = fpos
            self._by_epoch[fpos.epoch] = key
            self._dirty = True
            return fpos

    def touch(self) -> None:
        """Something saved with the positions changed (the ledger's figures)."""
        self._dirty = True

    def tracked(self, key: str) -> bool:
        with self._lock:
            f = self._files.get(key)
            return f is not None and not f.released

    def add(self, key: str, gen: int, start: int, end: int, first: int = 0,
            stop: int = 0) -> None:
        """Range [start, end) of generation `gen` (numbers [first, stop)) was handed
        downstream, not yet durable. A range of an older generation (content a
        truncation replaced) is not tracked."""
        if end <= start:
            return
        with self._lock:
            f = self._files.get(key)
            if f is not None and f.gen == gen:
                bisect.insort(f.pending, [start, end, 0, first, stop])
                f.emitted = max(f.emitted, stop)

    def restart(self, key: str, fp: str, fp_len: int) -> int:
        """The file was truncated: start over at 0 with a new generation; returns it."""
        with self._lock:
            f = self._files[key]
            f.gen += 1
            f.committed, f.pending, f.fp, f.fp_len = 0, [], fp, fp_len
            self._by_epoch.pop(f.epoch, None)
            f.epoch, f.line, f.emitted, f.lost, f.lost_set, f.lost_unknown = \
                new_epoch(), 0, 0, {}, RangeSet(), 0
            self._by_epoch[f.epoch] = key
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
            self._by_epoch.pop(f.epoch, None)
            self._saved.pop(key, None)

    # -- the ledger ------------------------------------------------------------------------
    def lose(self, epoch: str, reason: str, runs: list[tuple[int, int]]) -> bool:
        """Numbers of a file's epoch counted lost; False when no file has that epoch."""
        with self._lock:
            key = self._by_epoch.get(epoch)
            f = self._files.get(key) if key is not None else None
            if f is None:
                return False
            for a, b in runs:
                f.lost[reason] = f.lost.get(reason, 0) + f.lost_set.add(a, b)
            if f.lost_set.runs > MAX_LOST_RUNS:
                f.lost_unknown += len(f.lost_set)
                f.lost_set = RangeSet()
            self._dirty = True
            return True

    def epochs(self) -> dict[str, str]:
        with self._lock:
            return dict(self._by_epoch)

    # -- queue side ------------------------------------------------------------------------
    def done(self, checkpoints: list[Checkpoint] | list[list[object]]) -> None:
        """The lines of these ranges are durable downstream (acked, spilled or lost)."""
        with self._lock:
            for key, gen, start, *_rest in checkpoints:
                f = self._files.get(str(key))
                if f is None or f.gen != gen:
                    continue  # a truncated generation or a replay from a previous run
                i = bisect.bisect_left(f.pending, [start, 0, 0])
                if i < len(f.pending) and f.pending[i][0] == start:
                    f.pending[i][2] = 1
                f.advance()
                self._dirty = True
                self._forget_if_done(str(key), f)

    def snapshot_of(self, key: str) -> FilePos:
        with self._lock:
            return self._files[key]

    def gen(self, key: str) -> int:
        with self._lock:
            return self._files[key].gen

    # -- persistence -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, FilePos]:
        with self._lock:
            return {k: FilePos(f.path, f.committed, f.gen, f.fp, f.fp_len,
                               [list(p) for p in f.pending], f.size, f.read_pos, f.released,
                               f.lag_lines, f.source, f.epoch, f.line, f.emitted, f.numbered,
                               dict(f.lost), RangeSet(f.lost_set), f.lost_unknown)
                    for k, f in self._files.items()}

    def save(self, force: bool = False) -> None:
        if self.read_only:
            return
        with self._lock:
            if not (self._dirty or force):
                return
            files: dict[str, dict[str, object]] = dict(self._saved)
            for k, f in self._files.items():
                files[k] = {"path": f.path, "offset": f.committed, "fp": f.fp,
                            "fp_len": f.fp_len, "done": f.done_ranges(), "epoch": f.epoch,
                            "line": f.line, "emitted": f.emitted, "lost": f.lost,
                            "lost_ranges": f.lost_set.ranges(),
                            "lost_unknown": f.lost_unknown}
            self._dirty = False
        doc: dict[str, Any] = {"files": files}
        if self.ledger_state is not None:
            doc["ledger"] = self.ledger_state()
        body = orjson.dumps(doc)
        ensure_dir(self.path.parent)
        atomic_write(self.path, _MAGIC + str(zlib.crc32(body)).encode() + b"\n" + body,
                     mode=0o600)

