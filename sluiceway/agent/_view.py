"""The agent's own pipeline view: the server's Pipeline page, served on the agent's listen
address, so it keeps working while the server the agent reports to is down.

- `POST /sluiceway/api/v1/heartbeat`: in-app clients (and other agents) may report to
  the agent (`report_url: http://<agent listen>`). Each heartbeat is validated with
  `sluiceway.model.Heartbeat`, kept as a card by the same `PipelineRegistry` the server
  uses (token ownership, staleness, `heartbeat_forget_after`) and relayed as it came to
  the agent's own report target, with the agent's tenant and credentials
  (`sluiceway.ship.HeartbeatRelay`: only the newest heartbeat of each reporter waits
  while the server does not answer, and the reporter is never held up).
- `GET /sluiceway/api/v1/pipeline`: the agent's own card (taken afresh) and the cards
  of the reporters it keeps, in the server's shape.
- `GET /`: `pipeline.html`, the UI's Pipeline page alone, and the UI's static files.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from sluiceway.model import HeartbeatRefused, PipelineRegistry, parse_heartbeat
from sluiceway.ship import HEARTBEAT_PATH, HeartbeatRelay, HeartbeatSender

log = logging.getLogger("sluiceway.agent")

PIPELINE_PATH = "/sluiceway/api/v1/pipeline"
# The web UI's files (the `sluiceway.ui` package holds no Python, only these).
UI_DIR = Path(__file__).resolve().parent.parent / "ui" / "static"
PAGE = "pipeline.html"
MAX_HEARTBEAT = 64 * 1024  # as the server's default heartbeat_max_size
MAX_REPORTERS = 1000
TENANT = ""  # the agent keeps one set of cards: its reporters are relayed as its tenant
# The thread takes the agent's own card at most this often (its loss history keeps one
# sample per 15 s); a page's poll takes it afresh.
OWN_EVERY_S = 5.0

Answer = tuple[int, bytes, str]


def view_url(address: str) -> str:
    """The view's URL from the bound `host:port` (a wildcard host: this host's name)."""
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = socket.gethostname()
    return f"http://{host}:{port}/"


def _text(code: int, message: str) -> Answer:
    return code, (message.rstrip("\n") + "\n").encode(), "text/plain; charset=utf-8"


class PipelineView:
    """The cards behind the view; `own()` is the agent's heartbeat (token aside)."""

    def __init__(self, own: Callable[[], dict[str, Any]], interval: float,
                 forget_after: float, stop: threading.Event) -> None:
        self._own = own
        self.interval = interval
        self.stop = stop
        self.url: str | None = None
        self.cards = PipelineRegistry(max_reporters=MAX_REPORTERS, forget_after_s=forget_after,
                                      limit_name="the agent's pipeline view keeps that many")
        self._token = secrets.token_hex(16)
        self._own_id = ""
        self._own_at = 0.0  # when the thread last took the agent's own card
        self.max_body = MAX_HEARTBEAT
        self._relay: HeartbeatRelay | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="agent-view")

    # -- the agent's own card --------------------------------------------------------------
    def own(self) -> dict[str, Any]:
        """The agent's heartbeat fields, with the address of this view."""
        hb = self._own()
        if self.url is not None:
            hb["view_url"] = self.url
        return hb

    def _record_own(self) -> None:
        own = self.own()
        self._own_id = str(own.get("id", ""))
        try:
            self.cards.record(TENANT, parse_heartbeat(json.dumps(
                {**own, "token": self._token}).encode()))
        except HeartbeatRefused as exc:  # a reporter posing as this agent: never kept
            log.warning("the agent's own card was not kept: %s", exc)

    # -- HTTP --------------------------------------------------------------------------
    def get(self, path: str) -> Answer | None:
        """The answer to a GET of `path`, or None (not the view's)."""
        if path == PIPELINE_PATH:
            self._record_own()
            rows = self.cards.snapshot([TENANT])
            for row in rows:  # the agent serving this view (the page's "here")
                row["here"] = row["id"] == self._own_id
            body = json.dumps({"status": "success", "data": rows})
            return 200, body.encode(), "application/json"
        if path in ("/", "/index.html"):
            path = "/" + PAGE
        return self._static(path)

    def _static(self, path: str) -> Answer | None:
        try:
            target = (UI_DIR / path.lstrip("/")).resolve()
        except (OSError, ValueError):
            return None
        if not target.is_relative_to(UI_DIR) or not target.is_file():
            return None
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "image/svg+xml"):
            ctype += "; charset=utf-8"
        return 200, target.read_bytes(), ctype

    def receive(self, path: str, body: bytes) -> Answer:
        """A reporter's heartbeat: 204 kept (and queued for the relay), 400, 409, 429."""
        if path != HEARTBEAT_PATH:
            return _text(404, "not found")
        try:
            report = parse_heartbeat(body)
            self.cards.record(TENANT, report)
        except HeartbeatRefused as exc:
            return _text(exc.status, str(exc))
        if self._relay is not None:
            self._relay.offer(str(report["id"]), body)
        return 204, b"", "text/plain"

    # -- relay and history -------------------------------------------------------------
    def start(self, sender: HeartbeatSender | None) -> PipelineView:
        """Relay reporters' heartbeats where `sender` sends the agent's (None: keep them
        here only), and take the agent's own card every interval."""
        if sender is not None:
            self._relay = HeartbeatRelay(sender, log, max_pending=MAX_REPORTERS)
        self.thread.start()
        return self

    def _run(self) -> None:
        """The agent's own card is taken every interval (at least 5 s apart: its loss
        history grows while nobody looks); reporters' heartbeats are relayed as they come."""
        client: httpx.Client | None = None
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if now - self._own_at >= max(self.interval, OWN_EVERY_S):
                    self._own_at = now
                    self._record_own()
                relay = self._relay
                if relay is not None:
                    if client is None:
                        client = relay.http()
                    if not relay.forward(client, self.stop):
                        self._relay = None
                    relay.wake.wait(self.interval)
                    relay.wake.clear()
                else:
                    self.stop.wait(self.interval)
        finally:
            if client is not None:
                client.close()
