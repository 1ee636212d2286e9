"""Shipper: takes items from the queue, pushes them, retries, and accounts every line.

- 2xx: shipped. A 400 that names rejected lines (Loki's "total ignored: N out of M")
  counts N lost with that reason and the rest shipped; any other non-retryable 4xx
  loses the whole item, is logged, and never blocks the lines behind it.
- 429, 5xx, timeouts, refused connections: retried with exponential backoff and full
  jitter, `Retry-After` honoured. In spill mode the first failure moves the in-memory
  queue to disk, so a long outage holds memory flat and survives SIGKILL.
- Shutdown deadline: a push still waiting for its answer when the agent must stop is
  given up (see `Pusher`); its item goes back to the queue unshipped, so it is spilled
  or its file positions stay put, and the next run sends it again.
"""

from __future__ import annotations

import logging
import random
import re
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import partial
from queue import SimpleQueue

import httpx

from sluiceway.agent._config import AgentConfig
from sluiceway.agent._positions import Positions
from sluiceway.agent._queue import AgentQueue, Item
from sluiceway.agent._stats import Stats
from sluiceway.buffer import Batch
from sluiceway.wire import parse_retry_after

log = logging.getLogger("sluiceway.agent")
PUSH_PATH = "/loki/api/v1/push"
_IGNORED_RE = re.compile(r"total ignored:\s*(\d+)\s+out of\s+(\d+)")
_REASONS = [("too far behind", "too_far_behind"), ("too old", "too_old"),
            ("greater_than_max_sample_age", "too_old"), ("too new", "too_far_in_future"),
            ("too_far_in_future", "too_far_in_future"), ("max entry size", "line_too_long"),
            ("line_too_long", "line_too_long"), ("line too long", "line_too_long")]
_RETRYABLE = {408, 425, 429}
_CONTENT_TYPES = {"protobuf": "application/x-protobuf", "json": "application/json"}
# How often a shipper waiting on a push looks at the stop flag: the exit may come this
# much after the shutdown deadline. An answer wakes the wait at once, so pushes pay nothing.
_STOP_POLL = 0.05


@dataclass(slots=True)
class Outcome:
    done: bool  # True: accounted (shipped and/or lost); False: retry
    shipped: int = 0
    lost: int = 0
    reason: str = ""
    by_reason: dict[str, int] | None = None  # per-line rejections of several kinds
    delay: float | None = None  # server's Retry-After
    error: str | None = None


def ssl_context(cfg: AgentConfig) -> ssl.SSLContext | bool:
    t = cfg.tls
    if not (t.ca_file or t.cert_file or t.insecure_skip_verify):
        return True
    ctx = ssl.create_default_context(cafile=str(t.ca_file) if t.ca_file else None)
    if t.cert_file:
        ctx.load_cert_chain(str(t.cert_file), str(t.key_file) if t.key_file else None)
    if t.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def http_client(cfg: AgentConfig, timeout: float) -> httpx.Client:
    headers = dict(cfg.headers)
    if cfg.tenant:
        headers["X-Scope-OrgID"] = cfg.tenant
    auth: httpx.BasicAuth | None = None
    if cfg.auth.bearer_token:
        headers["Authorization"] = f"Bearer {cfg.auth.bearer_token}"
    elif cfg.auth.username is not None and cfg.auth.password is not None:
        auth = httpx.BasicAuth(cfg.auth.username, cfg.auth.password)
    return httpx.Client(headers=headers, auth=auth, timeout=timeout, verify=ssl_context(cfg))


def classify(status: int, body: str, lines: int, ra: str | None) -> Outcome:
    if 200 <= status < 300:
        return Outcome(True, shipped=lines)
    if status in _RETRYABLE or status >= 500:
        return Outcome(False, delay=parse_retry_after(ra), error=f"HTTP {status}: {body[:200]}")
    reason = _reason(body) or f"http_{status}"
    if status == 400:
        ignored = [(int(a), int(b)) for a, b in _IGNORED_RE.findall(body)]
        if ignored:
            bad = min(lines, sum(a for a, _ in ignored))
            return Outcome(True, shipped=lines - bad, lost=bad, reason=reason,
                           by_reason=_per_line_reasons(body, bad))
    return Outcome(True, lost=lines, reason=reason, error=f"HTTP {status}: {body[:200]}")


def _reason(text: str) -> str | None:
    low = text.lower()
    return next((r for needle, r in _REASONS if needle in low), None)


def _per_line_reasons(body: str, bad: int) -> dict[str, int] | None:
    """One detail line per rejected entry (Loki's form): count them by reason, if they
    account for all `bad` lines; otherwise the caller uses the first reason for all."""
    counts: dict[str, int] = {}
    for line in body.splitlines():
        r = _reason(line)
        if r is not None and not _IGNORED_RE.search(line):
            counts[r] = counts.get(r, 0) + 1
    return counts if sum(counts.values()) == bad and len(counts) > 1 else None


class Pusher:
    """One daemon thread that makes a shipper's HTTP requests, so the shipper can stop
    waiting for one at the shutdown deadline.

    httpx cannot cancel a blocking request: closing the client from another thread does
    not wake a read blocked on a frozen server (it still ends at the full `timeout`), and
    a request started before SIGTERM already has its full timeout, so capping timeouts by
    the time left would miss exactly that request. A request given up on runs on here
    until its timeout; being a daemon thread, it does not hold the process's exit.
    """

    def __init__(self, client: httpx.Client, name: str) -> None:
        self.client = client
        self._jobs: SimpleQueue[tuple[Callable[[], Outcome], Future[Outcome]] | None]
        self._jobs = SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def submit(self, call: Callable[[], Outcome]) -> Future[Outcome]:
        fut: Future[Outcome] = Future()
        self._jobs.put((call, fut))
        return fut

    def close(self) -> None:
        """The client is closed after the request under way, by the thread using it."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(call())
            except BaseException as exc:  # handed to the shipper, which logs it
                fut.set_exception(exc)
        self.client.close()


class Shipper:
    def __init__(self, cfg: AgentConfig, queue: AgentQueue, positions: Positions,
                 stats: Stats, stop_now: threading.Event) -> None:
        self.cfg, self.queue, self.positions, self.stats = cfg, queue, positions, stats
        self.stop_now = stop_now
        self.url = cfg.url + PUSH_PATH
        self.pusher = Pusher(http_client(cfg, cfg.timeout), "agent-push")
        self._streak = 0  # consecutive failures, drives the backoff
        self._spilled_outage = False
        self.in_flight = 0

    def backoff(self) -> float:
        r = self.cfg.retry
        cap = min(r.max_backoff, r.min_backoff * 2 ** min(self._streak - 1, 30))
        return random.uniform(cap / 2, cap)  # jitter spreads retries of many agents

    def post(self, item: Item) -> Outcome | None:
        """Push `item`; None if the agent had to stop before the answer came (the push
        is cut short: not shipped, not failed, whatever the server later does with it)."""
        fut = self.pusher.submit(partial(self._send, item))
        while True:
            try:
                return fut.result(timeout=_STOP_POLL)
            except FutureTimeout:
                if self.stop_now.is_set():
                    return None

    def _send(self, item: Item) -> Outcome:
        try:
            resp = self.pusher.client.post(self.url, content=item.body,
                                           headers={"Content-Type": _CONTENT_TYPES[item.fmt]})
        except httpx.HTTPError as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:300])
        return classify(resp.status_code, resp.text, item.lines,
                        resp.headers.get("Retry-After"))

    def _account(self, item: Item, out: Outcome) -> None:
        if out.shipped:
            self.stats.add(lines_shipped=out.shipped, bytes_shipped=len(item.body),
                           batches_shipped=1)
        if out.lost:
            for reason, n in (out.by_reason or {out.reason: out.lost}).items():
                self.stats.lost(reason, n)
            log.error("backend rejected %d of %d lines (%s): %s", out.lost, item.lines,
                      out.reason, out.error or "per-line rejections")
        self.positions.done(item.checkpoints)

    def ship(self, batch: Batch[Item]) -> bool:
        """Deliver every item of `batch`; False if it went back to the queue."""
        for item in batch.items:
            attempts = 0
            while True:
                out = self.post(item)
                if out is None:
                    self._cut_short(batch)
                    return False
                if out.done:
                    self._streak, self._spilled_outage = 0, False
                    self.stats.backend(True, out.error)
                    self._account(item, out)
                    break
                self._streak += 1
                attempts += 1
                self.stats.add(send_failures=1)
                self.stats.backend(False, out.error)
                if self._streak == 1:
                    log.warning("push failed, retrying: %s", out.error)
                r = self.cfg.retry
                if r.max_retries is not None and attempts > r.max_retries:
                    self._account(item, Outcome(True, lost=item.lines,
                                                reason="retries_exhausted"))
                    break
                if (self.queue.cfg.when_full == "spill" and batch.source == "memory"
                        and not self._spilled_outage):
                    self._spilled_outage = True
                    self.queue.buffer.nack(batch, spill=True)
                    self._sleep(out)
                    return False
                if self._sleep(out):
                    self.queue.buffer.nack(batch)
                    return False
                self.stats.add(retries=1)
        self.queue.buffer.ack(batch)
        return True

    def _cut_short(self, batch: Batch[Item]) -> None:
        # Back to the queue like any unsent item: closing the buffer spills it (spill
        # mode) or its positions were never advanced (block, drop), so it is sent again
        # next run. Not counted as a failure nor, above all, as lost.
        log.warning("shutdown deadline reached with a push of %d lines unanswered; they "
                    "are kept for the next run", sum(i.lines for i in batch.items))
        self.queue.buffer.nack(batch)

    def _sleep(self, out: Outcome) -> bool:
        """Wait before the next attempt; True if the agent must stop now."""
        delay = out.delay if out.delay is not None else self.backoff()
        return self.stop_now.wait(min(delay, 300.0))

    def run(self) -> None:
        while not self.stop_now.is_set():
            batch = self.queue.get(max_wait=0.2)
            if batch is None:
                if self.queue.buffer.closed:
                    return
                continue
            self.in_flight = len(batch)
            try:
                self.ship(batch)
            except Exception:
                log.exception("shipper error; batch returned to the queue")
                self.queue.buffer.nack(batch)
                self.stop_now.wait(1.0)
            finally:
                self.in_flight = 0
        self.pusher.close()
