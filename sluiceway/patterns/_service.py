"""The pattern ingester: every stored push is mined for patterns off the request path.

`offer` only appends the push's WAL record (the bytes already made for the WAL, shared,
not copied; `decode` turns it into blocks) to a queue bounded in bytes; a push that does
not fit is not mined, and its lines are counted in `skipped` (`queue_full`). A feeder
thread hands the queue on:

- to a miner *process* (a real server: `sluiceway server`), a fresh interpreter (no
  fork of the server's memory, no multiprocessing helper process), at the lowest
  priority and killed with the server: mining (Python work
  per line) never takes the server's GIL, and under heavy ingest it gets only spare CPU,
  falls behind and skips pushes rather than slowing them;
- or to a miner in a thread of this process (an app built in-process, as tests do).

Queries go to the same miner and wait for their answer (`query_timeout`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from sluiceway.model import EntryBlock, Matcher
from sluiceway.patterns._miner import MinerConfig, PatternMiner, PatternSeries

log = logging.getLogger("sluiceway.patterns")
PRUNE_EVERY_S = 60.0
_PR_SET_PDEATHSIG = 1
# A WAL record → (tenant, blocks); module-level, so it pickles to the miner process.
Decode = Callable[[bytes], tuple[str, list[EntryBlock]]]


class MinerUnavailable(RuntimeError):
    """The miner process is gone or did not answer in time (HTTP 503)."""


class _Miner:
    """A `PatternMiner` behind a lock, pruned now and then."""

    def __init__(self, cfg: MinerConfig, decode: Decode) -> None:
        self.miner = PatternMiner(cfg)
        self.decode = decode
        self.lock = threading.Lock()
        self._pruned = time.monotonic()

    def consume(self, payload: bytes) -> None:
        tenant, blocks = self.decode(payload)
        with self.lock:
            for b in blocks:
                self.miner.add(tenant, b)
        self.tick()

    def tick(self) -> None:
        if time.monotonic() - self._pruned > PRUNE_EVERY_S:
            with self.lock:
                self.miner.prune()
            self._pruned = time.monotonic()

    def query(self, req: tuple[list[str], list[Matcher], int, int, int]) -> list[PatternSeries]:
        with self.lock:
            return self.miner.query(*req)


def _die_with_parent() -> None:
    """Ctrl-C and SIGTERM are the server's to handle; the kernel kills this process when
    the server dies (Linux), else it exits when its pipes close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the server died before the line above
        os._exit(0)


def _child_main(cfg: MinerConfig, decode: Decode, records: Connection,
                queries: Connection) -> None:
    """The miner process: one thread mines what arrives, the main one answers queries."""
    _die_with_parent()
    # Linux's SCHED_IDLE: run only on CPU nobody else wants (below even nice 19, which
    # still takes a share from busy ingest workers); elsewhere the lowest nice.
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)
    miner = _Miner(cfg, decode)

    def feed() -> None:
        while True:
            try:
                if not records.poll(PRUNE_EVERY_S):
                    miner.tick()
                    continue
                payload = records.recv_bytes()
            except (EOFError, OSError):
                os._exit(0)
            try:
                miner.consume(payload)
            except Exception:  # a bug must not stop mining
                log.exception("pattern mining failed for a push")

    threading.Thread(target=feed, name="pattern-miner", daemon=True).start()
    while True:
        try:
            req = queries.recv()
        except (EOFError, OSError):
            os._exit(0)
        try:
            queries.send(("ok", [(p.pattern, p.level, p.samples) for p in miner.query(req)]))
        except Exception as exc:  # a bug must not take the miner down
            queries.send(("error", repr(exc)))


class _MinerProcess:
    """The miner's process (`kill`, `join`)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def kill(self) -> None:
        self.popen.kill()

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)


# The miner's interpreter: this one's import path, then the entry point.
_CHILD_CODE = ("import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
               "from sluiceway.patterns._service import _child_entry; _child_entry()")


def _start_miner(cfg: MinerConfig, decode: Decode
                 ) -> tuple[_MinerProcess, Connection, Connection]:
    """Start the miner: a new interpreter (subprocess, safe from a threaded server) that
    gets its two pipes as inherited descriptors and its settings as the first message.
    Not multiprocessing's `spawn`, which also starts its resource tracker process."""
    rec_r, rec_w = multiprocessing.Pipe(duplex=False)
    q_parent, q_child = multiprocessing.Pipe()
    fds = (rec_r.fileno(), q_child.fileno())
    try:
        popen = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CODE, json.dumps(sys.path), *map(str, fds)],
            pass_fds=fds, stdin=subprocess.DEVNULL)
    finally:
        rec_r.close()
        q_child.close()
    q_parent.send((cfg, decode))
    return _MinerProcess(popen), rec_w, q_parent


def _child_entry() -> None:
    """`python -c _CHILD_CODE paths records_fd queries_fd`: the miner process."""
    records = Connection(int(sys.argv[2]), writable=False)
    queries = Connection(int(sys.argv[3]))
    try:
        cfg, decode = queries.recv()
    except (EOFError, OSError):
        os._exit(0)
    _child_main(cfg, decode, records, queries)


class PatternService:
    def __init__(self, cfg: MinerConfig, decode: Decode, in_process: bool,
                 query_timeout: float = 60.0) -> None:
        self.cfg = cfg
        self.max_queued_bytes = cfg.ingester.max_queued_bytes
        self.query_timeout = query_timeout or 60.0
        self.skipped: Counter[str] = Counter()  # lines of pushes not mined, by reason
        self._queue: deque[tuple[bytes, int]] = deque()
        self._queued_bytes = 0
        self.peak_queued_bytes = 0  # the most the queue held
        self._in_flight = 0  # the push the feeder holds
        self._cond = threading.Condition()
        self._closed = False
        self._query_lock = threading.Lock()
        self._local: _Miner | None = None
        self._proc: Any = None
        self._records: Connection | None = None
        self._queries: Connection | None = None
        if in_process:
            self._local = _Miner(cfg, decode)
        else:
            self._proc, self._records, self._queries = _start_miner(cfg, decode)
        self._feeder = threading.Thread(target=self._feed, name="pattern-feeder", daemon=True)
        self._feeder.start()

    # -- the push side --------------------------------------------------------------

    def offer(self, payload: bytes, lines: int) -> None:
        """Queue a stored push for mining; never blocks."""
        with self._cond:
            if self._queued_bytes + len(payload) > self.max_queued_bytes and self._queue:
                self.skipped["queue_full"] += lines
                return
            self._queue.append((payload, lines))
            self._queued_bytes += len(payload)
            self.peak_queued_bytes = max(self.peak_queued_bytes, self._queued_bytes)
            self._cond.notify()

    def _feed(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(PRUNE_EVERY_S)
                if self._closed:
                    return
                item = self._queue.popleft() if self._queue else None
                if item is not None:
                    self._queued_bytes -= len(item[0])
                    self._in_flight = 1
            if item is None:  # idle: a chance to prune (never while holding the queue)
                if self._local is not None:
                    self._local.tick()
                continue
            payload, lines = item
            try:
                if self._local is not None:
                    self._local.consume(payload)
                else:
                    assert self._records is not None
                    self._records.send_bytes(payload)
            except (OSError, ValueError) as exc:
                self.skipped["miner_down"] += lines
                log.debug("pattern miner did not take a push: %s", exc)
            except Exception:
                self.skipped["miner_error"] += lines
                log.exception("pattern mining failed for a push")
            finally:
                self._in_flight = 0

    @property
    def queued_bytes(self) -> int:
        """Bytes of pushes waiting for the miner."""
        return self._queued_bytes

    def pending(self) -> int:
        """Pushes queued or being handed over: not yet mined (in-process) or not yet with
        the miner process."""
        with self._cond:
            return len(self._queue) + self._in_flight

    # -- the query side -------------------------------------------------------------

    def query(self, tenants: list[str], matchers: list[Matcher], start: int, end: int,
              step: int) -> list[PatternSeries]:
        req = (tenants, matchers, start, end, step)
        if self._local is not None:
            return self._local.query(req)
        assert self._queries is not None
        with self._query_lock:
            try:
                self._queries.send(req)
                if not self._queries.poll(self.query_timeout):
                    raise MinerUnavailable("the pattern miner did not answer in time")
                status, body = self._queries.recv()
            except (OSError, EOFError) as exc:
                raise MinerUnavailable(f"the pattern miner is not running: {exc}") from None
        if status != "ok":
            raise MinerUnavailable(f"the pattern miner failed: {body}")
        return [PatternSeries(p, lvl, s) for p, lvl, s in body]

    def close(self) -> None:
        """Stop at once: patterns live in memory only (as in Loki), so the miner is killed
        rather than waited for, which also frees a feeder blocked on a full pipe."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(timeout=5)
        self._feeder.join(timeout=5)
        for conn in (self._records, self._queries):
            if conn is not None:
                conn.close()
