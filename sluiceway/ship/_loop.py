"""The one consumer of a `sluiceway.buffer`: take a batch, deliver it, ack / nack / spill,
retry with backoff and `Retry-After`, give up into a counted loss by reason.

What a destination does with a batch is a `Deliverer`: the agent's pushes of encoded
bodies, the client's LokiSink, its file and stdout sinks, any custom sink. Every answer
is a `PushAnswer` (`sluiceway.wire.classify_push_answer`'s kinds), so one set of rules
holds for all of them:

- shipped: the part's lines are shipped. partial / rejected: the lines the answer names
  are lost by its reason, the rest shipped; never retried, never blocking what follows.
- too_large: the part is split (`Deliverer.split`) and each half sent; one line that
  still does not fit is lost as `too_large`.
- config_error: kept and retried forever with capped backoff; the backend is `down`.
- retry: retried with exponential backoff and full jitter, `Retry-After` honoured; lost
  by the answer's reason only when `RetryPolicy.max_retries` gives up — never in spill
  mode, where the spill holds the lines through any outage, unless
  `RetryPolicy.max_retries_in_spill` says the limit holds there too (Promtail's
  `backoff_config.max_retries`: a batch is dropped after that many attempts, whatever
  holds it; the attempt that moved it to disk counts as its first).
- In spill mode the first failure of a batch from memory hands it back with
  `nack(spill=True)`: it and the rest of memory go to disk, so an outage followed by
  SIGKILL loses nothing.
- `stop`: a send still unanswered is given up at once (it runs on in a daemon thread
  until its own timeout) and its batch handed back to the buffer: spilled on close in
  spill mode, else left to the owner (a file is read again; the client counts it).

Counters move once per batch, when it is acked, so a batch sent again is never counted
twice. Numbering (the ledger) travels with the items: a `Part` keeps what it was made
from; `on_lost(part, gone)` tells the owner which part lost how many lines by reason
(by the ledger's convention, the last lines of the part in ledger order), and
`on_done` gets the items once they are shipped or counted lost. Counters and `on_lost`
move before the ack: a figure read in between sees lines twice, never nowhere.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from sluiceway.buffer import Batch, Buffer
from sluiceway.model import Duration
from sluiceway.ship._latency import LatencyHistogram
from sluiceway.ship._watch import Watch
from sluiceway.wire import ANSWER_REASONS, PushAnswer

T = TypeVar("T")
# How often a loop waiting on a send looks at its stop flag: an answer wakes the wait
# at once, so sends pay nothing; a stop is seen within this.
_STOP_POLL = 0.05
_OK_KINDS = frozenset({"shipped", "partial", "rejected", "too_large"})
# Every fixed reason the delivery path counts a loss under (besides `http_<status>`): the
# answers', `retries_exhausted` (no answer until a retry limit gave up: `PushClient`) and
# `sink_error` (a deliverer's own error), for counters shown at 0 from the start.
LOSS_REASONS: tuple[str, ...] = (*ANSWER_REASONS, "retries_exhausted", "sink_error")


@dataclass(slots=True, eq=False)
class Part:
    """What one send carries: `payload` for the deliverer (a push body, a list of
    records), `lines` it holds, their `tags` (one per line, e.g. levels) when the
    owner counts by tag, and `nbytes` for the shipped-bytes counter. `memo` is the
    deliverer's: what it built from the payload (a body) kept for the part's retries."""

    payload: Any
    lines: int
    tags: list[Hashable] | None = None
    nbytes: int = 0
    memo: Any = None


class Deliverer(Protocol[T]):
    """A destination: turns items into parts, sends a part, splits one too large."""

    def parts(self, items: list[T]) -> list[Part]: ...

    def send(self, part: Part) -> PushAnswer: ...

    def split(self, part: Part) -> list[Part] | None: ...


class RetryPolicy(BaseModel):
    """Backoff from `min_backoff` doubling to `max_backoff` (full jitter in its upper
    half); `max_retries` None retries without limit. In spill mode `max_retries` gives up
    only with `max_retries_in_spill`. It is also the agent's `retry:` config section (and
    each client's), embedded as it is: durations take `500ms`, `30s`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_backoff: Duration = 0.5
    max_backoff: Duration = 30.0
    # None: retry retryable failures forever (the queue, not the shipper, decides what is
    # lost).
    max_retries: int | None = None
    # In spill mode the spill holds lines through any outage and max_retries is not used;
    # true: it is (Promtail's backoff_config.max_retries: dropped after that many attempts).
    max_retries_in_spill: bool = False

    def gives_up(self, spill: bool) -> bool:
        """Whether `max_retries` can lose lines in this mode."""
        return self.max_retries is not None and (self.max_retries_in_spill or not spill)

    def delay(self, streak: int) -> float:
        cap = min(self.max_backoff, self.min_backoff * 2 ** min(max(streak, 1) - 1, 30))
        return random.uniform(cap / 2, cap)  # noqa: S311 - spreads many senders apart


@dataclass
class DeliveryStats:
    """Counters of one destination, shared by the loops (workers) that feed it: lines
    shipped by tag, lost by (reason, tag), attempts, the backend's state, latency."""

    shipped: Counter[Hashable] = field(default_factory=Counter)
    lost: Counter[tuple[str, Hashable]] = field(default_factory=Counter)
    pushes: int = 0  # accepted sends
    bytes_shipped: int = 0
    send_failures: int = 0
    retries: int = 0
    errors: int = 0  # sends that failed or were refused (any answer but shipped)
    state: str = "ok"  # ok | retrying | down
    state_since: float = field(default_factory=time.monotonic)
    last_error: str | None = None
    last_error_ts: float | None = None
    last_status: int | None = None
    last_success_ts: float | None = None
    failed_attempts: int = 0  # in the current outage
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    write_ms: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    busy: dict[int, float] = field(default_factory=dict)  # loop -> when its send began

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain data (one lock, consistent)."""
        with self.lock:
            lost_by_reason: Counter[str] = Counter()
            for (reason, _), n in self.lost.items():
                lost_by_reason[reason] += n
            now = time.monotonic()
            stalled = now - min(self.busy.values()) if self.busy else 0.0
            return {
                "shipped": sum(self.shipped.values()),
                "shipped_by_tag": {str(k): v for k, v in self.shipped.items()},
                "lost": sum(lost_by_reason.values()),
                "lost_by_reason": dict(lost_by_reason),
                "lost_by_tag": _by_tag(self.lost),
                "pushes": self.pushes, "bytes_shipped": self.bytes_shipped,
                "send_failures": self.send_failures, "retries": self.retries,
                "errors": self.errors, "state": self.state, "ok": self.state == "ok",
                "state_for_s": round(now - self.state_since, 3),
                "last_error": self.last_error, "last_error_ts": self.last_error_ts,
                "last_status": self.last_status, "last_success_ts": self.last_success_ts,
                "stalled_s": round(stalled, 3),
            }

    def count_lost(self, reason: str, n: int, tag: Hashable = None) -> None:
        """Lines the owner counts lost outside a send (the client's exit leftovers)."""
        if n > 0:
            with self.lock:
                self.lost[(reason, tag)] += n


class _Sender:
    """One daemon thread that makes a loop's sends, so the loop can stop waiting for
    one at a deadline: a blocking HTTP request cannot be cancelled, and a request made
    before a stop already has its full timeout. A send given up on runs on here until
    it ends; being a daemon thread, it does not hold the process's exit."""

    def __init__(self, name: str) -> None:
        self._jobs: SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        fut: Future[Any] = Future()
        self._jobs.put((call, fut))
        return fut

    def close(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(call())
            except BaseException as exc:  # handed to the loop, which logs it
                fut.set_exception(exc)


class DeliveryLoop(Generic[T]):
    """Drains `buffer` into `deliverer` on `run()` (the caller's thread) until `stop`.

    `who` starts every log line ("agent", "sluiceway sink loki"); `target` names the
    destination in them. Batches hold up to `max_units` units and `max_bytes`; with
    `linger` the loop waits that long for a batch to fill (fewer, larger pushes) unless
    `hurry` is raised (a flush is waiting). `on_done(items)` runs after each ack.
    """

    def __init__(self, buffer: Buffer[T], deliverer: Deliverer[T], *, who: str,
                 target: str, logger: logging.Logger, retry: RetryPolicy,
                 max_units: int = 1000, max_bytes: int = 1 << 20, linger: float = 0.0,
                 stop: threading.Event | None = None,
                 on_done: Callable[[list[T]], None] | None = None,
                 stats: DeliveryStats | None = None, watch: Watch | None = None,
                 on_lost: Callable[[Part, dict[str, int]], None] | None = None) -> None:
        self.buffer = buffer
        self.deliverer = deliverer
        self.who = who
        self.target = target
        self.log = logger
        self.retry = retry
        self.max_units = max_units
        self.max_bytes = max_bytes
        self.linger = linger
        self.stop = stop or threading.Event()
        self.on_done = on_done
        self.on_lost = on_lost
        # Loops (workers) feeding one destination share its counters and its watcher,
        # so a state change is counted and said once.
        self.stats = stats if stats is not None else DeliveryStats()
        self.watch = watch if watch is not None else Watch(buffer, who, logger)
        self.hurry = 0  # flushes waiting: a lingering batch goes out at once
        self.holding: list[Batch[T]] = []  # the batches being delivered
        self._settled = False  # the batches in hand were acked or handed back
        self._faults = 0  # deliveries in a row that raised
        self._spill = buffer.config.when_full == "spill"
        self._spilled_outage = False
        # Failed attempts of the batch an outage moved to disk, carried to the first
        # batch read back (`max_retries_in_spill`: that batch's count goes on).
        self._carry = 0
        self._sender = _Sender(f"sluiceway-send-{buffer.name}")

    # ---- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.watch.tick()
                try:
                    batch = self.buffer.get_batch(self.max_units, self.max_bytes, 0.2)
                    if batch is None:
                        if self.buffer.closed:
                            return
                        continue
                    batches = [batch]
                    self.holding, self._settled = batches, False
                    try:
                        if self.linger and batch.count < self.max_units:
                            self._linger(batches)
                        self._deliver(batches)
                        self._faults = 0
                    except Exception:  # never let the loop die: log, hand back, go on
                        self._fault(batches)
                    finally:
                        self.holding = []
                except Exception:  # taking a batch failed (a spill read): try again
                    self.log.exception("%s: cannot take a batch from the queue", self.who)
                    self.stop.wait(0.5)
        finally:
            self._sender.close()
            self.watch.tick(force=True)

    def _fault(self, batches: list[Batch[T]]) -> None:
        """The deliverer (or a read while lingering) raised: the batches in hand go back
        to the queue and the next attempt waits the retry backoff. When deliveries keep
        raising past `RetryPolicy.max_retries` (never in spill mode) the batches are
        counted lost as `sink_error` rather than holding up the queue for good."""
        if self._settled:  # acked or handed back already: only say what went wrong
            self.log.exception("%s: error after the batch was settled", self.who)
            return
        self._settled = True
        self._faults += 1
        n = sum(b.count for b in batches)
        r = self.retry
        if not r.gives_up(self._spill) or self._faults <= (r.max_retries or 0):
            self.log.exception("%s: delivery error; the batch of %d lines goes back to the "
                               "queue", self.who, n)
            for b in batches:
                self.buffer.nack(b)
            self.stop.wait(r.delay(self._faults))
            return
        self.log.exception("%s: delivery error %d times in a row; gave up on %d lines "
                           "(sink_error)", self.who, self._faults, n)
        self._faults = 0
        self.stats.count_lost("sink_error", n)  # before the ack, as in _deliver
        items = [it for b in batches for it in b.items]
        if self.on_lost is not None:
            try:
                self._lost([(p, {"sink_error": p.lines}) for p in self.deliverer.parts(items)])
            except Exception:  # the deliverer is what failed: its parts may fail too
                self.log.exception("%s: cannot tell which lines were lost", self.who)
        for b in batches:
            self.buffer.ack(b)
        self._done(items)

    def _linger(self, batches: list[Batch[T]]) -> None:
        deadline = time.monotonic() + self.linger
        n = batches[0].count
        while n < self.max_units and not self.stop.is_set() and not self.hurry:
            left = deadline - time.monotonic()
            if left <= 0 or self.buffer.closed:
                return
            more = self.buffer.get_batch(self.max_units - n, self.max_bytes,
                                         min(left, 0.05))
            if more is not None:
                batches.append(more)
                n += more.count

    def _deliver(self, batches: list[Batch[T]]) -> None:
        items = [it for b in batches for it in b.items] if len(batches) > 1 \
            else batches[0].items
        parts = self.deliverer.parts(items)
        shipped: Counter[Hashable] = Counter()
        lost: Counter[tuple[str, Hashable]] = Counter()
        lost_parts: list[tuple[Part, dict[str, int]]] = []
        pushes = nbytes = attempts = 0
        if self._carry and batches[0].source != "memory":
            attempts, self._carry = self._carry, 0
        while parts:
            part = parts[0]
            ans = self._send(part)
            if ans is None:  # stopping with the send unanswered
                self._cut_short(batches)
                return
            if ans.kind in _OK_KINDS:
                attempts = 0
                self._answered(ans)
                if ans.kind == "too_large":
                    halves = self.deliverer.split(part)
                    if halves:
                        parts[0:1] = halves
                        continue
                    gone = {"too_large": part.lines}
                else:
                    gone = ans.lost(part.lines)
                parts.pop(0)
                _tally(part, gone, shipped, lost)
                if gone:
                    lost_parts.append((part, gone))
                if ans.kind in ("shipped", "partial"):
                    pushes += 1
                    nbytes += part.nbytes
                if gone:
                    self.log.error("%s: backend rejected %d of %d lines (%s): %s", self.who,
                                   sum(gone.values()), part.lines, ", ".join(sorted(gone)),
                                   ans.detail)
                continue
            attempts += 1
            self._failed(ans)
            r = self.retry
            if (ans.kind == "retry" and r.gives_up(self._spill)
                    and attempts > (r.max_retries or 0)):
                parts.pop(0)
                _tally(part, {ans.reason: part.lines}, shipped, lost)
                lost_parts.append((part, {ans.reason: part.lines}))
                self.log.error("%s: gave up on %d lines after %d attempts (%s): %s",
                               self.who, part.lines, attempts, ans.reason, ans.detail)
                attempts = 0
                continue
            if self._spill and not self._spilled_outage and any(
                    b.source == "memory" for b in batches):
                # Downstream is failing: this batch and memory go to disk now, so a crash
                # during the outage loses nothing; they are read back after the wait.
                self._spilled_outage = True
                self._settled = True
                self._carry = attempts
                for b in batches:
                    self.buffer.nack(b, spill=True)
                self._sleep(ans)
                return
            if self._sleep(ans):
                self._cut_short(batches, unanswered=False)
                return
            with self.stats.lock:
                self.stats.retries += 1
        self._settled = True
        st = self.stats
        # Counted before the ack: a figure read in between sees the lines twice (in
        # flight and shipped or lost), never nowhere — the ledger relies on it.
        with st.lock:
            st.shipped.update(shipped)
            st.lost.update(lost)
            st.pushes += pushes
            st.bytes_shipped += nbytes
        if lost_parts:
            self._lost(lost_parts)
        for b in batches:
            self.buffer.ack(b)
        self._done(items)

    def _lost(self, parts: list[tuple[Part, dict[str, int]]]) -> None:
        if self.on_lost is None:
            return
        for part, gone in parts:
            try:
                self.on_lost(part, gone)
            except Exception:  # the owner's bookkeeping; the lines are counted anyway
                self.log.exception("%s: counting lost lines", self.who)

    def _done(self, items: list[T]) -> None:
        if self.on_done is not None:
            try:
                self.on_done(items)
            except Exception:  # the owner's bookkeeping; the lines are settled anyway
                self.log.exception("%s: after delivery", self.who)

    def _send(self, part: Part) -> PushAnswer | None:
        """One send on the sender thread; None if the loop must stop before its answer."""
        t0 = time.perf_counter()
        st, me = self.stats, id(self)
        with st.lock:
            st.busy[me] = time.monotonic()
        try:
            fut = self._sender.submit(lambda: self.deliverer.send(part))
            while True:
                try:
                    ans: PushAnswer = fut.result(timeout=_STOP_POLL)
                    break
                except FutureTimeout:
                    if self.stop.is_set():
                        return None
                    self.watch.tick()  # a hung send must not hide drops or a spill
                except Exception as exc:  # a deliverer that raised: a failed attempt
                    self.log.debug("%s: send raised", self.who, exc_info=True)
                    ans = PushAnswer("retry", 0, "sink_error",
                                     f"{type(exc).__name__}: {exc}"[:500])
                    break
        finally:
            with st.lock:
                st.busy.pop(me, None)
        took = time.perf_counter() - t0
        st.latency.observe(_status_label(ans), took)
        st.write_ms.append(took * 1000)
        return ans

    # ---- backend state ------------------------------------------------------------------

    def _answered(self, ans: PushAnswer) -> None:
        """The destination answered the part (took it, or refused it for good): up."""
        self._spilled_outage = False
        st = self.stats
        with st.lock:
            if ans.kind != "shipped":
                st.errors += 1
                st.last_error, st.last_error_ts = ans.detail or ans.kind, time.time()
                st.last_status = ans.status or None
            if ans.kind in ("shipped", "partial"):
                st.last_success_ts = time.time()
            if st.state == "ok":
                return
            took, failed = time.monotonic() - st.state_since, st.failed_attempts
            st.state, st.state_since, st.failed_attempts = "ok", time.monotonic(), 0
        self.log.warning("%s: backend %s is taking pushes again after %.1f s (%d failed "
                         "attempts)", self.who, self.target, took, failed)

    def _failed(self, ans: PushAnswer) -> None:
        state = "down" if ans.kind == "config_error" else "retrying"
        st = self.stats
        with st.lock:
            st.send_failures += 1
            st.errors += 1
            st.failed_attempts += 1
            st.last_error, st.last_error_ts = ans.detail or ans.reason, time.time()
            st.last_status = ans.status or None
            if state == st.state:
                return
            if st.state == "ok":
                st.state_since = time.monotonic()
            st.state = state
        if state == "down":
            self.log.warning("%s: backend DOWN: %s answered %s; the lines are kept and the "
                             "push is retried until the configuration is fixed", self.who,
                             self.target, ans.detail)
        else:
            self.log.warning("%s: push to %s failed, retrying: %s", self.who, self.target,
                             ans.detail)

    def _sleep(self, ans: PushAnswer) -> bool:
        """Wait before the next attempt; True if the loop must stop now."""
        delay = ans.retry_after if ans.retry_after is not None \
            else self.retry.delay(self.stats.failed_attempts)
        deadline = time.monotonic() + min(max(delay, 0.0), 300.0)
        while (left := deadline - time.monotonic()) > 0:
            if self.stop.wait(min(left, 0.5)):
                return True
            self.watch.tick()
        return self.stop.is_set()

    def _cut_short(self, batches: list[Batch[T]], unanswered: bool = True) -> None:
        # Back to the queue like any unsent batch: closing the buffer spills it (spill
        # mode); else its owner still has it (a file) or counts it at exit (client).
        self._settled = True
        if unanswered:
            self.log.warning("%s: stopping with a push of %d lines unanswered; they go back "
                             "to the queue (kept for the next run where a spill or a file "
                             "holds them)", self.who, sum(b.count for b in batches))
        for b in batches:
            self.buffer.nack(b)

    # ---- figures ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot()


def _tally(part: Part, gone: dict[str, int], shipped: Counter[Hashable],
           lost: Counter[tuple[str, Hashable]]) -> None:
    """Count a part: `gone` lines lost by reason, the rest shipped. Tags of lost lines
    are taken from the end of the part (an answer names how many, not which)."""
    bad = min(part.lines, sum(gone.values()))
    tags = part.tags
    if tags is None:
        if part.lines > bad:
            shipped[None] += part.lines - bad
        for reason, n in gone.items():
            lost[(reason, None)] += n
        return
    shipped.update(tags[:len(tags) - bad])
    rest = iter(tags[len(tags) - bad:])
    for reason, n in gone.items():
        for _ in range(n):
            lost[(reason, next(rest, None))] += 1


def _by_tag(lost: Counter[tuple[str, Hashable]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (reason, tag), n in lost.items():
        out.setdefault(str(tag), {})[reason] = n
    return out


def _status_label(ans: PushAnswer) -> str:
    """The push latency histogram's `status_code`: the HTTP status, or for a send that
    got no HTTP answer (refused, timed out; a sink that is not HTTP) `none` / `ok`."""
    if ans.status:
        return str(ans.status)
    return "ok" if ans.kind == "shipped" else "none"
