"""Alert notifications to Alertmanager's v2 API (`POST <alertmanager_url>/api/v2/alerts`).

The body is what Prometheus (and so Loki's ruler) sends: a JSON array of
`{annotations, endsAt, startsAt, generatorURL, labels}` with times in RFC3339 at
millisecond precision; labels carry the ruler's `external_labels`; the tenant goes in
`X-Scope-OrgID`. Like Prometheus' notifier there is no retry: a firing alert is sent
again every `resend_delay`, and a queue that overflows drops its oldest alerts (counted).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from sluiceway.ruler._rules import Alert

log = logging.getLogger("sluiceway.ruler")
MAX_BATCH = 64  # alerts per request, as Prometheus' notifier


def rfc3339_ms(ns: int) -> str:
    """Go's strfmt.DateTime: `2026-12-04T16:09:19.149Z`."""
    dt = datetime.fromtimestamp(ns // 10**9, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 10**6 % 1000:03d}Z"


def generator_url(external_url: str, expr: str) -> str:
    """A link to the rule's expression in this server's Explore page."""
    return f"{external_url.rstrip('/')}/#/explore?query={quote(expr, safe='')}"


def am_alert(a: Alert, external_labels: Mapping[str, str], gen_url: str) -> dict[str, Any]:
    labels = dict(a.labels)
    for k, v in external_labels.items():
        labels.setdefault(k, v)
    return {"annotations": a.annotations,
            "endsAt": rfc3339_ms(a.resolved_at or a.valid_until),
            "startsAt": rfc3339_ms(a.fired_at or a.active_at),
            "generatorURL": gen_url, "labels": labels}


class Notifier:
    def __init__(self, urls: list[str], timeout_s: float, capacity: int,
                 user_agent: str) -> None:
        self.urls = [u.rstrip("/") + "/api/v2/alerts" for u in urls]
        self.timeout_s, self.capacity, self.user_agent = timeout_s, capacity, user_agent
        self.queue: deque[tuple[str, dict[str, Any]]] = deque()
        self.wake = asyncio.Event()
        self.sent: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.failing = False

    def send(self, tenant: str, alerts: list[dict[str, Any]]) -> None:
        """Queue alerts (event loop only); the oldest go when the queue is full."""
        if not self.urls:
            return
        for a in alerts:
            if len(self.queue) >= self.capacity:
                old_tenant, _ = self.queue.popleft()
                self.dropped[old_tenant] = self.dropped.get(old_tenant, 0) + 1
            self.queue.append((tenant, a))
        self.wake.set()

    def _batch(self) -> tuple[str, list[dict[str, Any]]]:
        tenant = self.queue[0][0]
        batch: list[dict[str, Any]] = []
        while self.queue and self.queue[0][0] == tenant and len(batch) < MAX_BATCH:
            batch.append(self.queue.popleft()[1])
        return tenant, batch

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.queue:
                    tenant, batch = self._batch()
                    body = json.dumps(batch, separators=(",", ":")).encode()
                    await asyncio.gather(*(self._post(http, url, tenant, body, len(batch))
                                           for url in self.urls))

    async def _post(self, http: httpx.AsyncClient, url: str, tenant: str, body: bytes,
                    n: int) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": self.user_agent,
                   "X-Scope-OrgID": tenant}
        try:
            r = await http.post(url, content=body, headers=headers)
            ok, why = r.status_code // 100 == 2, f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.sent[tenant] = self.sent.get(tenant, 0) + n
            if self.failing:
                log.info("alertmanager %s takes notifications again", url)
            self.failing = False
            return
        self.errors[tenant] = self.errors.get(tenant, 0) + n
        if not self.failing:
            log.warning("cannot send %d alerts to %s: %s (logged once until it works)", n,
                        url, why)
        self.failing = True
