"""The client's sinks run on the agent's delivery loop (`sluiceway.ship`): a batch sent
again is counted once, drops and recoveries are logged once with counts and durations,
and the heartbeat is the typed model in records."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from sluiceway import client
from sluiceway.model import Heartbeat
from tests.client.helpers import GateSink, MemorySink, wait_until


def test_a_batch_sent_again_after_a_failure_is_counted_once(tmp_path: Path) -> None:
    """The sink finds the batch too large, takes the first half, fails on the second:
    in spill mode the batch goes to disk and comes back whole. The sink sees the first
    half twice (at least once); `written` counts each record once."""

    class Picky(MemorySink):
        failed = False

        def write_batch(self, records: list[dict[str, Any]]) -> None:
            if len(records) > 2:
                raise client.SinkTooLarge("at most 2 per write")
            if records[0]["i"] == 2 and not self.failed:
                self.failed = True
                raise client.SinkRetryable("blip", retry_after=0)
            super().write_batch(records)

    sink = Picky()
    sink.batch_wait = 0.3  # type: ignore[attr-defined] # the 4 records in one batch
    client.configure(sinks=[sink], when_full="spill", spill_dir=tmp_path / "spill",
                     capture_stdlib=False, report_url=None)
    log = client.get_logger("x")
    for i in range(4):
        log.info("r", i=i)
    assert client.flush(10)
    assert [r["i"] for r in sink.records] == [0, 1, 0, 1, 2, 3]
    s = client.stats()
    assert s["written"] == 4 and s["written_by_level"] == {"INFO": 4}
    assert s["dropped"] == 0


def test_drops_are_logged_when_they_start_and_when_they_stop(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sluiceway.client")
    gate = GateSink()
    client.configure(sinks=[gate], queue_size=10, when_full="drop", capture_stdlib=False,
                     report_url=None)
    log = client.get_logger("x")
    log.info("first")
    assert gate.entered.wait(5)
    for i in range(50):
        log.info("m", i=i)
    msgs = lambda needle: [r.getMessage() for r in caplog.records  # noqa: E731
                           if needle in r.getMessage()]
    wait_until(lambda: bool(msgs("dropping lines")), 10)
    (start,) = msgs("dropping lines")
    assert start.startswith("sluiceway sink gate: dropping lines (queue gate, when_full=drop)")
    assert "40 so far (full: 40)" in start, start
    gate.release()
    wait_until(lambda: bool(msgs("stopped dropping")), 15)
    (stop,) = msgs("stopped dropping")
    assert "40 lines dropped (full: 40)" in stop, stop
    assert client.flush(5)


def test_the_heartbeat_is_the_model_in_records() -> None:
    gate = GateSink("loki")
    client.configure(sinks=[gate], queue_size=5, when_full="drop", capture_stdlib=False,
                     report_url=None, name="hb-model")
    log = client.get_logger("x")
    log.info("first")
    assert gate.entered.wait(5)
    for i in range(20):
        log.info("m", i=i)
    from sluiceway.client._heartbeat import heartbeat_payload
    from sluiceway.client._runtime import state

    assert state.rt is not None
    hb = Heartbeat.model_validate({**heartbeat_payload(state.rt), "token": "t"})
    assert hb.kind == "client" and hb.name == "hb-model"
    assert hb.queue.depth == 5 == hb.queue.capacity and hb.queue.in_flight == 1
    assert hb.lines.read == 21 and hb.lines.enqueued == 6 and hb.lines.dropped == 15
    assert hb.lost_by_reason == {"full": 15} and hb.lines.lost == 15
    gate.release()
    assert client.flush(5)
