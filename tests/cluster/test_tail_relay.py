"""Tail across nodes (a real nats-server): a push published to an ingest partition by any
node reaches the tail hub of a node with an open session, on that node's event loop, and
nothing is subscribed while no session is open."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from sluiceway.cluster import ClusterConfig, NatsConn, TailRelay
from sluiceway.cluster._admin import ensure_stream
from sluiceway.model import EntryBlock, PushRecord
from tests.natsprocs import NatsNode


def record(tenant: str, line: str) -> PushRecord:
    block = EntryBlock.from_lines({"app": "tail"}, np.array([time.time_ns()], dtype=np.int64),
                                  [line.encode()])
    return PushRecord(tenant, [block])


def test_a_push_through_another_node_reaches_this_nodes_tail(nats: NatsNode) -> None:
    cfg = ClusterConfig(urls=(nats.url,), name_prefix="tt-", replicas=1)
    writer, reader = NatsConn(cfg), NatsConn(cfg)
    assert writer.wait_connected(30) and reader.wait_connected(30)
    try:
        writer.run(ensure_stream(writer.js, cfg.stream_of(0),
                                 [cfg.subject(p) for p in cfg.stream_partitions(0)], 1, "t"),
                   "stream")

        def publish(r: PushRecord) -> None:
            writer.run(writer.js.publish(cfg.subject(1), r.encode(), stream=cfg.stream_of(0)),
                       "publish")

        async def scenario() -> list[tuple[str, list[str]]]:
            got: list[tuple[str, list[str]]] = []
            loop = asyncio.get_running_loop()
            relay = TailRelay(reader, cfg, lambda t, bs: got.append(
                (t, [line.decode() for b in bs for line in b.lines()])), loop)
            await asyncio.to_thread(publish, record("acme", "before any session"))
            await relay.acquire()
            await relay.acquire()  # a second session: one subscription
            await asyncio.to_thread(publish, record("acme", "seen by the session"))
            deadline = time.monotonic() + 30
            while not got and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await relay.release()
            await relay.release()
            assert relay._sub is None
            await asyncio.to_thread(publish, record("acme", "after the sessions closed"))
            await asyncio.sleep(0.5)  # nothing may arrive now (there is no subscription)
            return got

        got = asyncio.run(scenario())
        assert got == [("acme", ["seen by the session"])]
    finally:
        writer.close()
        reader.close()


def test_a_tail_session_opens_while_nats_is_away(nats: NatsNode) -> None:
    """NATS gone: the session opens all the same; the client keeps the subscription and
    sends it again when it reconnects."""
    cfg = ClusterConfig(urls=(nats.url,), name_prefix="tw-", replicas=1, timeout=1.0)
    reader = NatsConn(cfg)
    assert reader.wait_connected(30)
    try:
        nats.stop()

        async def scenario() -> TailRelay:
            relay = TailRelay(reader, cfg, lambda t, bs: None, asyncio.get_running_loop())
            await asyncio.wait_for(relay.acquire(), 30)
            return relay

        relay = asyncio.run(scenario())
        assert relay.users == 1 and relay._sub is not None
    finally:
        reader.close()
