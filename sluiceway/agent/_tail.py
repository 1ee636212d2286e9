"""File input: glob, tail, follow rotation (rename and copytruncate), release deleted files.

One thread per `file` input. Each round it reads every tracked file in large chunks,
splits complete lines with one `bytes.split`, decodes a piece with one `decode`, and hands
the piece to the pipeline and then the batcher. When the queue blocks, `emit` blocks and
this loop stops reading: the file itself is the buffer.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch

from sluiceway.agent._config import FileInput
from sluiceway.agent._pipeline import Pipeline, PipelineSpec
from sluiceway.agent._positions import Checkpoint, Positions
from sluiceway.agent._records import Records
from sluiceway.agent._stats import Stats
from sluiceway.model import StreamBatch

log = logging.getLogger("sluiceway.agent")
Emit = Callable[[list[StreamBatch], int, int, list[Checkpoint]], None]


def file_fingerprint(fd: int, n: int) -> tuple[str, int]:
    head = os.pread(fd, n, 0)
    return hashlib.blake2b(head, digest_size=8).hexdigest(), len(head)


@dataclass(slots=True)
class Tracked:
    key: str
    path: str
    fd: int
    pipeline: Pipeline
    read_pos: int  # next byte to read
    mark: int  # everything before it was handed downstream (or skipped as done)
    line_pos: int  # file offset of `lines[0]`
    partial: bytes = b""
    lines: list[bytes] = field(default_factory=list)  # complete lines not yet emitted
    skips: list[tuple[int, int]] = field(default_factory=list)  # done ranges to jump over
    gone_since: float | None = None
    fp_len: int = 0
    fp: str = ""
    at_eof: bool = False
    unterminated: bool = False  # the last entry of `lines` has no newline after it


class FileTailer:
    def __init__(self, cfg: FileInput, positions: Positions, emit: Emit, stats: Stats,
                 max_lines: int, max_bytes: int, stop: threading.Event) -> None:
        self.cfg = cfg
        self.positions = positions
        self.emit = emit
        self.stats = stats
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.stop = stop
        self.spec = PipelineSpec(list(cfg.pipeline), dict(cfg.labels))
        self.files: dict[str, Tracked] = {}
        self._first_scan = True
        self._last_scan = 0.0
        self._next_ts = 0

    # -- discovery -------------------------------------------------------------------------
    def _matches(self) -> dict[str, os.stat_result]:
        found: dict[str, os.stat_result] = {}
        for pattern in self.cfg.paths:
            for path in glob.glob(pattern, recursive=True):
                if any(fnmatch(path, ex) for ex in self.cfg.exclude):
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if os.path.isfile(path):
                    found[path] = st
        return found

    def scan(self) -> set[str]:
        """Pick up new files, notice rotated-away and deleted ones; returns the keys seen."""
        self._last_scan = time.monotonic()
        matches = self._matches()
        seen: dict[str, str] = {}
        for path, st in sorted(matches.items()):
            key = f"{st.st_dev}:{st.st_ino}"
            seen[key] = path
            t = self.files.get(key)
            if t is None:
                if not self.positions.tracked(key):  # else another input tails it
                    self._open(key, path)
            elif t.path != path:
                t.path = path  # renamed but still matched: same inode, same position
                self.positions.update(key, path=path)
        now = time.monotonic()
        for key, t in self.files.items():
            if key not in seen and t.gone_since is None:
                t.gone_since = now
                self.stats.add(file_rotations=1)
                log.info("file %s rotated away or deleted; reading it for %.1fs more",
                         t.path, self.cfg.rotate_wait)
            elif key in seen:
                t.gone_since = None
        self._first_scan = False
        return set(seen)

    def _open(self, key: str, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            log.warning("cannot open %s: %s", path, exc)
            return
        st = os.fstat(fd)
        if f"{st.st_dev}:{st.st_ino}" != key:  # replaced between stat and open
            os.close(fd)
            return
        fp, fp_len = file_fingerprint(fd, self.cfg.fingerprint_bytes)
        start, skips = self._start_offset(key, fd, st.st_size, fp_len)
        fpos = self.positions.register(key, path, start, fp, fp_len, skips)
        extra = {"filename": path} if self.cfg.filename_label else {}
        self.files[key] = Tracked(key, path, fd, self.spec.new(extra), start, start, start,
                                  skips=[(s, e) for s, e, _ in fpos.pending],
                                  fp_len=fp_len, fp=fp)
        log.info("tailing %s from offset %d", path, start)

    def _start_offset(self, key: str, fd: int, size: int,
                      fp_len: int) -> tuple[int, list[tuple[int, int]]]:
        saved = self.positions.saved(key)
        if saved is not None:
            n = int(str(saved.get("fp_len", 0)))
            same = n <= fp_len and file_fingerprint(fd, n)[0] == saved.get("fp")
            offset = int(str(saved.get("offset", 0)))
            if same and offset <= size:
                ranges: list[list[int]] = saved.get("done") or []  # type: ignore[assignment]
                return offset, [(int(s), int(e)) for s, e in ranges if int(e) <= size]
            log.info("saved position of %s does not match the file any more; rereading", key)
            return 0, []
        # New files found after startup are read from the start: they are usually the
        # fresh file of a rotation, and skipping them would lose its first lines.
        if self._first_scan and self.cfg.start_at == "end":
            return size, []
        return 0, []

    # -- reading ---------------------------------------------------------------------------
    def _rewritten(self, t: Tracked) -> bool:
        """Shrunk below what we read, or different first bytes: truncated in place."""
        if os.fstat(t.fd).st_size < t.read_pos:
            return True
        return bool(t.fp_len) and file_fingerprint(t.fd, t.fp_len)[0] != t.fp

    def _fill(self, t: Tracked) -> int:
        """Read the next chunk into `t.lines`; returns bytes read."""
        if t.at_eof:
            # New data after a pause: check first that it is not a truncated-and-regrown
            # file, or we would read from the middle of the new content.
            t.at_eof = False
            if self._rewritten(t):
                self._truncated(t)
        want = self.cfg.read_bytes
        if t.skips and t.skips[0][0] <= t.read_pos:
            # Lines in a done range are already acked or spilled: jump over them.
            if t.pipeline.stateful:
                self._deliver(t, Records.empty(), t.line_pos, 0, final=True)
            t.read_pos = t.line_pos = max(t.read_pos, t.skips[0][1])
            t.mark = max(t.mark, t.read_pos)
            t.skips.pop(0)
        if t.skips:
            want = min(want, t.skips[0][0] - t.read_pos)
        data = os.pread(t.fd, want, t.read_pos)
        if not data:
            t.at_eof = True
            return 0
        t.read_pos += len(data)
        buf = t.partial + data if t.partial else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            t.partial = buf
            if len(buf) > self.cfg.max_line_bytes:  # never stall a file on one huge line
                self._take_partial(t)
        else:
            t.lines.extend(buf[:cut].split(b"\n"))
            t.partial = buf[cut + 1:]
        self.stats.add(bytes_read=len(data))
        self.positions.update(t.key, read_pos=t.read_pos, size=os.fstat(t.fd).st_size)
        return len(data)

    @staticmethod
    def _take_partial(t: Tracked) -> None:
        """Emit the bytes after the last newline as a line of their own (a huge line, or
        the end of a file being released); it has no newline byte to count."""
        if t.partial:
            t.lines.append(t.partial)
            t.partial = b""
            t.unterminated = True

    def _piece(self, t: Tracked) -> None:
        """Emit up to one batch worth of lines from `t.lines`."""
        n = min(len(t.lines), self.max_lines)
        piece = t.lines[:n]
        nbytes = sum(map(len, piece)) + n
        while nbytes > self.max_bytes and n > 1:
            n = max(1, n // 2)
            piece = t.lines[:n]
            nbytes = sum(map(len, piece)) + n
        if t.unterminated and n == len(t.lines):
            nbytes -= 1
            t.unterminated = False
        del t.lines[:n]
        # One decode and one split for the whole piece: no Python work per line.
        lines = b"\n".join(piece).decode("utf-8", "replace").split("\n")
        # Distinct, increasing stamps: Loki drops an identical line with an identical stamp.
        base = max(time.time_ns(), self._next_ts)
        self._next_ts = base + n
        recs = Records(list(range(base, base + n)), lines)
        start = t.line_pos
        if t.pipeline.stateful:
            recs.starts = list(itertools.accumulate((len(b) + 1 for b in piece[:-1]),
                                                    initial=start))
        t.line_pos = start + nbytes
        self._deliver(t, recs, t.line_pos, n)

    def _deliver(self, t: Tracked, recs: Records, end: int, nread: int,
                 final: bool = False) -> None:
        out = t.pipeline.run(recs, final)
        held = t.pipeline.held_from()
        safe = end if held is None else min(held, end)
        ck: list[Checkpoint] = []
        if safe > t.mark:
            gen = self.positions.gen(t.key)
            self.positions.add(t.key, t.mark, safe)
            ck.append((t.key, gen, t.mark, safe))
            t.mark = safe
        if nread:
            self.stats.add(lines_read=nread)
        streams = t.pipeline.to_streams(out)
        if streams or ck:
            self.emit(streams, len(out), sum(map(len, out.lines)) if out.lines else 0, ck)

    def _check_idle(self, t: Tracked, now: float) -> bool:
        """At EOF: detect truncation, release rotated/deleted files; True if released."""
        try:
            st = os.fstat(t.fd)
        except OSError:
            return self._release(t)
        if st.st_size < t.read_pos:
            self._truncated(t)
            return False
        if t.fp_len < self.cfg.fingerprint_bytes and st.st_size > t.fp_len:
            t.fp, t.fp_len = file_fingerprint(t.fd, self.cfg.fingerprint_bytes)
            self.positions.update(t.key, fp=t.fp, fp_len=t.fp_len)
        self.positions.update(t.key, size=st.st_size, read_pos=t.read_pos)
        gone = t.gone_since is not None or st.st_nlink == 0
        if gone and t.gone_since is None:
            t.gone_since = now
        if gone and t.gone_since is not None and now - t.gone_since >= self.cfg.rotate_wait:
            return self._release(t)
        return False

    def _truncated(self, t: Tracked) -> None:
        log.warning("file %s was truncated (copytruncate?); reading it from the start", t.path)
        self.stats.add(file_truncations=1)
        self._take_partial(t)
        while t.lines:
            self._piece(t)
        fp, fp_len = file_fingerprint(t.fd, self.cfg.fingerprint_bytes)
        self.positions.restart(t.key, fp, fp_len)
        t.read_pos = t.mark = t.line_pos = 0
        t.partial, t.skips, t.fp, t.fp_len, t.unterminated = b"", [], fp, fp_len, False

    def _release(self, t: Tracked) -> bool:
        self._take_partial(t)  # the last line of a finished file may lack its newline
        while t.lines:
            self._piece(t)
        self._deliver(t, Records.empty(), t.line_pos, 0, final=True)
        os.close(t.fd)
        del self.files[t.key]
        self.positions.release(t.key)
        log.info("released %s", t.path)
        return True

    def step(self) -> bool:
        """One round over all files; returns whether anything was read or emitted."""
        now = time.monotonic()
        if now - self._last_scan >= self.cfg.glob_interval:
            self.scan()
        busy = False
        for t in list(self.files.values()):
            if self.stop.is_set():
                break
            if not t.lines and self._fill(t) == 0:
                if t.pipeline.stateful:  # let joiners release what waited too long
                    self._deliver(t, Records.empty(), t.line_pos, 0)
                self._check_idle(t, now)
                continue
            busy = True
            for _ in range(4):  # a few batches per file per round keeps files fair
                if not t.lines and self._fill(t) == 0:
                    break
                if t.lines:
                    self._piece(t)
        return busy

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                busy = self.step()
            except Exception:  # one bad file must not end tailing for all of them
                log.exception("file input error")
                busy = False
            if not busy:
                self.stop.wait(self.cfg.poll_interval)

    def close(self) -> None:
        for t in list(self.files.values()):
            os.close(t.fd)
        self.files.clear()
