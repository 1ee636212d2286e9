"""The last heartbeat of every agent and in-app client reporting to this server.

Cards are kept per tenant and id. A card belongs to the process that created it: its
heartbeats carry a token made once per process, and a heartbeat with another token is
refused while the card is fresh, so one caller cannot overwrite another's card. A stale
card can be taken over (a restarted process has a new token). A tenant holds at most
`max_reporters` cards; a new reporter past that replaces the stalest stale card, or is
refused when every card is fresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from sluiceway.model import Heartbeat

DEFAULT_INTERVAL_S = 5.0
# What a field is for, added to the message when it is the one that is wrong.
_HINTS = {
    "token": "a string of 1 to 256 characters made once per process: it proves the card "
             "is this process's",
    "interval_s": "a positive number of seconds",
    "kind": '"agent" or "client"',
}


class HeartbeatRefused(Exception):
    """A heartbeat that is not kept: `status` is the HTTP answer, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class _Card:
    token: str
    received: float
    interval_s: float
    kind: str
    name: str
    report: bytes  # the heartbeat as sent, without its token


def parse_heartbeat(body: bytes) -> dict[str, Any]:
    """The heartbeat (`sluiceway.model.Heartbeat`, validated) as plain data, or
    HeartbeatRefused(400) naming each field that is wrong."""
    try:
        report = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HeartbeatRefused(400, f"heartbeat is not valid JSON: {exc}") from None
    if not isinstance(report, dict):
        raise HeartbeatRefused(400, "heartbeat must be a JSON object (see "
                                    "sluiceway.model.Heartbeat)")
    try:
        hb = Heartbeat.model_validate(report)
    except ValidationError as exc:
        raise HeartbeatRefused(400, "invalid heartbeat: " + _errors(exc)) from None
    return hb.model_dump(mode="json")


def _errors(exc: ValidationError) -> str:
    out = []
    for err in exc.errors()[:10]:
        where = ".".join(str(p) for p in err["loc"]) or "(the object)"
        hint = _HINTS.get(where)
        out.append(f'"{where}": {err["msg"]}' + (f" ({hint})" if hint else ""))
    more = exc.error_count() - 10
    return "; ".join(out) + (f"; and {more} more" if more > 0 else "")


class PipelineRegistry:
    def __init__(self, stale_factor: float = 3.0, max_reporters: int = 1000,
                 forget_after_s: float = 24 * 3600,
                 clock: Callable[[], float] = time.time) -> None:
        self.stale_factor = stale_factor
        self.max_reporters = max_reporters
        self.forget_after_s = forget_after_s
        self.clock = clock
        self._cards: dict[str, dict[str, _Card]] = {}
        self._lock = threading.Lock()

    def _stale(self, card: _Card, now: float) -> bool:
        return now - card.received > self.stale_factor * card.interval_s

    def record(self, tenant: str, report: dict[str, Any]) -> None:
        """Keep `report` (from `parse_heartbeat`) as the card of (tenant, id); raises
        HeartbeatRefused 409 (the card is another process's) or 429 (tenant full)."""
        now = self.clock()
        rid, token = str(report["id"]), str(report["token"])
        body = {k: v for k, v in report.items() if k != "token"}
        card = _Card(token, now, float(report.get("interval_s", DEFAULT_INTERVAL_S)),
                     str(report["kind"]), str(body.get("name", "")), orjson.dumps(body))
        with self._lock:
            cards = self._cards.setdefault(tenant, {})
            old = cards.get(rid)
            if old is not None:
                if old.token != token and not self._stale(old, now):
                    raise HeartbeatRefused(409, (
                        f"heartbeat id {rid!r} belongs to another process (its token "
                        "differs) until that card goes stale, "
                        f"{self.stale_factor:g} × interval_s without a heartbeat; a "
                        "restarted process takes it over then. Use an id of your own."))
            elif len(cards) >= self.max_reporters:
                self._forget(cards, now)
                if len(cards) >= self.max_reporters:
                    stale = [(c.received, k) for k, c in cards.items() if self._stale(c, now)]
                    if not stale:
                        raise HeartbeatRefused(429, (
                            f"too many reporters for tenant {tenant!r}: "
                            f"{self.max_reporters} (server.heartbeat_max_reporters), none "
                            "of them stale; a new one is kept once one goes stale"))
                    del cards[min(stale)[1]]
            cards[rid] = card

    def _forget(self, cards: dict[str, _Card], now: float) -> None:
        for key in [k for k, c in cards.items() if now - c.received > self.forget_after_s]:
            del cards[key]

    def snapshot(self, tenants: list[str]) -> list[dict[str, Any]]:
        """The cards of `tenants`, each with its `tenant`, `received_at`, `age_s` and
        `stale`; never a token."""
        now = self.clock()
        out: list[tuple[str, str, str, str, _Card]] = []
        with self._lock:
            for tenant in tenants:
                cards = self._cards.get(tenant)
                if cards is None:
                    continue
                self._forget(cards, now)
                if not cards:
                    del self._cards[tenant]
                for rid, c in cards.items():
                    out.append((tenant, c.kind, c.name, rid, c))
        rows: list[dict[str, Any]] = []
        for tenant, _, _, _, c in sorted(out, key=lambda r: r[:4]):
            age = now - c.received
            rows.append({**orjson.loads(c.report), "tenant": tenant, "received_at": c.received,
                         "age_s": round(age, 3), "stale": self._stale(c, now)})
        return rows
