"""Shipper: takes items from the queue, pushes them, retries, and accounts every line.

What each answer means is `sluiceway.wire.classify_push_answer` (shared with the client):
- 2xx: shipped. A 400 that names rejected lines (Loki's "total ignored: N out of M")
  counts N lost with Loki's reason and the rest shipped; another 400 (or 409, 422 …)
  loses the whole item, is logged, and never blocks the lines behind it.
- 401, 403, 404, 405 (and 3xx, 407): a configuration error. Retried forever with capped
  backoff (`retry.max_retries` does not apply), the backend shown DOWN with the status
  and body; the lines are kept (spill or block; in drop mode the queue fills).
- 413: the item is cut in halves and each sent again; a single line still too large is
  lost as `too_large`.
- 429, 5xx, timeouts, refused connections: retried with exponential backoff and full
  jitter, `Retry-After` honoured; lost (`rate_limited`, `server_error`,
  `retries_exhausted`) only when `retry.max_retries` gives up. In spill mode the first
  failure moves the in-memory queue to disk, so a long outage holds memory flat and
  survives SIGKILL.
- Shutdown deadline: a push still waiting for its answer when the agent must stop is
  given up (see `Pusher`); its item goes back to the queue unshipped, so it is spilled
  or its file positions stay put, and the next run sends it again.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from queue import SimpleQueue

import httpx

from sluiceway.agent._config import AgentConfig
from sluiceway.agent._positions import Positions
from sluiceway.agent._queue import CONTENT_TYPES, AgentQueue, Item, split_body
from sluiceway.agent._stats import Stats
from sluiceway.buffer import Batch
from sluiceway.wire import PushAnswer, classify_push_answer, push_url

log = logging.getLogger("sluiceway.agent")
# How often a shipper waiting on a push looks at the stop flag: the exit may come this
# much after the shutdown deadline. An answer wakes the wait at once, so pushes pay nothing.
_STOP_POLL = 0.05


def unreachable(exc: Exception) -> PushAnswer:
    """A push that got no answer (refused, reset, timed out): retried like a 5xx."""
    return PushAnswer("retry", 0, "retries_exhausted", f"{type(exc).__name__}: {exc}"[:300])


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
        self._jobs: SimpleQueue[tuple[Callable[[], PushAnswer], Future[PushAnswer]] | None]
        self._jobs = SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def submit(self, call: Callable[[], PushAnswer]) -> Future[PushAnswer]:
        fut: Future[PushAnswer] = Future()
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
        self.url = push_url(cfg.url)
        self.pusher = Pusher(http_client(cfg, cfg.timeout), "agent-push")
        self._streak = 0  # consecutive failures, drives the backoff
        self._spilled_outage = False
        self.in_flight = 0

    def backoff(self) -> float:
        r = self.cfg.retry
        cap = min(r.max_backoff, r.min_backoff * 2 ** min(self._streak - 1, 30))
        return random.uniform(cap / 2, cap)  # jitter spreads retries of many agents

    def post(self, body: bytes, fmt: str) -> PushAnswer | None:
        """Push one body; None if the agent had to stop before the answer came (the push
        is cut short: not shipped, not failed, whatever the server later does with it)."""
        fut = self.pusher.submit(partial(self._send, body, fmt))
        while True:
            try:
                return fut.result(timeout=_STOP_POLL)
            except FutureTimeout:
                if self.stop_now.is_set():
                    return None

    def _send(self, body: bytes, fmt: str) -> PushAnswer:
        try:
            resp = self.pusher.client.post(self.url, content=body,
                                           headers={"Content-Type": CONTENT_TYPES[fmt]})
        except httpx.HTTPError as exc:
            return unreachable(exc)
        return classify_push_answer(resp.status_code, resp.text, resp.headers)

    def ship(self, batch: Batch[Item]) -> bool:
        """Deliver every item of `batch`; False if it went back to the queue."""
        for item in batch.items:
            if not self._ship_item(batch, item):
                return False
        self.queue.buffer.ack(batch)
        return True

    def _ship_item(self, batch: Batch[Item], item: Item) -> bool:
        """Push `item` (in parts, if the backend finds it too large) until every line is
        shipped or lost; False if `batch` went back to the queue instead. Counters move
        once, when the whole item is accounted, so a batch sent again is not counted twice.
        """
        parts = [(item.body, item.lines)]
        shipped, lost = 0, Counter[str]()
        attempts = 0
        while parts:
            body, lines = parts[0]
            ans = self.post(body, item.fmt)
            if ans is None:
                self._cut_short(batch)
                return False
            if ans.kind in ("shipped", "partial", "rejected", "too_large"):
                self._streak, self._spilled_outage, attempts = 0, False, 0
                self._set_backend("ok", ans)
                if ans.kind == "too_large":
                    halves = split_body(body, item.fmt)
                    if halves is not None:
                        parts[0:1] = halves
                        continue
                    gone = {"too_large": lines}
                else:
                    gone = ans.lost(lines)
                parts.pop(0)
                shipped += lines - sum(gone.values())
                lost.update(gone)
                if gone:
                    log.error("backend rejected %d of %d lines (%s): %s", sum(gone.values()),
                              lines, ", ".join(sorted(gone)), ans.detail)
                continue
            self._streak += 1
            attempts += 1
            self.stats.add(send_failures=1)
            self._set_backend("down" if ans.kind == "config_error" else "retrying", ans)
            r = self.cfg.retry
            if ans.kind == "retry" and r.max_retries is not None and attempts > r.max_retries:
                parts.pop(0)
                lost[ans.reason] += lines
                attempts = 0
                log.error("gave up on %d lines after %d attempts (%s): %s", lines,
                          r.max_retries + 1, ans.reason, ans.detail)
                continue
            if (self.queue.cfg.when_full == "spill" and batch.source == "memory"
                    and not self._spilled_outage):
                self._spilled_outage = True
                self.queue.buffer.nack(batch, spill=True)
                self._sleep(ans)
                return False
            if self._sleep(ans):
                self.queue.buffer.nack(batch)
                return False
            self.stats.add(retries=1)
        self._account(item, shipped, lost)
        return True

    def _set_backend(self, state: str, ans: PushAnswer) -> None:
        if state == "ok":
            if self.stats.backend("ok"):
                log.warning("backend %s is taking pushes again", self.url)
            return
        if not self.stats.backend(state, ans.detail, ans.status or None):
            return
        if state == "down":
            log.warning("backend DOWN: %s answered %s; the lines are kept and the push is "
                        "retried until the configuration is fixed", self.url, ans.detail)
        else:
            log.warning("push failed, retrying: %s", ans.detail)

    def _account(self, item: Item, shipped: int, lost: Counter[str]) -> None:
        if shipped:
            self.stats.add(lines_shipped=shipped, bytes_shipped=len(item.body),
                           batches_shipped=1)
        for reason, n in lost.items():
            self.stats.lost(reason, n)
        self.positions.done(item.checkpoints)

    def _cut_short(self, batch: Batch[Item]) -> None:
        # Back to the queue like any unsent item: closing the buffer spills it (spill
        # mode) or its positions were never advanced (block, drop), so it is sent again
        # next run. Not counted as a failure nor, above all, as lost.
        log.warning("shutdown deadline reached with a push of %d lines unanswered; they "
                    "are kept for the next run", sum(i.lines for i in batch.items))
        self.queue.buffer.nack(batch)

    def _sleep(self, ans: PushAnswer) -> bool:
        """Wait before the next attempt; True if the agent must stop now."""
        delay = ans.retry_after if ans.retry_after is not None else self.backoff()
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
