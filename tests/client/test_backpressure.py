"""A stalled sink never stalls the caller beyond its policy; every loss is counted."""

from __future__ import annotations

import json
import time

from sluiceway import client
from tests.client.helpers import GateSink, MemorySink, call_times_us, wait_until


def test_hanging_sink_does_not_slow_the_caller_drop() -> None:
    gate = GateSink()
    client.configure(sinks=[gate], queue_size=1000, when_full="drop", capture_stdlib=False)
    log = client.get_logger("hot")
    log.info("first")
    assert gate.entered.wait(5)  # the worker is now stuck inside the sink, forever
    # The sink is stuck inside a write and never returns until released: 20,000 calls
    # can only complete because none of them waits for it (bench/client.py times them).
    for i in range(20_000):
        log.info("order", order_id=i)
    s = client.stats()
    assert s["enqueued"] == 1001 and s["dropped"] == 19_000
    assert s["dropped_by_reason"] == {"full": 19_000}
    assert s["dropped_by_level"] == {"INFO": 19_000}
    assert not client.flush(timeout=0.2)  # honest: the sink is hung
    gate.release()
    assert client.flush(timeout=5)
    assert len(gate.records) == 1001
    assert client.stats()["written"] == 1001


def test_drop_counts_are_exact_and_add_up() -> None:
    gate = GateSink()
    client.configure(sinks=[gate], queue_size=100, when_full="drop", capture_stdlib=False)
    log = client.get_logger("x")
    log.info("warmup")
    assert gate.entered.wait(5)
    for i in range(5000):
        (log.debug if i % 2 else log.info)("m", i=i)  # DEBUG is below INFO: filtered
    s = client.stats()
    assert s["enqueued"] == 101 and s["dropped"] == 2400
    gate.release()
    assert client.flush(5)
    delivered = [r["i"] for r in gate.records[1:]]
    assert delivered == list(range(0, 200, 2))  # the first 100 INFO, in order
    assert len(gate.records) + client.stats()["dropped"] == 2501


def test_drop_with_wait_ms_waits_that_long() -> None:
    gate = GateSink()
    client.configure(sinks=[gate], queue_size=10, when_full="drop", wait_ms=20,
                     capture_stdlib=False)
    log = client.get_logger("x")
    log.info("warmup")
    assert gate.entered.wait(5)
    for i in range(10):
        log.info("fill", i=i)
    times = call_times_us(lambda i: log.info("late", i=i), 20)
    assert times[0] >= 19_000  # each waited its wait_ms (lower bound: no clock race)
    assert client.stats()["dropped_by_reason"] == {"full": 20}
    gate.release()


def test_block_with_timeout_waits_then_drops() -> None:
    gate = GateSink()
    client.configure(sinks=[gate], queue_size=10, when_full="block", timeout=0.05,
                     capture_stdlib=False)
    log = client.get_logger("x")
    log.info("warmup")
    assert gate.entered.wait(5)
    for i in range(10):
        log.info("fill", i=i)
    assert client.stats()["dropped"] == 0  # room for all ten: none waited out its timeout
    times = call_times_us(lambda i: log.info("blocked", i=i), 10)
    assert times[0] >= 49_000  # each waited the policy's timeout, then gave up (counted)
    assert client.stats()["dropped_by_reason"] == {"timeout": 10}
    gate.release()
    assert client.flush(5) and len(gate.records) == 11


def test_block_without_timeout_loses_nothing_with_a_slow_sink() -> None:
    class Slow(MemorySink):
        def write_batch(self, records: list[dict[str, object]]) -> None:
            time.sleep(0.01)
            super().write_batch(records)

    sink = Slow()
    client.configure(sinks=[sink], queue_size=50, when_full="block", capture_stdlib=False,
                     batch_size=20)
    log = client.get_logger("x")
    for i in range(1000):
        log.info("m", i=i)
    assert client.flush(10)
    assert [r["i"] for r in sink.records] == list(range(1000))
    assert client.stats()["dropped"] == 0


def test_protected_levels_survive_a_debug_flood() -> None:
    gate = GateSink()
    client.configure(sinks=[gate], level="DEBUG", queue_size=200, when_full="drop",
                     capture_stdlib=False)
    log = client.get_logger("flood")
    log.debug("warmup")
    assert gate.entered.wait(5)
    important = []
    for i in range(20_000):
        log.debug("noise", i=i)
        if i % 200 == 0:
            lvl = ["error", "critical", "audit", "security"][(i // 200) % 4]
            getattr(log, lvl)("important", i=i)
            important.append(i)
    s = client.stats()
    assert s["dropped_by_level"].get("ERROR", 0) == 0
    assert s["dropped_by_reason"]["evicted"] == len(important) - 1  # the first found room
    gate.release()
    assert client.flush(5)
    got = [r["i"] for r in gate.records if r["msg"] == "important"]
    assert got == important  # every protected record, in order


def test_a_slow_sink_does_not_slow_another() -> None:
    gate, fast = GateSink("stuck"), MemorySink("fast")
    client.configure(sinks=[gate, fast], queue_size=1000, when_full="drop",
                     capture_stdlib=False)
    log = client.get_logger("two")
    for i in range(5000):
        log.info("m", i=i)
        if i % 500 == 0:
            time.sleep(0.01)  # let the fast worker keep up; the stuck one cannot
    wait_until(lambda: len(fast.records) == 5000, 10)
    s = client.stats()["sinks"]
    assert s["fast"]["written"] == 5000 and s["fast"]["dropped"] == 0
    assert s["stuck"]["written"] == 0 and s["stuck"]["dropped"] == 5000 - 1000 - 1
    assert s["stuck"]["stalled_s"] > 0
    gate.release()


def test_loki_outage_with_a_stalling_server_costs_the_caller_nothing() -> None:
    from tests.client.helpers import PushServer

    stalling = {"on": True}

    def respond(i: int) -> tuple[int, dict[str, str]]:
        while stalling["on"]:  # the server accepted the request and went silent
            time.sleep(0.02)
        return 204, {}

    srv = PushServer(respond=respond)
    try:
        client.configure(sinks=[client.LokiSink(srv.url, timeout=0.3, batch_wait=0.05)],
                         queue_size=5000, capture_stdlib=False)
        log = client.get_logger("outage")
        for i in range(3000):  # the server holds every push open: none of these waits
            log.info("during outage", i=i)
        wait_until(lambda: client.stats()["sink_errors"] >= 2)  # timeouts, retried
        stalling["on"] = False
        assert client.flush(15)
        s = client.stats()
        assert s["written"] == 3000 and s["dropped"] == 0
        got = sorted({json.loads(line)["i"] for line in srv.lines})
        assert got == list(range(3000))
    finally:
        stalling["on"] = False
        srv.close()
