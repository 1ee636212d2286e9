"""The one delivery loop over a real buffer (memory and spill), with destinations that are
plain objects: the log lines it owes (drops started / stopped, spill started / drained,
backend down / back, with counts and durations), counting once per batch, and the one
Prometheus collector (every counter at 0 from the start, latency by status)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sluiceway.buffer import Buffer, BufferConfig
from sluiceway.ship import DeliveryLoop, Figures, Part, QueueCollector, RetryPolicy
from sluiceway.ship import _watch as watch_mod
from sluiceway.wire import PushAnswer

log = logging.getLogger("sluiceway.test-ship")


class Destination:
    """Takes parts of ints; `answer(lines)` decides each send's answer; `gate` (when
    set) holds sends until it opens: a destination that hangs."""

    def __init__(self, answer: Callable[[list[int]], PushAnswer] | None = None) -> None:
        self.answer = answer or (lambda lines: PushAnswer("shipped", 204))
        self.got: list[int] = []
        self.sends = 0
        self.gate: threading.Event | None = None

    def parts(self, items: list[int]) -> list[Part]:
        return [Part(list(items), len(items))]

    def send(self, part: Part) -> PushAnswer:
        self.sends += 1
        if self.gate is not None:
            self.gate.wait(30)
        ans = self.answer(part.payload)
        if ans.kind == "shipped":
            self.got.extend(part.payload)
        return ans

    def split(self, part: Part) -> list[Part] | None:
        items: list[int] = part.payload
        if len(items) < 2:
            return None
        h = len(items) // 2
        return [Part(items[:h], h), Part(items[h:], len(items) - h)]


class Rig:
    def __init__(self, cfg: BufferConfig, dest: Destination, **kw: Any) -> None:
        self.buffer: Buffer[int] = Buffer(cfg, name="t")
        self.dest = dest
        self.loop = DeliveryLoop(self.buffer, dest, who="tester", target="dest", logger=log,
                                 retry=RetryPolicy(
                                     min_backoff=0.02, max_backoff=0.05,
                                     max_retries=kw.pop("max_retries", None),
                                     max_retries_in_spill=kw.pop("max_retries_in_spill", False)),
                                 max_units=kw.pop("max_units", 10), **kw)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.stop.set()
        if self.dest.gate is not None:
            self.dest.gate.set()
        self.thread.join(5)
        self.buffer.close()


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.close()


@pytest.fixture(autouse=True)
def quick_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_mod, "QUIET_S", 0.3)
    monkeypatch.setattr(watch_mod, "EVERY_S", 0.05)


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def messages(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


def test_drops_starting_and_stopping_are_logged_once_with_counts(
        rigs: list[Rig], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    dest = Destination()
    dest.gate = threading.Event()  # the destination hangs: the queue fills
    rig = Rig(BufferConfig(max_items=5, when_full="drop"), dest)
    rigs.append(rig)
    rig.buffer.put(0)
    wait_until(lambda: dest.sends == 1, "the first send")
    for i in range(1, 21):
        rig.buffer.put(i, tag="info")
    wait_until(lambda: messages(caplog, "dropping lines"), "the drop log line")
    (start,) = messages(caplog, "dropping lines")
    assert "tester: dropping lines" in start and "15 so far (full: 15)" in start, start
    dest.gate.set()
    wait_until(lambda: messages(caplog, "stopped dropping"), "the end of the drops")
    (stop,) = messages(caplog, "stopped dropping")
    assert "15 lines dropped (full: 15)" in stop and " s: " in stop, stop
    wait_until(lambda: len(dest.got) == 6, "the kept lines delivered")
    assert len(messages(caplog, "dropping lines")) == 1


def test_a_spill_starting_and_draining_is_logged_with_counts(
        tmp_path: Path, rigs: list[Rig], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    up = threading.Event()
    dest = Destination(lambda lines: PushAnswer("shipped", 204) if up.is_set()
                       else PushAnswer("retry", 503, "server_error", "HTTP 503: busy"))
    cfg = BufferConfig(max_items=100, when_full="spill", spill_dir=tmp_path / "spill",
                       record_items=5, segment_bytes=4096)
    rig = Rig(cfg, dest)
    rigs.append(rig)
    for i in range(30):
        rig.buffer.put(i)
    wait_until(lambda: messages(caplog, "spilling to disk"), "the spill log line")
    (start,) = messages(caplog, "spilling to disk")
    assert "(the backend is failing)" in start, start
    assert messages(caplog, "push to dest failed, retrying: HTTP 503: busy")
    up.set()
    wait_until(lambda: messages(caplog, "spill drained"), "the drained log line")
    (drained,) = messages(caplog, "spill drained")
    assert "30 lines went to disk, 30 read back and sent" in drained, drained
    assert sorted(dest.got) == list(range(30))
    (back,) = messages(caplog, "taking pushes again")
    assert "tester: backend dest is taking pushes again after" in back, back


def test_a_batch_sent_again_is_counted_once(tmp_path: Path, rigs: list[Rig]) -> None:
    """413 splits the batch, the first half is taken, the second fails: in spill mode
    the whole batch goes to disk and comes back. The destination sees the first half
    twice (at least once), the counters see every line once."""
    failed = threading.Event()

    def answer(lines: list[int]) -> PushAnswer:
        if len(lines) > 2:
            return PushAnswer("too_large", 413, "too_large", "HTTP 413")
        if lines == [2, 3] and not failed.is_set():
            failed.set()
            return PushAnswer("retry", 0, "retries_exhausted", "ConnectError")
        return PushAnswer("shipped", 204)

    cfg = BufferConfig(max_items=100, when_full="spill", spill_dir=tmp_path / "spill")
    dest = Destination(answer)
    rig = Rig(cfg, dest, linger=0.3)
    rigs.append(rig)
    for i in range(4):
        rig.buffer.put(i, tag="info")
    wait_until(lambda: rig.buffer.join(0), "the batch delivered")
    assert dest.got == [0, 1, 0, 1, 2, 3]
    snap = rig.loop.snapshot()
    assert snap["shipped"] == 4 and snap["lost"] == 0 and snap["send_failures"] == 1


def test_a_retry_limit_loses_by_reason_but_never_in_spill_mode(tmp_path: Path,
                                                               rigs: list[Rig]) -> None:
    busy = Destination(lambda lines: PushAnswer("retry", 429, "rate_limited", "HTTP 429"))
    rig = Rig(BufferConfig(max_items=10, when_full="block"), busy, max_retries=2)
    rigs.append(rig)
    rig.buffer.put(1)
    wait_until(lambda: rig.loop.snapshot()["lost"] == 1, "the give-up")
    assert rig.loop.snapshot()["lost_by_reason"] == {"rate_limited": 1} and busy.sends == 3
    spill = Destination(lambda lines: PushAnswer("retry", 429, "rate_limited", "HTTP 429"))
    cfg = BufferConfig(max_items=10, when_full="spill", spill_dir=tmp_path / "spill")
    rig2 = Rig(cfg, spill, max_retries=2)
    rigs.append(rig2)
    rig2.buffer.put(1)
    wait_until(lambda: spill.sends >= 8, "retries past the limit")
    assert rig2.loop.snapshot()["lost"] == 0  # the spill holds it through any outage


def test_a_retry_limit_holds_in_spill_mode_when_told(tmp_path: Path,
                                                    rigs: list[Rig]) -> None:
    """Promtail's `max_retries`: with `max_retries_in_spill` the batch still goes to disk
    at its first failure (a crash during the outage loses nothing), and after
    `max_retries + 1` attempts in all, that first one included, it is counted lost."""
    busy = Destination(lambda lines: PushAnswer("retry", 429, "rate_limited", "HTTP 429"))
    cfg = BufferConfig(max_items=10, when_full="spill", spill_dir=tmp_path / "spill")
    rig = Rig(cfg, busy, max_retries=2, max_retries_in_spill=True)
    rigs.append(rig)
    rig.buffer.put(1)
    wait_until(lambda: rig.loop.snapshot()["lost"] == 1, "the give-up")
    assert rig.loop.snapshot()["lost_by_reason"] == {"rate_limited": 1}
    assert busy.sends == 3 and rig.buffer.stats()["spilled"] == 1
    wait_until(lambda: rig.buffer.join(0), "nothing left in the queue")


def test_the_collector_shows_every_counter_at_0_then_latency_by_status(
        rigs: list[Rig]) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    dest = Destination(lambda lines: PushAnswer("shipped", 204))
    rig = Rig(BufferConfig(max_items=10, when_full="drop"), dest)
    rigs.append(rig)

    def figures() -> list[Figures]:
        return [Figures(rig.buffer.stats(), rig.loop.snapshot(),
                        rig.loop.stats.latency.snapshot(), url="http://dest",
                        labels={"queue": "q"}, reasons=("full", "too_large"),
                        drop_reasons=("full",))]

    reg = CollectorRegistry()
    reg.register(QueueCollector("t", figures))
    text = generate_latest(reg).decode()
    for line in ('t_lines_lost_total{queue="q",reason="full"} 0.0',
                 't_lines_lost_total{queue="q",reason="too_large"} 0.0',
                 't_lines_dropped_total{queue="q",reason="full"} 0.0',
                 't_lines_shipped_total{queue="q"} 0.0',
                 't_queue_depth{queue="q"} 0.0', 't_queue_capacity{queue="q"} 10.0',
                 't_backend_up{queue="q",url="http://dest"} 1.0',
                 't_last_successful_push_timestamp_seconds{queue="q"} 0.0'):
        assert line in text, line
    rig.buffer.put(1)
    wait_until(lambda: dest.got == [1], "the push")
    text = generate_latest(reg).decode()
    assert 't_push_duration_seconds_count{queue="q",status_code="204"} 1.0' in text
    assert 't_push_duration_seconds_bucket{le="+Inf",queue="q",status_code="204"} 1.0' in text
    assert 't_lines_shipped_total{queue="q"} 1.0' in text
    assert 't_last_successful_push_timestamp_seconds{queue="q"} 0.0' not in text


def test_a_deliverer_that_raises_gets_its_batch_back(rigs: list[Rig],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    class Flaky(Destination):
        raised = False

        def parts(self, items: list[int]) -> list[Part]:
            if not self.raised:
                self.raised = True
                raise RuntimeError("a bug in the destination")
            return super().parts(items)

    dest = Flaky()
    rig = Rig(BufferConfig(max_items=10, when_full="block"), dest)
    rigs.append(rig)
    rig.buffer.put(7)
    wait_until(lambda: dest.got == [7], "the batch delivered on the second try")
    assert rig.buffer.join(5)  # nothing left in flight
    assert messages(caplog, "delivery error; the batch of 1 lines goes back to the queue")
    assert rig.loop.snapshot()["lost"] == 0


def test_a_deliverer_that_keeps_raising_is_given_up_into_a_counted_loss(
        rigs: list[Rig], caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Destination):
        def parts(self, items: list[int]) -> list[Part]:
            raise RuntimeError("a bug in the destination")

    done: list[int] = []
    rig = Rig(BufferConfig(max_items=10, when_full="block"), Broken(), max_retries=2,
              on_done=done.extend)
    rigs.append(rig)
    rig.buffer.put(7)
    rig.buffer.put(8)
    assert rig.buffer.join(15)  # not stuck at the head of the queue for good
    snap = rig.loop.snapshot()
    assert snap["lost_by_reason"] == {"sink_error": 2} and snap["shipped"] == 0
    assert done == [7, 8]
    assert len(messages(caplog, "goes back to the queue")) == 2
    assert messages(caplog, "delivery error 3 times in a row; gave up on 2 lines (sink_error)")
