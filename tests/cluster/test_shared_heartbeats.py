"""Heartbeats shared through KV (a real nats-server): a heartbeat accepted by one node is
a card on every node, with the same token check, and a node never re-applies its own."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from sluiceway.cluster import ClusterConfig, NatsConn, SharedHeartbeats
from sluiceway.model import HeartbeatRefused, PipelineRegistry, parse_heartbeat
from tests.natsprocs import NatsNode


def _poll(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def beat(rid: str, token: str, lost: int = 0) -> dict[str, Any]:
    return parse_heartbeat(orjson.dumps({
        "id": rid, "kind": "agent", "name": rid, "host": "h", "pid": 1, "token": token,
        "ts": 0.0, "interval_s": 5.0, "lines": {"lost": lost},
        "queue": {"depth": 0, "capacity": 10, "when_full": "block"}}))


def test_a_heartbeat_taken_by_one_node_is_a_card_on_every_node(nats: NatsNode) -> None:
    conns = [NatsConn(ClusterConfig(urls=(nats.url,))) for _ in range(3)]
    regs = [PipelineRegistry() for _ in conns]
    shared: list[SharedHeartbeats] = []
    try:
        for i, (c, r) in enumerate(zip(conns, regs, strict=True)):
            assert c.wait_connected(30)
            shared.append(SharedHeartbeats(c, "t-heartbeats", r, f"node{i}", 3600, 1))
        hb = beat("agent-1", "tok-a", lost=3)
        regs[0].record("acme", hb)  # what node 0's heartbeat route does, then shares it
        shared[0].publish("acme", hb)
        odd = beat("we/ird id", "tok-b")  # ids and tenants are free-form text
        regs[1].record("t|x", odd)
        shared[1].publish("t|x", odd)
        _poll(lambda: all(r.snapshot(["acme"]) and r.snapshot(["t|x"]) for r in regs))
        for r in regs:
            card = r.snapshot(["acme"])[0]
            assert (card["id"], card["lines"]["lost"], card["stale"]) == ("agent-1", 3, False)
            assert "token" not in card
            assert r.snapshot(["t|x"])[0]["id"] == "we/ird id"
        assert shared[0].applied == 1 and shared[2].applied == 2  # never its own
        # The reporter moves to node 2 (same process, same token): accepted there, and
        # its newer count reaches node 0; another process with that id is refused.
        later = beat("agent-1", "tok-a", lost=5)
        regs[2].record("acme", later)
        shared[2].publish("acme", later)
        _poll(lambda: regs[0].snapshot(["acme"])[0]["lines"]["lost"] == 5)
        with pytest.raises(HeartbeatRefused):
            regs[1].record("acme", beat("agent-1", "tok-other"))
    finally:
        for s in shared:
            s.close()
        for c in conns:
            c.close()
