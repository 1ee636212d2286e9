"""A singleton's lease (a real nats-server): one holder at a time; when it dies without
a word the other takes over within the lease TTL (a failover, counted); a clean stop
hands it over at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluiceway.cluster import ClusterConfig, Leases, NatsConn, SingletonLease
from tests.natsprocs import NatsNode, nats_or_skip, single_node


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsNode]:
    node = single_node(nats_or_skip(), tmp_path / "nats")
    yield node
    node.stop()


def _poll(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_one_compactor_at_a_time_and_failover(nats: NatsNode) -> None:
    conns = [NatsConn(ClusterConfig(urls=(nats.url,))) for _ in range(3)]
    try:
        for c in conns:
            assert c.wait_connected(30)
        singles = [SingletonLease(Leases(c, "sg-leases", f"node{i}", 1.5, 1), "compactor")
                   for i, c in enumerate(conns)]
        for s in singles:
            s.start()
        _poll(lambda: sum(s.held() for s in singles) == 1)
        first = next(s for s in singles if s.held())
        assert first.holder() == first.leases.holder
        # It dies (no release, no renewals): another takes over after the TTL.
        first._stop.set()
        assert first._thread is not None
        first._thread.join(5)
        rest = [s for s in singles if s is not first]
        _poll(lambda: any(s.held() for s in rest))
        second = next(s for s in rest if s.held())
        assert second.failovers == 1 and sum(s.held() for s in rest) == 1
        # The old holder comes back: its renewal fails, it does not hold it any more.
        first.tick()
        assert not first.held()
        # A clean stop hands it over without waiting for the TTL.
        second.stop()
        _poll(lambda: any(s.held() for s in rest if s is not second))
    finally:
        for s in singles:
            s._stop.set()
        for c in conns:
            c.close()
