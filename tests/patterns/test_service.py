"""The pattern ingester's service: pushes never wait for mining; what it cannot take is
counted; a dead miner process answers queries with an error, never a hang."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sluiceway.model import EntryBlock, PushRecord
from sluiceway.patterns import (
    MinerConfig,
    MinerUnavailable,
    PatternIngesterConfig,
    PatternService,
)
from sluiceway.store import decode_record
from tests.inproc import wait_for

S = 10**9


def _record(n: int, start_s: int) -> bytes:
    now = time.time_ns() // S
    ts = np.array([(now - 600 + start_s + i) * S for i in range(n)], dtype=np.int64)
    block = EntryBlock.from_lines({"app": "a"}, ts,
                                  [f"request {i} served in {i}ms".encode() for i in range(n)])
    return PushRecord("t", [block]).encode()


def _total(service: PatternService) -> int:
    now = time.time_ns()
    return sum(p.total for p in service.query(["t"], [], now - 3600 * S, now, 60 * S))


class _Gate:
    """A decode that waits at a pause point, to hold the feeder inside the miner."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, payload: bytes) -> tuple[str, list[EntryBlock]]:
        self.entered.set()
        self.release.wait(10)
        return decode_record(payload)


def test_a_push_that_does_not_fit_the_queue_is_counted_not_waited_for() -> None:
    gate = _Gate()
    one = _record(40, 0)
    service = PatternService(
        MinerConfig(PatternIngesterConfig(max_queued_bytes=len(one) + 10)), gate,
        in_process=True)
    try:
        service.offer(one, 40)
        assert gate.entered.wait(10)  # the feeder holds the first push, inside the miner
        service.offer(_record(40, 100), 40)  # waits in the queue
        service.offer(_record(40, 200), 40)  # no room: counted, the caller goes on
        assert service.skipped == {"queue_full": 40}
        gate.release.set()
        wait_for(lambda: not service.pending(), "the queue to drain")
        wait_for(lambda: _total(service) == 80, "both queued pushes to be mined")
    finally:
        gate.release.set()
        service.close()


@pytest.mark.timeout(60)
def test_the_miner_process_mines_and_a_dead_one_is_reported() -> None:
    service = PatternService(MinerConfig(), decode_record, in_process=False,
                             query_timeout=10)
    try:
        service.offer(_record(40, 0), 40)
        wait_for(lambda: _total(service) == 40, "the push to be mined in the process")
        service._proc.kill()  # the OOM killer, say
        service._proc.join(10)
        with pytest.raises(MinerUnavailable):
            _total(service)
        service.offer(_record(5, 100), 5)
        wait_for(lambda: service.skipped.get("miner_down") == 5, "the push to be counted")
    finally:
        service.close()
