"""Push decoding in worker processes, so ingest uses more than the one core the GIL allows.

Workers are forked when the server starts, before any thread or listening socket exists
(so they inherit neither), and are killed by the kernel if the server dies; each push body goes
to a worker and comes back as a ready WAL record (bytes), which is cheap to hand over.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1
log = logging.getLogger("sluiceway.server")


def _warm(_: int) -> int:
    return os.getpid()


def _die_with_parent() -> None:
    """Workers must not outlive a SIGKILLed server (they would hold its resources), and
    leave Ctrl-C / SIGTERM (sent to the whole process group) to the server, which shuts
    them down after the requests in flight."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: workers exit when their pipe closes
        pass


def _widen_pipes(pool: ProcessPoolExecutor) -> None:
    """Give the pool's two pipes room for a whole push. With Linux's default 64 KiB, a
    0.8 MB WAL record crosses in a dozen fill/wake/drain rounds; measured, a 1 MiB pipe
    cuts the CPU of moving it by about half on both sides. The pipes belong to the
    executor (private attributes): if they are not where expected, nothing changes."""
    size = 1 << 20
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        ends = [pool._call_queue._reader, pool._result_queue._reader]  # type: ignore[attr-defined]
        for conn in ends:
            fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, min(size, limit))
    except (AttributeError, OSError, ValueError) as exc:
        log.debug("ingest pipes keep their default size: %s", exc)


class IngestPool:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: Executor
        if workers > 0:
            pool = ProcessPoolExecutor(max_workers=workers,
                                       mp_context=multiprocessing.get_context("fork"),
                                       initializer=_die_with_parent)
            _widen_pipes(pool)
            # Start every worker now, while this process has no threads to fork into.
            list(pool.map(_warm, range(workers)))
            self._executor = pool
        else:
            self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ingest")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker (both must pickle)."""
        try:
            return await asyncio.wrap_future(self._executor.submit(fn, *args))
        except BrokenProcessPool:
            # A worker died (OOM killer, a bug in a C library): keep serving from threads
            # rather than answering every later push with an error.
            log.error("ingest worker process died; decoding in threads from now on")
            self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ingest")
            self.workers = 0
            return await asyncio.wrap_future(self._executor.submit(fn, *args))

    def close(self) -> None:
        # Wait: leaving the pool's manager thread running into interpreter exit makes it
        # write to closed pipes (a traceback at exit). The workers are idle by now.
        self._executor.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    """One decode process per core (at most 4): measured on 2 cores, two workers beat one
    because decoding, not the server process, is the larger share of ingest CPU."""
    return max(1, min(4, os.cpu_count() or 1))
