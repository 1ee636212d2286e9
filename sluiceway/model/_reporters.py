"""The last heartbeat of every agent and in-app client reporting to one place: the
server's pipeline page, and an agent's own view of the clients that report to it.

Cards are kept per tenant and id. A card belongs to the process that created it: its
heartbeats carry a token made once per process, and a heartbeat with another token is
refused while the card is fresh, so one caller cannot overwrite another's card. A stale
card can be taken over (a restarted process has a new token). A tenant holds at most
`max_reporters` cards; a new reporter past that replaces the stalest stale card, or is
refused when every card is fresh. A card without a heartbeat for `forget_after_s` is
forgotten.

Each card keeps a short history of its lost-line total (`LossHistory`: at most one
sample per `HISTORY_STEP_S`, back to one hour), so a snapshot says how many lines were
lost in the last 5 and 60 minutes beside the total since the process started.
"""

from __future__ import annotations

import threading
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from sluiceway.model._heartbeat import Heartbeat

DEFAULT_INTERVAL_S = 5.0
DEFAULT_FORGET_AFTER_S = 3600.0
# "lost in the last 5 / 60 minutes": the windows a snapshot reports, in seconds.
LOSS_WINDOWS = {"5m": 300.0, "60m": 3600.0}
HISTORY_S = max(LOSS_WINDOWS.values())
HISTORY_STEP_S = 15.0
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


class LossHistory:
    """One reporter's lost-line total over the last hour.

    A sample is kept only when the total changes, at most one per `HISTORY_STEP_S` (a
    change within a step moves the step's value, so a window's edge is known to within
    a step), and the first one, taken when the reporter was first seen, is the baseline:
    losses before it are not in any window. Samples older than `HISTORY_S` are dropped
    but the newest of them, which is the total at the start of the longest window. So
    at most `HISTORY_S / HISTORY_STEP_S + 2` samples, however chatty the reporter.
    """

    __slots__ = ("lost", "ts")

    def __init__(self, now: float, lost: int) -> None:
        self.ts = array("d", [now])
        self.lost = array("q", [lost])

    def add(self, now: float, lost: int) -> None:
        if lost < self.lost[-1]:  # the counter went back: a new count, a new history
            self.ts, self.lost = array("d", [now]), array("q", [lost])
            return
        if lost != self.lost[-1]:
            if len(self.ts) > 1 and now - self.ts[-1] < HISTORY_STEP_S:
                self.lost[-1] = lost
            else:
                self.ts.append(now)
                self.lost.append(lost)
        while len(self.ts) > 1 and self.ts[1] <= now - HISTORY_S:
            self.ts.pop(0)
            self.lost.pop(0)

    def since(self, now: float, window_s: float) -> int:
        """Lines lost in the last `window_s` (since the baseline, if that is younger)."""
        i = bisect_right(self.ts, now - window_s) - 1
        return int(self.lost[-1] - self.lost[max(i, 0)])

    def covers_s(self, now: float) -> float:
        """How far back the history reaches (at most `HISTORY_S`)."""
        return min(HISTORY_S, max(0.0, now - self.ts[0]))


@dataclass(slots=True)
class _Card:
    token: str
    received: float
    interval_s: float
    kind: str
    name: str
    report: bytes  # the heartbeat as sent, without its token (JSON)
    losses: LossHistory


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


def _lost(report: dict[str, Any]) -> int:
    lines = report.get("lines") or {}
    return int(lines.get("lost", 0) or 0)


class PipelineRegistry:
    def __init__(self, stale_factor: float = 3.0, max_reporters: int = 1000,
                 forget_after_s: float = DEFAULT_FORGET_AFTER_S,
                 clock: Callable[[], float] = time.time,
                 limit_name: str = "server.heartbeat_max_reporters") -> None:
        self.stale_factor = stale_factor
        self.limit_name = limit_name
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
        lost = _lost(report)
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
                            f"{self.max_reporters} ({self.limit_name}), none "
                            "of them stale; a new one is kept once one goes stale"))
                    del cards[min(stale)[1]]
            if old is not None and old.token == token:
                losses = old.losses
                losses.add(now, lost)
            else:  # a new reporter, or a new process: its counters start again
                losses = LossHistory(now, lost)
            cards[rid] = _Card(token, now, float(report.get("interval_s", DEFAULT_INTERVAL_S)),
                               str(report["kind"]), str(body.get("name", "")),
                               orjson.dumps(body), losses)

    def _forget(self, cards: dict[str, _Card], now: float) -> None:
        for key in [k for k, c in cards.items() if now - c.received > self.forget_after_s]:
            del cards[key]

    def snapshot(self, tenants: list[str]) -> list[dict[str, Any]]:
        """The cards of `tenants`, each with its `tenant`, `received_at`, `age_s`,
        `stale`, `lost_recent` (lines lost in the last 5 and 60 minutes, over
        `history_s` of history) and `forget_after_s`; never a token."""
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
            recent = {(t, rid): ({k: c.losses.since(now, w) for k, w in LOSS_WINDOWS.items()},
                                 c.losses.covers_s(now)) for t, _, _, rid, c in out}
        rows: list[dict[str, Any]] = []
        for tenant, _, _, rid, c in sorted(out, key=lambda r: r[:4]):
            age = now - c.received
            lost_recent, covers = recent[tenant, rid]
            rows.append({**orjson.loads(c.report), "tenant": tenant, "received_at": c.received,
                         "age_s": round(age, 3), "stale": self._stale(c, now),
                         "lost_recent": lost_recent, "history_s": round(covers, 3),
                         "forget_after_s": self.forget_after_s})
        return rows
