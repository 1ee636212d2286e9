"""The step between the ingest log and the heads: durable records are applied in log
order on one thread of their own, while the log's writer goes on with the next group.

The order is the order of `submit` calls, which the caller makes in the order it appends
to the log (under one lock), so it is the log's order whatever thread resolves a future.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

from sluiceway.model import PushRecord
from sluiceway.store._wal import WalWriteError

log = logging.getLogger("sluiceway.store")

P = TypeVar("P")
R = TypeVar("R")


class Applier(Generic[P, R]):
    def __init__(self, apply: Callable[[PushRecord, P], R]) -> None:
        self._apply = apply
        self._cond = threading.Condition()
        self._queue: deque[tuple[PushRecord, Future[P], Future[R]]] = deque()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="heads-apply", daemon=True)
        self._thread.start()

    def submit(self, record: PushRecord, logged: Future[P], out: Future[R]) -> None:
        """`out` resolves to `apply(record, position)` once `logged` resolved and every
        record submitted before is applied; to `logged`'s exception if it fails, and to
        WalWriteError once closed."""
        with self._cond:
            if self._closed:
                out.set_exception(WalWriteError("the store is closed"))
                return
            self._queue.append((record, logged, out))
        logged.add_done_callback(self._wake)

    def _wake(self, _f: Future[P]) -> None:
        with self._cond:
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._queue and self._queue[0][1].done()):
                    if self._closed and not self._queue:
                        return
                    self._cond.wait()
                record, logged, out = self._queue.popleft()
            exc = logged.exception()
            if exc is not None:
                out.set_exception(exc)
                continue
            try:
                out.set_result(self._apply(record, logged.result()))
            except Exception as e:  # noqa: BLE001 - one bad record must not stop the others
                log.exception("applying a WAL record to the heads failed")
                out.set_exception(e)

    def close(self) -> None:
        """Apply what is queued (its log futures must resolve), then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(60)
