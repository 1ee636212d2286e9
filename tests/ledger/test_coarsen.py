"""The durable ledger stays bounded: minute buckets older than a day merge into hourly
ones (and reporters' points thin to one an hour); `since`/`until` still answer, at
the hour's grain, and the same after a restart (the log read back)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sluiceway.model import LedgerGroup, encode_ledger
from sluiceway.server._ledger import Ledger

DAY = 86400.0
T0 = 1_700_000_000 // 3600 * 3600  # an hour's start


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def beat(emitted: int) -> dict[str, Any]:
    return {"kind": "client", "interval_s": 60.0, "ledger": [
        {"in_flight": {}, "entries": [{"source": "s", "epoch": "e", "emitted": emitted}]}]}


def buckets(led: Ledger) -> int:
    return sum(len(b) for _, _, _, b in led.state()["t"]["epochs"])


def points(led: Ledger) -> int:
    return sum(len(p) for *_, p in led.state()["t"]["points"])


def fill(led: Ledger, clock: Clock) -> None:
    """Two hours of storage, 10 numbers a minute, one report a minute."""
    n = 0
    for minute in range(120):
        clock.now = T0 + minute * 60 + 1
        h = encode_ledger([LedgerGroup("s", "e", [(n, n + 10)])])
        led.stored("t", h, 10, 10)
        led.stored("t", None, 2, 2)  # unattributed
        n += 10
        led.reported("t", "c1", beat(n))


def test_old_minutes_merge_into_hours_and_still_answer(tmp_path: Path) -> None:
    clock = Clock(T0)
    led = Ledger(tmp_path / "ledger", sync=False, clock=clock)
    fill(led, clock)
    assert buckets(led) == 120 and points(led) == 120
    first_hour = led.answer(["t"], since=T0, until=T0 + 3600)
    assert first_hour["sources"][0]["stored"] == 600
    assert first_hour["unattributed"] == 120

    clock.now = T0 + 2 * 3600 + DAY  # a day after both hours
    led.stored("t", None, 1, 1)  # any write may coarsen (at most once a minute)
    assert buckets(led) == 2 and points(led) == 2
    # the same answers at the hour's grain
    a = led.answer(["t"], since=T0, until=T0 + 3600)
    [row] = a["sources"]
    assert (row["stored"], a["unattributed"]) == (600, 120)
    a = led.answer(["t"], since=T0 + 3600, until=T0 + 7200)
    assert a["unattributed"] == 120
    whole = led.answer(["t"])["sources"][0]
    assert (whole["emitted"], whole["stored"], whole["unexplained"]) == (1200, 1200, 0)
    # within an hour the grain is the hour: a bucket counts wholly
    assert led.answer(["t"], until=T0 + 1800)["sources"][0]["stored"] == 600
    led.close()

    again = Ledger(tmp_path / "ledger", sync=False, clock=clock)  # the log read back
    assert buckets(again) == 2
    whole = again.answer(["t"])["sources"][0]
    assert (whole["emitted"], whole["stored"], whole["unexplained"]) == (1200, 1200, 0)
    again.close()
