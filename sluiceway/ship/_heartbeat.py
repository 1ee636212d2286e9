"""Heartbeats to a Sluiceway server's pipeline page, for the agent and the client alike.

Each beat is a `sluiceway.model.Heartbeat`, validated here before it is sent, so a
sender can never send what the server refuses as malformed.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

import httpx

from sluiceway.model import Heartbeat

HEARTBEAT_PATH = "/sluiceway/api/v1/heartbeat"


class HeartbeatSender:
    """POSTs `build()` (the heartbeat's fields but its token) every `interval` seconds
    to `base_url` + `HEARTBEAT_PATH` with the HTTP client `http()` makes.

    `auto`: the target was not named, only guessed (the push target): a 404 or 405 there
    means a plain Loki, so heartbeats stop after one log line instead of failing
    forever. Each heartbeat carries `token`, made once per process: the server keeps
    the card for the process that holds it and answers 409 to another until that card
    goes stale. A refusal (409, 413, 429) or an unreachable server is logged once, not
    on every beat, and again once it changes.
    """

    def __init__(self, base_url: str, build: Callable[[], dict[str, Any]],
                 http: Callable[[], httpx.Client], interval: float, stop: threading.Event,
                 *, auto: bool, log: logging.Logger, name: str = "sluiceway-heartbeat") -> None:
        self.url = base_url.rstrip("/") + HEARTBEAT_PATH
        self.build, self.http, self.interval, self.stop = build, http, interval, stop
        self.auto = auto
        self.log = log
        self.token = secrets.token_hex(16)
        self.sent = 0
        self.refused: int | None = None  # the last refusal logged, so it is logged once
        self.failing = False
        self.off = False  # the target turned out a plain Loki: no more heartbeats
        self.thread = threading.Thread(target=self.run, daemon=True, name=name)

    def heartbeat(self) -> Heartbeat:
        return Heartbeat.model_validate({**self.build(), "token": self.token})

    def send(self, client: httpx.Client) -> bool:
        """One heartbeat; False when the target is not a Sluiceway server."""
        try:
            body = self.heartbeat().model_dump_json(exclude_none=True)
            resp = client.post(self.url, content=body,
                               headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            if not self.failing:
                self.log.warning("heartbeat to %s failed, trying again each beat: %s",
                                 self.url, exc)
            self.failing = True
            return True
        self.failing = False
        if resp.status_code in (404, 405) and self.auto:
            if not self.off:
                self.log.info("%s has no heartbeat endpoint (plain Loki?); heartbeats off",
                              self.url)
            self.off = True
            return False
        if resp.status_code < 300:
            self.sent += 1
            self.refused = None
        elif self.refused != resp.status_code:
            # Refused, not failed: the next beats try again (a 409 lasts until the
            # previous run's card goes stale). Said once, not on every beat.
            self.refused = resp.status_code
            level = logging.INFO if resp.status_code == 409 else logging.WARNING
            self.log.log(level, "heartbeat refused by %s (HTTP %d), trying again each beat: "
                         "%s", self.url, resp.status_code, resp.text.strip()[:300])
        return True

    def final(self, timeout: float = 2.0) -> bool:
        """One last beat, marked `final`, from a process that stopped cleanly (its
        figures are settled); True if the server took it."""
        if self.off:
            return False
        build = self.build

        def last() -> dict[str, Any]:
            return {**build(), "final": True}

        self.build = last
        try:
            with self.http() as client:
                client.timeout = httpx.Timeout(timeout)
                sent = self.sent
                self.send(client)
                return self.sent > sent
        except Exception:  # exiting: say it, never raise
            self.log.debug("final heartbeat not sent", exc_info=True)
            return False
        finally:
            self.build = build

    def run(self) -> None:
        with self.http() as client:
            while not self.stop.is_set():
                try:
                    if not self.send(client):
                        return
                except Exception:  # a figure that does not validate: a bug, said once
                    if not self.failing:
                        self.log.exception("heartbeat not sent")
                    self.failing = True
                self.stop.wait(self.interval)
