"""One worker per sink: its own buffer, thread, retries and counters.

A sink that raises or hangs only ever holds up its own thread; callers see nothing
but their buffer's policy (drop, block with timeout, or spill).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from sluiceway.buffer import Batch, Buffer, BufferConfig, OrjsonCodec
from sluiceway.client._errors import SinkConfigError, SinkRejected, SinkRetryable, SinkTooLarge

log = logging.getLogger("sluiceway.client")
Record = dict[str, Any]
_LINGER_STEP = 0.05  # a lingering worker looks this often whether a flush wants it to hurry


def backoff(attempt: int, base: float = 0.25, cap: float = 30.0) -> float:
    """Exponential with full jitter, so many clients do not retry in lockstep."""
    return random.uniform(base, min(cap, base * 2 ** attempt))  # noqa: S311 - not crypto


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    s = sorted(samples)
    return {"p50": s[len(s) // 2], "p99": s[min(len(s) - 1, int(len(s) * 0.99))],
            "max": s[-1]}


class _RedactingCodec(OrjsonCodec):
    """Spill files must not hold what the sinks would never see: redact before disk."""

    def __init__(self, redact: Callable[[Record], Record]) -> None:
        self.redact = redact

    def encode(self, items: list[Any]) -> bytes:
        return super().encode([self.redact(r) for r in items])


class SinkWorker:
    def __init__(self, sink: Any, name: str, config: BufferConfig,
                 redact: Callable[[Record], Record] | None, *, batch_size: int = 512,
                 max_retries: int = 10) -> None:
        self.sink = sink
        self.name = name
        self.config = config
        self.buffer: Buffer[Record] = Buffer(config, name=name,
                                             codec=_RedactingCodec(redact) if redact else None)
        self.redact = redact
        self.batch_size = int(getattr(sink, "max_batch", batch_size) or batch_size)
        self.batch_wait = float(getattr(sink, "batch_wait", 0.0) or 0.0)
        self.max_retries = max_retries
        self.written: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.errors = 0
        self.failures = 0  # consecutive
        self.last_error: str | None = None
        # "ok"; "failing" (retried: outage, 429, 5xx); "down" (SinkConfigError: the sink
        # refuses everything until its configuration is fixed, e.g. HTTP 404)
        self.state = "ok"
        self.last_status: int | None = None
        self.write_ms: deque[float] = deque(maxlen=512)
        self.busy_since: float | None = None
        self._stop = threading.Event()
        self._hurry = 0  # flushes waiting: a lingering batch goes out at once
        self._holding: list[Batch[Record]] = []  # the batches being delivered
        self._hurry_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"sluiceway-sink-{name}")
        self._thread.start()

    # ---- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.buffer.get_batch(self.batch_size, max_wait=0.2)
                if batch is None:
                    continue
                batches = [batch]
                if self.batch_wait and len(batch) < self.batch_size:
                    self._linger(batches)
                self._holding = batches
                try:
                    self._deliver(batches)
                finally:
                    self._holding = []
            except Exception:  # never let the worker die: log and keep going
                log.exception("sluiceway sink %s: worker error", self.name)
                self._stop.wait(0.1)

    def _linger(self, batches: list[Batch[Record]]) -> None:
        """Fill a push up to batch_size for at most batch_wait (HTTP sinks want fewer,
        larger requests); a flush cuts the wait short."""
        deadline = time.monotonic() + self.batch_wait
        n = len(batches[0])
        while n < self.batch_size and not self._stop.is_set() and not self._hurry:
            left = deadline - time.monotonic()
            if left <= 0 or self.buffer.closed:
                return
            more = self.buffer.get_batch(self.batch_size - n,
                                         max_wait=min(left, _LINGER_STEP))
            if more is not None:
                batches.append(more)
                n += len(more)

    def _deliver(self, batches: list[Batch[Record]]) -> None:
        """Write the records of `batches`, then ack them; or hand them back (nack) when
        the worker must wait, in spill mode or when stopping.

        A batch the sink finds too large is cut in halves (then quarters…) and each part
        written; the buffer batches are acked once every part is written or lost.
        """
        records = [r for b in batches for r in b.items]
        if self.redact is not None:
            records = [self.redact(r) for r in records]
        parts = [records]
        attempt = 0
        while parts:
            part = parts[0]
            t0 = time.perf_counter()
            self.busy_since = time.monotonic()
            try:
                self.sink.write_batch(part)
            except SinkTooLarge as exc:
                self._answered(exc)
                if len(part) > 1:
                    parts[0:1] = [part[: len(part) // 2], part[len(part) // 2:]]
                else:
                    log.error("sluiceway sink %s: one record too large for the sink, lost "
                              "(too_large): %s", self.name, exc)
                    self.lost["too_large"] += 1
                    parts.pop(0)
                continue
            except SinkRejected as exc:
                self._answered(exc)
                gone = exc.lost if exc.lost is not None else {exc.reason: len(part)}
                bad = min(len(part), sum(gone.values()))
                self.lost.update(gone)
                self.written.update([str(r.get("level")) for r in part[: len(part) - bad]])
                log.error("sluiceway sink %s rejected %d of %d records: %s", self.name, bad,
                          len(part), exc)
                parts.pop(0)
                continue
            except Exception as exc:
                self._failed(exc)
                attempt += 1
                delay = backoff(self.failures)
                if isinstance(exc, SinkRetryable) and exc.retry_after is not None:
                    delay = min(max(exc.retry_after, 0.0), 300.0)
                if self.config.when_full == "spill":
                    # Downstream is failing: the batch and memory go to disk, so a crash
                    # during the outage loses nothing; we read them back after the wait.
                    for b in batches:
                        self.buffer.nack(b, spill=True)
                    self._stop.wait(delay)
                    return
                if attempt > self.max_retries and not isinstance(exc, SinkConfigError):
                    reason = exc.reason if isinstance(exc, SinkRetryable) else "sink_error"
                    self.lost[reason] += sum(len(p) for p in parts)
                    log.error("sluiceway sink %s: gave up after %d attempts, %d records "
                              "lost (%s)", self.name, attempt, sum(len(p) for p in parts),
                              reason)
                    break
                if self._stop.wait(delay):
                    for b in batches:
                        self.buffer.nack(b)
                    return
                continue
            finally:
                self.busy_since = None
            self.write_ms.append((time.perf_counter() - t0) * 1000)
            self._answered(None)
            self.written.update([str(r.get("level")) for r in part])
            parts.pop(0)
            attempt = 0
        for b in batches:
            self.buffer.ack(b)

    def _answered(self, exc: BaseException | None) -> None:
        """The sink took the batch, or refused it for good: it is up."""
        self.failures = 0
        if exc is not None:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if self.state != "ok":
            log.warning("sluiceway sink %s is delivering again", self.name)
            self.state = "ok"

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        state = "down" if isinstance(exc, SinkConfigError) else "failing"
        self.last_status = exc.status if isinstance(exc, SinkRetryable) else None
        if state == self.state:
            return
        self.state = state
        if state == "down":
            log.warning("sluiceway sink %s DOWN: %s; records are kept and retried until "
                        "its configuration is fixed", self.name, self.last_error)
        else:
            log.warning("sluiceway sink %s failed: %s", self.name, self.last_error)

    # ---- lifecycle --------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        with self._hurry_lock:
            self._hurry += 1
        try:
            return self.buffer.join(timeout)
        finally:
            with self._hurry_lock:
                self._hurry -= 1

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread; in spill mode what is left goes to disk for the next start."""
        self._stop.set()
        self._thread.join(timeout)
        self.buffer.close(persist=True, timeout=timeout)
        if not self._thread.is_alive():
            close = getattr(self.sink, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("sluiceway sink %s: close failed", self.name)

    def leftovers(self) -> tuple[int, int]:
        """After `stop`: (records lost now, records kept in the spill). What is still in
        memory or held by a hung write is counted lost as `shutdown_timeout`."""
        b = self.buffer.stats()
        if self.config.when_full == "spill":
            # a batch read back from the spill stays there until acked: still kept
            on_disk = sum(len(x) for x in self._holding if x.source == "disk")
            lost = b["in_memory"] + b["in_flight"] - on_disk
            kept = b["depth"] - b["in_memory"] + on_disk
        else:
            lost, kept = b["depth"] + b["in_flight"], 0
        if lost:
            self.lost["shutdown_timeout"] += lost
        return lost, kept

    def stats(self) -> dict[str, Any]:
        b = self.buffer.stats()
        busy = self.busy_since
        return {
            **b,
            "written": sum(self.written.values()),
            "written_by_level": dict(self.written),
            "lost_by_reason": dict(self.lost),
            "errors": self.errors, "consecutive_failures": self.failures,
            "state": self.state, "last_status": self.last_status,
            "last_error": self.last_error,
            "write_ms": percentiles(list(self.write_ms)),
            "stalled_s": round(time.monotonic() - busy, 3) if busy is not None else 0.0,
        }
