"""Recording-rule samples and `ALERTS` series out by Prometheus remote write 1.0.

One queue per client and tenant, bounded in samples (`queue_config.capacity`: the oldest
are dropped and counted past it). A sender per client takes up to
`max_samples_per_send` samples of one tenant, waits at most `batch_send_deadline` for a
batch to fill, and retries a request that got no answer, a 5xx or a 429 with capped
exponential back-off, in order; another 4xx drops the batch (counted, logged once).
Samples still queued when the server stops are lost, and counted as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping

import httpx

from sluiceway.ruler._config import RemoteWriteClient
from sluiceway.wire import REMOTE_WRITE_HEADERS, RemoteSeries, encode_write_request

log = logging.getLogger("sluiceway.ruler")


Queued = tuple[dict[str, str], int, float]  # labels, Unix ms, value


class _Client:
    def __init__(self, opts: RemoteWriteClient, add_org_id: bool, user_agent: str) -> None:
        self.opts, self.add_org_id, self.user_agent = opts, add_org_id, user_agent
        self.queues: dict[str, deque[Queued]] = {}
        self.wake = asyncio.Event()
        self.sent: dict[str, int] = {}
        self.dropped: dict[tuple[str, str], int] = {}  # (tenant, reason) -> samples
        self.failing = False

    def _drop(self, tenant: str, reason: str, n: int) -> None:
        if n:
            self.dropped[tenant, reason] = self.dropped.get((tenant, reason), 0) + n

    def enqueue(self, tenant: str, samples: list[Queued]) -> None:
        q = self.queues.setdefault(tenant, deque())
        q.extend(samples)
        over = len(q) - self.opts.queue_config.capacity
        for _ in range(max(over, 0)):
            q.popleft()
        self._drop(tenant, "queue_full", max(over, 0))
        if sum(len(x) for x in self.queues.values()) >= self.opts.queue_config.max_samples_per_send:
            self.wake.set()

    def pending(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def lose_queued(self) -> None:
        for tenant, q in self.queues.items():
            self._drop(tenant, "shutdown", len(q))
            q.clear()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.opts.remote_timeout) as http:
            while True:
                per_send = self.opts.queue_config.max_samples_per_send
                if not self.pending() or self.pending() < per_send:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(),
                                               self.opts.queue_config.batch_send_deadline)
                self.wake.clear()
                for tenant, q in list(self.queues.items()):
                    while q:
                        n = min(len(q), self.opts.queue_config.max_samples_per_send)
                        batch = [q.popleft() for _ in range(n)]
                        await self._send(http, tenant, batch)

    async def _send(self, http: httpx.AsyncClient, tenant: str, batch: list[Queued]) -> None:
        series: dict[tuple[tuple[str, str], ...], RemoteSeries] = {}
        for labels, t_ms, value in batch:
            k = tuple(sorted(labels.items()))
            series.setdefault(k, RemoteSeries(labels)).samples.append((t_ms, value))
        body = encode_write_request(series.values())
        headers = {**REMOTE_WRITE_HEADERS, "User-Agent": self.user_agent, **self.opts.headers}
        if self.add_org_id:
            headers["X-Scope-OrgID"] = tenant
        backoff = self.opts.queue_config.min_backoff
        while True:
            try:
                r = await http.post(self.opts.url, content=body, headers=headers)
                status, why = r.status_code, f"HTTP {r.status_code}: {r.text[:200].strip()}"
            except httpx.HTTPError as exc:
                status, why = 0, f"{type(exc).__name__}: {exc}"
            if status // 100 == 2:
                self.sent[tenant] = self.sent.get(tenant, 0) + len(batch)
                if self.failing:
                    log.info("remote write to %s works again", self.opts.url)
                self.failing = False
                return
            if not self.failing:
                log.warning("remote write to %s failed: %s (logged once until it works)",
                            self.opts.url, why)
            self.failing = True
            if status and status != 429 and status < 500:
                self._drop(tenant, f"http_{status}", len(batch))
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.opts.queue_config.max_backoff)


class RemoteWriter:
    """Fan-out of the ruler's samples to every configured remote-write client."""

    def __init__(self, clients: list[RemoteWriteClient], add_org_id: bool,
                 external_labels: Mapping[str, str], user_agent: str) -> None:
        self.clients = [_Client(c, add_org_id, user_agent) for c in clients]
        self.external_labels = dict(external_labels)

    def enqueue(self, tenant: str, samples: list[tuple[dict[str, str], float]],
                ts_ms: int) -> None:
        if not samples or not self.clients:
            return
        queued = [({**self.external_labels, **labels}, ts_ms, value)
                  for labels, value in samples]
        for c in self.clients:
            c.enqueue(tenant, queued)

    async def run(self) -> None:
        await asyncio.gather(*(c.run() for c in self.clients))

    def close(self) -> None:
        for c in self.clients:
            c.lose_queued()
