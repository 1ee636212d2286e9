"""File input: glob, tail, follow rotation (rename and copytruncate), release deleted files.

One thread per `file` input. Each round it reads every tracked file in large chunks,
splits complete lines with one `bytes.split`, decodes a piece with one `decode`, and hands
the piece to the pipeline and then the batcher. When the queue blocks, `emit` blocks and
this loop stops reading: the file itself is the buffer.

Truncation (copytruncate): every read is checked before its bytes are used: the file
must not have shrunk below the largest size seen, and its first bytes must still match
the fingerprint. While the reader waits on a full queue a watcher thread keeps making
that check and counts the newlines the reader has not reached yet, so a truncation
during an outage is noticed when it happens and the lines it takes are counted lost.
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
from typing import Protocol

import numpy as np
import orjson

from sluiceway.agent._config import FileInput
from sluiceway.agent._pipeline import Pipeline, PipelineSpec
from sluiceway.agent._positions import Checkpoint, Positions
from sluiceway.agent._records import Piece, Records
from sluiceway.agent._stats import Stats
from sluiceway.agent._targets import Targets
from sluiceway.model import LedgerGroup, runs_of
from sluiceway.wire import utf8_lines

log = logging.getLogger("sluiceway.agent")
# What a line a client's file sink numbered contains (lineage).
_MARK = b'"_seq":'


class Emit(Protocol):
    """The batcher's `add`: pieces of `lines` lines (`nbytes` of text) and the file
    ranges they finish; `can_wait` when the input can read them again (a file);
    `numbers`: the ledger's numbers of those lines (ARCHITECTURE.md §ledger)."""

    def __call__(self, pieces: list[Piece], lines: int, nbytes: int,
                 checkpoints: list[Checkpoint], can_wait: bool = False,
                 numbers: list[LedgerGroup] | None = None) -> None: ...


def numbers_of(source: str, epoch: str, seqs: list[int] | None) -> list[LedgerGroup]:
    return [LedgerGroup(source, epoch, runs_of(seqs))] if seqs else []


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
    # done ranges to jump over: (start, end, first number, end number)
    skips: list[tuple[int, int, int, int]] = field(default_factory=list)
    gone_since: float | None = None
    fp_len: int = 0
    fp: str = ""
    unterminated: bool = False  # the last entry of `lines` has no newline after it
    # Truncation: the largest size seen of this content (a smaller one means truncated).
    seen_size: int = 0
    # Newlines consumed by the reader, and newlines counted ahead of it by the watcher up
    # to `ahead_end`, both from the same origin; `ahead_tail` bytes follow the last one.
    nl_read: int = 0
    ahead_end: int = 0
    nl_ahead: int = 0
    ahead_tail: int = 0
    cut: bool = False  # truncated: start over at 0 before reading on
    cuts: int = 0
    gen: int = 0  # positions generation of the content read (a truncation starts a new one)
    line_no: int = 0  # the ledger's number of `lines[0]` (with a joiner: the next entry's)
    num_mark: int = 0  # with a joiner: the number at `mark`
    epoch: str = ""
    lineage: bool = False  # lines carry a client's numbers (`_src`, `_ep`, `_seq`)


class FileTailer:
    def __init__(self, cfg: FileInput, positions: Positions, emit: Emit, stats: Stats,
                 max_lines: int, max_bytes: int, stop: threading.Event,
                 source: str = "",
                 inherit: Callable[[list[LedgerGroup]], None] | None = None) -> None:
        self.cfg = cfg
        self.source = source  # the ledger's source id of this input
        self.inherit = inherit  # told the client numbers read (lineage)
        self.positions = positions
        self.emit = emit
        self.stats = stats
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.stop = stop
        # Stream labels come from each target (the input's labels, relabeled).
        self.spec = PipelineSpec(list(cfg.pipeline), {})
        self.targets = Targets(cfg)
        self.files: dict[str, Tracked] = {}
        self._first_scan = True
        self._last_scan = 0.0
        self._next_ts = 0
        # Guards `files` and each file's descriptor and truncation state between the
        # reader and the watcher; never held while emitting (emit may block).
        self._lock = threading.Lock()
        self.emitting_since: float | None = None
        self.emitting_lines = 0  # numbered lines on their way into the batcher
        # A pause point for tests: runs in every look at a file between its stat and the
        # read of its first bytes (a truncation can land just there).
        self.look_hook: Callable[[Tracked], None] | None = None

    # -- discovery -------------------------------------------------------------------------
    def _matches(self) -> dict[str, tuple[os.stat_result, dict[str, str]]]:
        found: dict[str, tuple[os.stat_result, dict[str, str]]] = {}
        for target in self.targets.current():
            for path in glob.glob(target.path, recursive=True):
                if path in found or any(fnmatch(path, ex) for ex in self.cfg.exclude):
                    continue
                if target.exclude is not None and fnmatch(path, target.exclude):
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if os.path.isfile(path):
                    found[path] = (st, target.labels)
        return found

    def scan(self) -> set[str]:
        """Pick up new files, notice rotated-away and deleted ones; returns the keys seen."""
        self._last_scan = time.monotonic()
        matches = self._matches()
        seen: dict[str, str] = {}
        for path, (st, labels) in sorted(matches.items()):
            key = f"{st.st_dev}:{st.st_ino}"
            seen[key] = path
            t = self.files.get(key)
            if t is None:
                if not self.positions.tracked(key):  # else another input tails it
                    self._open(key, path, labels)
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

    def _open(self, key: str, path: str, labels: dict[str, str]) -> None:
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
        start, skips, ledger = self._start_offset(key, fd, st.st_size, fp_len, path)
        fpos = self.positions.register(key, path, start, fp, fp_len, skips,
                                       source=self.source, ledger=ledger,
                                       numbered=bool(self.source))
        extra = {**labels, "filename": path} if self.cfg.filename_label else dict(labels)
        with self._lock:
            t = self.files[key] = Tracked(
                key, path, fd, self.spec.new(extra), start, start, start,
                skips=[(s, e, a, b) for s, e, _, a, b in fpos.pending], fp_len=fp_len,
                fp=fp, seen_size=st.st_size, gen=fpos.gen, line_no=fpos.line,
                num_mark=fpos.line, epoch=fpos.epoch)
            if self.source and t.pipeline.stateful:  # the entry is the unit
                t.pipeline.set_numbering(lambda: self._next_entry(t))
        log.info("tailing %s from offset %d", path, start)

    @staticmethod
    def _next_entry(t: Tracked) -> int:
        """With a joiner: the number of an entry it opens (on the reader's thread)."""
        n = t.line_no
        t.line_no = n + 1
        return n

    def _start_offset(self, key: str, fd: int, size: int, fp_len: int, path: str
                      ) -> tuple[int, list[tuple[int, int, int, int]], dict[str, object] | None]:
        """Where to start, the done ranges to jump over, and the saved ledger figures of
        this content (None: its numbering starts now, a new epoch)."""
        saved = self.positions.saved(key)
        if saved is not None:
            n = int(str(saved.get("fp_len", 0)))
            same = n <= fp_len and file_fingerprint(fd, n)[0] == saved.get("fp")
            offset = int(str(saved.get("offset", 0)))
            if same and offset <= size:
                ranges: list[list[int]] = saved.get("done") or []  # type: ignore[assignment]
                done = [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) if len(r) >= 4
                        else (int(r[0]), int(r[1]), -1, -1) for r in ranges]
                known = "epoch" in saved and all(a >= 0 for _, _, a, _ in done)
                return (offset, [d for d in done if d[1] <= size],
                        saved if known else None)
            log.info("saved position of %s does not match the file any more; rereading", key)
            return 0, [], None
        imported = self.positions.imported(path)
        if imported is not None:
            if imported <= size:
                log.info("%s: starting at offset %d from the Promtail positions file",
                         path, imported)
                return imported, [], None
            log.info("%s is smaller than its Promtail position %d (truncated or replaced "
                     "since); reading it from the start", path, imported)
            return 0, [], None
        # New files found after startup are read from the start: they are usually the
        # fresh file of a rotation, and skipping them would lose its first lines.
        if self._first_scan and self.cfg.start_at == "end":
            return size, [], None
        return 0, [], None

    # -- truncation ------------------------------------------------------------------------
    def _look(self, t: Tracked) -> os.stat_result:
        """Stat the open file and note a truncation: smaller than the largest size seen,
        or other first bytes. The caller holds the lock."""
        st = os.fstat(t.fd)
        if self.look_hook is not None:
            self.look_hook(t)
        if st.st_size < t.seen_size or (
                t.fp_len and file_fingerprint(t.fd, t.fp_len)[0] != t.fp):
            self._note_cut(t)
            return st
        t.seen_size = st.st_size
        if t.fp_len < self.cfg.fingerprint_bytes and st.st_size > t.fp_len:
            t.fp, t.fp_len = file_fingerprint(t.fd, self.cfg.fingerprint_bytes)
            self.positions.update(t.key, fp=t.fp, fp_len=t.fp_len)
        return st

    @staticmethod
    def _reader_at(t: Tracked) -> tuple[int, int, int]:
        """Where the reader goes on: offset, bytes of its unfinished line, newlines read."""
        return (0, 0, 0) if t.cut else (t.read_pos, len(t.partial), t.nl_read)

    def _lag(self, t: Tracked) -> int | None:
        """Whole lines between the read offset and the size seen, when the watcher has
        counted that far (only while the reader waits; None otherwise)."""
        pos, _, nl = self._reader_at(t)
        if pos <= t.ahead_end == t.seen_size:
            return t.nl_ahead - nl
        return None

    def _note_cut(self, t: Tracked) -> None:
        """Count what the truncation took before the reader got to it; the reader starts
        over at 0 before it reads on. The caller holds the lock."""
        pos, plen, nl = self._reader_at(t)
        end, counted = pos, 0
        if t.ahead_end >= pos:
            end, counted = t.ahead_end, t.nl_ahead - nl
        tail = t.ahead_tail if counted else plen + end - pos
        # Whole lines counted ahead, plus the line cut short at the end (or, past what was
        # counted, at least one more): exact when the watcher had counted to the old end.
        lines = counted + (1 if tail > 0 or t.seen_size > end else 0)
        skipped = sum(min(e, t.seen_size) - max(s, pos) for s, e, _, _ in t.skips
                      if e > pos and s < t.seen_size) if not t.cut else 0
        nbytes = t.seen_size - pos + plen - skipped
        self.stats.add(file_truncations=1, truncated_bytes_lost=nbytes)
        self.stats.lost("truncated", lines)
        log.warning("file %s was truncated (copytruncate?) at %d bytes, %d of them not read "
                    "yet: %d lines lost (reason truncated); reading it again from the start",
                    t.path, t.seen_size, nbytes, lines)
        t.cut = True
        t.cuts += 1
        # The new content's first bytes and size are taken now, after the truncation: the
        # caller's stat may predate it (truncated between that stat and the read of the
        # first bytes), and the old size taken as the new one makes the next look see a
        # second truncation that never happened.
        t.fp, t.fp_len = file_fingerprint(t.fd, self.cfg.fingerprint_bytes)
        size = os.fstat(t.fd).st_size
        t.seen_size = size
        t.ahead_end = t.nl_ahead = t.ahead_tail = 0
        # The saved position restarts now (offset 0, the new fingerprint): an agent
        # stopped before the reader gets here must not resume at the old offset. Lines
        # of the old content still flowing keep the old generation and move nothing.
        self.positions.restart(t.key, t.fp, t.fp_len)
        self.positions.update(t.key, read_pos=0, size=size, lag_lines=None)

    def _restart(self, t: Tracked) -> None:
        """After a truncation: drop the unfinished line (counted lost) and read from 0.
        Lines already read keep flowing; the caller emitted them all before."""
        if t.pipeline.stateful:  # a record held by a joiner ends with the old content
            self._deliver(t, Records.empty(), t.line_pos, 0, final=True)
        with self._lock:
            t.gen = self.positions.gen(t.key)
            t.epoch = self.positions.snapshot_of(t.key).epoch
            t.line_no = t.num_mark = 0
            t.read_pos = t.mark = t.line_pos = t.nl_read = 0
            t.partial, t.skips, t.unterminated, t.cut = b"", [], False, False
            self.positions.update(t.key, read_pos=0, size=t.seen_size, lag_lines=self._lag(t))

    def waiting(self) -> float:
        """Seconds the reader has been waiting for room in the queue (0: reading)."""
        since = self.emitting_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    def pending(self) -> dict[str, int]:
        """Per file: lines read but not handed to the queue yet (waiting in the reader)."""
        with self._lock:
            return {key: len(t.lines) for key, t in self.files.items()}

    def _count_ahead(self, t: Tracked, budget: int) -> int:
        """Count newlines past the reader, up to `budget` bytes, checking after each chunk
        that it still belongs to the same content; returns the budget left. The caller
        holds the lock."""
        pos, plen, nl = self._reader_at(t)
        if t.ahead_end < pos:
            t.ahead_end, t.nl_ahead, t.ahead_tail = pos, nl, plen
        limit = t.seen_size
        if t.skips and not t.cut:  # done ranges are durable already: stop before them
            limit = min(limit, max(t.ahead_end, t.skips[0][0]))
        while t.ahead_end < limit and budget > 0:
            cuts = t.cuts
            want = min(self.cfg.read_bytes, limit - t.ahead_end, budget)
            chunk = os.pread(t.fd, want, t.ahead_end)
            self._look(t)
            if not chunk or t.cuts != cuts:
                break
            budget -= len(chunk)
            n = chunk.count(b"\n")
            t.nl_ahead += n
            t.ahead_tail = len(chunk) - chunk.rfind(b"\n") - 1 if n else t.ahead_tail + len(chunk)
            t.ahead_end += len(chunk)
        return budget

    def _watch(self) -> None:
        """While the reader waits on a full queue, look at its files every poll_interval
        and count up to `8 * read_bytes` of what it has not read (all files together)."""
        tick = self.cfg.poll_interval
        while not self.stop.wait(tick):
            since = self.emitting_since
            if since is None or time.monotonic() - since < tick:
                continue
            budget = 8 * self.cfg.read_bytes
            with self._lock:
                tracked = list(self.files.values())
            for t in tracked:
                with self._lock:
                    if self.files.get(t.key) is not t:  # released meanwhile
                        continue
                    try:
                        self._look(t)
                        budget = self._count_ahead(t, budget)
                    except OSError as exc:
                        log.debug("watching %s: %s", t.path, exc)
                        continue
                    self.positions.update(t.key, size=t.seen_size, lag_lines=self._lag(t))

    # -- reading ---------------------------------------------------------------------------
    def _fill(self, t: Tracked) -> int:
        """Read the next chunk into `t.lines`; returns bytes read, -1 when the file turned
        out truncated (nothing taken; the next call starts over at 0)."""
        if t.cut:
            self._restart(t)
        want = self.cfg.read_bytes
        if t.skips and t.skips[0][0] <= t.read_pos:
            # Lines in a done range are already acked or spilled: jump over them.
            if t.pipeline.stateful:
                self._deliver(t, Records.empty(), t.line_pos, 0, final=True)
            with self._lock:
                t.read_pos = t.line_pos = max(t.read_pos, t.skips[0][1])
                t.mark = max(t.mark, t.read_pos)
                if t.skips[0][3] >= 0:  # the numbers go on after the range's
                    t.line_no = max(t.line_no, t.skips[0][3])
                    t.num_mark = max(t.num_mark, t.line_no)
                t.skips.pop(0)
        if t.skips:
            want = min(want, t.skips[0][0] - t.read_pos)
        data = os.pread(t.fd, want, t.read_pos)
        with self._lock:
            # Checked after the read, before the bytes are used: read at a stale offset of
            # a file truncated and rewritten meanwhile, they would be pieces of new lines.
            st = self._look(t)
            if t.cut:
                return -1
            if not data:
                self.positions.update(t.key, size=st.st_size, lag_lines=self._lag(t))
                return 0
            t.read_pos += len(data)
            if not t.lineage and self.source and _MARK in data:
                t.lineage = True  # a client's file sink wrote it: lines keep its numbers
            buf = t.partial + data if t.partial else data
            if buf.rfind(b"\n") < 0:
                t.partial = buf
                if len(buf) > self.cfg.max_line_bytes:  # never stall a file on one huge line
                    self._take_partial(t)
            else:
                done = buf.split(b"\n")
                t.partial = done.pop()
                t.nl_read += len(done)
                # Lines go out as the bytes they are: valid UTF-8 is checked once for the
                # whole read (one pass over ASCII text); invalid bytes become U+FFFD.
                t.lines.extend(done if buf.isascii() else utf8_lines(done))
            self.positions.update(t.key, size=st.st_size, read_pos=t.read_pos,
                                  lag_lines=self._lag(t))
        self.stats.add(bytes_read=len(data))
        return len(data)

    @staticmethod
    def _take_partial(t: Tracked) -> None:
        """Emit the bytes after the last newline as a line of their own (a huge line, or
        the end of a file being released); it has no newline byte to count."""
        if t.partial:
            t.lines.extend(utf8_lines([t.partial]))
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
        # Distinct, increasing stamps: Loki drops an identical line with an identical stamp.
        base = max(time.time_ns(), self._next_ts)
        self._next_ts = base + n
        start = t.line_pos
        t.line_pos = start + nbytes
        first = t.line_no
        if t.pipeline.plain:  # no stages: the bytes as read are the lines on the wire
            ts = np.arange(base, base + n, dtype=np.int64)
            nums: list[LedgerGroup] | None = None
            own = n
            if t.lineage:
                nums, own = self._inherited(piece, t.epoch, first)
            elif self.source:
                nums = [LedgerGroup(self.source, t.epoch, [(first, first + n)])]
            t.line_no += own
            self._emit(t, [Piece(t.pipeline.labels, ts, piece)], n, nbytes - n,
                       t.line_pos, n, nums, (first, first + own))
            return
        # One decode and one split for the whole piece: no Python work per line.
        lines = b"\n".join(piece).decode("utf-8", "replace").split("\n")
        recs = Records(list(range(base, base + n)), lines)
        if t.pipeline.stateful:  # entries are numbered by the last joiner
            recs.starts = list(itertools.accumulate((len(b) + 1 for b in piece[:-1]),
                                                    initial=start))
        else:
            t.line_no += n
            if self.source:
                recs.seqs = list(range(first, first + n))
        self._deliver(t, recs, t.line_pos, n, numbers=(first, first + n))

    def _inherited(self, piece: list[bytes], epoch: str,
                   first: int) -> tuple[list[LedgerGroup], int]:
        """Lineage: lines a client's file sink numbered keep their numbers; the others
        get this input's (returns the groups in line order, and how many were ours)."""
        keys: list[tuple[str, str, int] | None] = []
        for line in piece:
            key = None
            if _MARK in line:
                try:
                    rec = orjson.loads(line)
                    key = (str(rec["_src"]), str(rec["_ep"]), int(rec["_seq"]))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    key = None
            keys.append(key)
        groups: list[LedgerGroup] = []
        inherited: list[LedgerGroup] = []
        own = 0
        i = 0
        while i < len(keys):
            k = keys[i]
            j = i
            if k is None:
                while j < len(keys) and keys[j] is None:
                    j += 1
                groups.append(LedgerGroup(self.source, epoch, [(first + own,
                                                                first + own + j - i)]))
                own += j - i
            else:
                while j < len(keys) and keys[j] is not None and keys[j][:2] == k[:2]:  # type: ignore[index]
                    j += 1
                g = LedgerGroup(k[0], k[1], runs_of(x[2] for x in keys[i:j] if x))
                groups.append(g)
                inherited.append(g)
            i = j
        if inherited and self.inherit is not None:
            self.inherit(inherited)
        return groups, own

    def _deliver(self, t: Tracked, recs: Records, end: int, nread: int,
                 final: bool = False, numbers: tuple[int, int] = (0, 0)) -> None:
        seqs = recs.seqs
        out = t.pipeline.run(recs, final)
        if t.pipeline.numbering:
            seqs = t.pipeline.joined
        pieces = t.pipeline.to_pieces(out)
        nbytes = sum(len(line) for p in pieces for line in p.lines)
        nums = None
        if seqs is not None and out.seqs is not None:
            nums = numbers_of(self.source, t.epoch, out.seqs)
            if len(out.seqs) < len(seqs):  # a drop stage: lost on purpose, by number
                gone = sorted(set(seqs) - set(out.seqs))
                self.positions.lose(t.epoch, "filtered", runs_of(gone))
        self._emit(t, pieces, len(out), nbytes, end, nread, nums, numbers)

    def _emit(self, t: Tracked, pieces: list[Piece], lines: int, nbytes: int, end: int,
              nread: int, numbers: list[LedgerGroup] | None = None,
              span: tuple[int, int] = (0, 0)) -> None:
        held = t.pipeline.held_from()
        safe = end if held is None else min(held, end)
        ck: list[Checkpoint] = []
        if safe > t.mark:
            if t.pipeline.numbering:  # the entries that start in [mark, safe)
                seq = t.pipeline.held_seq()
                first, stop = t.num_mark, t.line_no if seq is None else seq
                t.num_mark = stop
            else:
                first, stop = span if held is None else (0, 0)
            self.positions.add(t.key, t.gen, t.mark, safe, first, stop)
            ck.append((t.key, t.gen, t.mark, safe, first, stop))
            t.mark = safe
        if nread:
            self.stats.add(lines_read=nread)
        if pieces or ck:
            self.emitting_since = time.monotonic()  # the watcher looks while this blocks
            self.emitting_lines = sum(g.lines for g in numbers) if numbers else 0
            try:
                if numbers:
                    self.emit(pieces, lines, nbytes, ck, True, numbers)
                else:
                    self.emit(pieces, lines, nbytes, ck, True)
            finally:
                self.emitting_since = None
                self.emitting_lines = 0

    def _check_idle(self, t: Tracked, now: float) -> bool:
        """At EOF: release rotated/deleted files; True if released."""
        try:
            st = os.fstat(t.fd)
        except OSError:
            return self._release(t)
        gone = t.gone_since is not None or st.st_nlink == 0
        if gone and t.gone_since is None:
            t.gone_since = now
        if gone and t.gone_since is not None and now - t.gone_since >= self.cfg.rotate_wait:
            return self._release(t)
        return False

    def _release(self, t: Tracked) -> bool:
        self._take_partial(t)  # the last line of a finished file may lack its newline
        while t.lines:
            self._piece(t)
        self._deliver(t, Records.empty(), t.line_pos, 0, final=True)
        with self._lock:
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
        threading.Thread(target=self._watch, name="agent-tail-watch", daemon=True).start()
        while not self.stop.is_set():
            try:
                busy = self.step()
            except Exception:  # one bad file must not end tailing for all of them
                log.exception("file input error")
                busy = False
            if not busy:
                self.stop.wait(self.cfg.poll_interval)

    def close(self) -> None:
        with self._lock:
            for t in self.files.values():
                os.close(t.fd)
            self.files.clear()
