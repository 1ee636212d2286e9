"""Heartbeats other processes sent here, passed on to where this process sends its own:
an agent relays the heartbeats of the clients that report to it (ARCHITECTURE.md
§heartbeats).

Bodies are forwarded as they came (already validated by the receiver, unknown fields of
a newer sender kept) with the identity of the `HeartbeatSender` (its URL, tenant,
credentials). While the target does not answer, only the newest heartbeat of each
reporter waits, so memory stays bounded and a reporter is never held up.
"""

from __future__ import annotations

import logging
import threading

import httpx

from sluiceway.ship._heartbeat import HeartbeatSender


class HeartbeatRelay:
    """`offer()` from any thread; `forward()` on the relaying thread."""

    def __init__(self, sender: HeartbeatSender, log: logging.Logger,
                 max_pending: int = 1000) -> None:
        self.sender = sender
        self.log = log
        self.max_pending = max_pending
        self.relayed = 0
        self._pending: dict[str, bytes] = {}  # reporter id -> its newest heartbeat
        self._lock = threading.Lock()
        self._refused: dict[str, int] = {}  # reporter id -> the refusal last logged
        self._failing = False
        self.wake = threading.Event()

    @property
    def url(self) -> str:
        return self.sender.url

    def http(self) -> httpx.Client:
        return self.sender.http()

    def offer(self, rid: str, body: bytes) -> None:
        """Queue `body` (a validated heartbeat) as the newest of reporter `rid`."""
        with self._lock:
            if rid in self._pending or len(self._pending) < self.max_pending:
                self._pending[rid] = body
        self.wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def forward(self, client: httpx.Client, stop: threading.Event) -> bool:
        """Send what is pending; False when the target is a plain Loki (relay off)."""
        with self._lock:
            items, self._pending = list(self._pending.items()), {}
        for i, (rid, body) in enumerate(items):
            if stop.is_set():
                self._keep(items[i:])
                return True
            try:
                resp = client.post(self.url, content=body,
                                   headers={"Content-Type": "application/json"})
            except httpx.HTTPError as exc:
                if not self._failing:
                    self.log.warning("relaying heartbeats to %s failed, keeping each "
                                     "reporter's newest: %s", self.url, exc)
                self._failing = True
                self._keep(items[i:])
                return True
            if self._failing:
                self.log.info("relaying heartbeats to %s works again", self.url)
            self._failing = False
            if resp.status_code in (404, 405) and self.sender.auto:
                self.log.info("%s has no heartbeat endpoint (plain Loki?); relay off", self.url)
                return False
            if resp.status_code < 300:
                self.relayed += 1
                self._refused.pop(rid, None)
            elif self._refused.get(rid) != resp.status_code:
                if len(self._refused) >= self.max_pending:
                    self._refused.clear()
                self._refused[rid] = resp.status_code
                self.log.info("%s refused the heartbeat of %s (HTTP %d): %s", self.url, rid,
                              resp.status_code, resp.text.strip()[:300])
        return True

    def _keep(self, unsent: list[tuple[str, bytes]]) -> None:
        """Put back what was not sent; a newer heartbeat that came meanwhile wins."""
        with self._lock:
            for rid, body in unsent:
                if rid in self._pending or len(self._pending) < self.max_pending:
                    self._pending.setdefault(rid, body)
