"""Heartbeats to a Sluiceway server's pipeline page (off for a plain Loki)."""

from __future__ import annotations

import logging
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
    so heartbeats stop after one log line instead of failing forever.
    """

    def __init__(self, cfg: AgentConfig, status: Callable[[], dict[str, Any]],
                 stop: threading.Event) -> None:
        self.cfg, self.status, self.stop = cfg, status, stop
        self.auto = cfg.report_url == "auto"
        base = cfg.url if self.auto else cfg.report_url.rstrip("/")
        self.url = base + HEARTBEAT_PATH
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True, name="agent-heartbeat")

    def send(self, client: httpx.Client) -> bool:
        """One heartbeat; False when the target is not a Sluiceway server."""
        try:
            resp = client.post(self.url, content=orjson.dumps(heartbeat(self.status())),
                               headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            log.debug("heartbeat to %s failed: %s", self.url, exc)
            return True
        if resp.status_code in (404, 405) and self.auto:
            log.info("%s has no heartbeat endpoint (plain Loki?); heartbeats off", self.cfg.url)
            return False
        if resp.status_code >= 300:
            log.debug("heartbeat answered %d", resp.status_code)
        else:
            self.sent += 1
        return True

    def run(self) -> None:
        with http_client(self.cfg, min(5.0, self.cfg.heartbeat_interval)) as client:
            while not self.stop.is_set():
                if not self.send(client):
                    return
                self.stop.wait(self.cfg.heartbeat_interval)
