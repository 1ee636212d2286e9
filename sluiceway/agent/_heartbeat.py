"""Heartbeats to a Sluiceway server's pipeline page (off for a plain Loki)."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from sluiceway.agent._config import AgentConfig
from sluiceway.agent._report import heartbeat
from sluiceway.agent._ship import http_client

log = logging.getLogger("sluiceway.agent")
HEARTBEAT_PATH = "/sluiceway/api/v1/heartbeat"


class Heartbeat:
    """POSTs the heartbeat JSON every `heartbeat_interval`.

    With `report_url: auto` the target is `url`; a 404 or 405 there means a plain Loki,
    so heartbeats stop after one log line instead of failing forever. Each heartbeat
    carries `token`, made once per process: the server keeps the agent's card for the
    process that holds it, and answers 409 to this one until a previous run's card (same
    id, another token) has gone stale.
    """

    def __init__(self, cfg: AgentConfig, status: Callable[[], dict[str, Any]],
                 stop: threading.Event) -> None:
        self.cfg, self.status, self.stop = cfg, status, stop
        self.auto = cfg.report_url == "auto"
        base = cfg.url if self.auto else cfg.report_url.rstrip("/")
        self.url = base + HEARTBEAT_PATH
        self.token = secrets.token_hex(16)
        self.sent = 0
        self.refused: int | None = None  # the last refusal logged, so it is logged once
        self.thread = threading.Thread(target=self.run, daemon=True, name="agent-heartbeat")

    def send(self, client: httpx.Client) -> bool:
        """One heartbeat; False when the target is not a Sluiceway server."""
        try:
            body = {**heartbeat(self.status()), "token": self.token}
            resp = client.post(self.url, content=orjson.dumps(body),
                               headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            log.debug("heartbeat to %s failed: %s", self.url, exc)
            return True
        if resp.status_code in (404, 405) and self.auto:
            log.info("%s has no heartbeat endpoint (plain Loki?); heartbeats off", self.cfg.url)
            return False
        if resp.status_code < 300:
            self.sent += 1
            self.refused = None
        elif resp.status_code in (409, 413, 429) and self.refused != resp.status_code:
            # Refused, not failed: the next beats try again (a 409 lasts until the
            # previous run's card goes stale). Said once, not on every beat.
            self.refused = resp.status_code
            level = logging.INFO if resp.status_code == 409 else logging.WARNING
            log.log(level, "heartbeat refused by %s (HTTP %d), trying again each beat: %s",
                    self.url, resp.status_code, resp.text.strip()[:300])
        else:
            log.debug("heartbeat answered %d", resp.status_code)
        return True

    def run(self) -> None:
        with http_client(self.cfg, min(5.0, self.cfg.heartbeat_interval)) as client:
            while not self.stop.is_set():
                if not self.send(client):
                    return
                self.stop.wait(self.cfg.heartbeat_interval)
