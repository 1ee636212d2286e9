"""The agent's use of the shared buffer: line accounting and positions per policy."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sluiceway.agent._config import BatchConfig, QueueConfig
from sluiceway.agent._positions import Positions
from sluiceway.agent._queue import AgentQueue, Batcher, Item, ItemCodec
from sluiceway.agent._stats import Stats
from sluiceway.model import StreamBatch
from sluiceway.wire import decode_push


def make(tmp: Path, **queue: object) -> tuple[AgentQueue, Positions, Stats]:
    stats = Stats()
    positions = Positions(tmp / "positions.json")
    q = AgentQueue(QueueConfig.model_validate({"capacity": 20, **queue}),
                   BatchConfig(max_lines=10), tmp, positions, stats)
    return q, positions, stats


def test_drop_oldest_counts_the_lines_it_evicts(tmp_path: Path) -> None:
    q, positions, stats = make(tmp_path, when_full="drop", drop="oldest")
    positions.register("1:1", "/f", 0, "", 0)
    for i in range(5):  # room for 2 items: the 3 oldest go
        positions.add("1:1", 0, i * 100, (i + 1) * 100)
        assert q.put(Item(b"x", "json", 10, [("1:1", 0, i * 100, (i + 1) * 100)]))
    batch = q.get(0.1)
    assert batch is not None and batch.items[0].checkpoints[0][2] == 300
    assert stats.lines_lost == 30 and dict(stats.lost_by_reason) == {"queue_full_oldest": 30}
    q.buffer.ack(batch)
    positions.done(batch.items[0].checkpoints)
    # dropped ranges count as handled, so the position moves past them
    assert positions.snapshot()["1:1"].committed == 400


def test_drop_newest_counts_and_moves_positions(tmp_path: Path) -> None:
    q, positions, stats = make(tmp_path, when_full="drop")
    positions.register("1:1", "/f", 0, "", 0)
    results = []
    for i in range(3):
        positions.add("1:1", 0, i * 10, (i + 1) * 10)
        results.append(q.put(Item(b"x", "json", 10, [("1:1", 0, i * 10, (i + 1) * 10)])))
    assert results == [True, True, False]
    assert dict(stats.lost_by_reason) == {"queue_full": 10}


def test_item_codec_round_trip() -> None:
    items = [Item(b"\x00\xffbody", "protobuf", 3, [("1:2", 4, 0, 99)]), Item(b"", "json", 0, [])]
    back = ItemCodec().decode(ItemCodec().encode(items))
    assert [(i.body, i.fmt, i.lines, i.checkpoints) for i in back] == [
        (b"\x00\xffbody", "protobuf", 3, [("1:2", 4, 0, 99)]), (b"", "json", 0, [])]


def test_batcher_merges_streams_and_cuts_by_lines(tmp_path: Path) -> None:
    q, positions, _ = make(tmp_path, when_full="block", capacity=100)
    b = Batcher(BatchConfig(max_lines=10, max_wait=60), "json", q, positions)
    for i in range(3):
        b.add([StreamBatch({"job": "a"}, [i * 4 + k for k in range(4)],
                           [f"l{i * 4 + k}" for k in range(4)])], 4, 8, [])
    b.tick(force=True)
    first, second = q.get(0.1), q.get(0.1)
    assert first is not None and second is not None
    assert [first.items[0].lines, second.items[0].lines] == [8, 4]
    (sb,) = decode_push(first.items[0].body, "application/json", None)
    assert sb.lines == [f"l{i}" for i in range(8)]


def test_demo_input_generates_lines() -> None:
    from sluiceway.agent._config import DemoInput
    from sluiceway.agent._inputs import DemoGenerator

    got: list[str] = []
    stop = threading.Event()
    gen = DemoGenerator(DemoInput(type="demo", rate=50, labels={"job": "demo"}),
                        lambda streams, n, b, ck: got.extend(
                            line for sb in streams for line in sb.lines), Stats(), stop)
    t = threading.Thread(target=gen.run)
    t.start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join(3)
    assert got and all(line.startswith("level=") for line in got)


def test_batcher_cuts_a_piece_larger_than_an_item(tmp_path: Path) -> None:
    # stdin, syslog and the demo input can hand over more lines at once than max_lines.
    q, positions, _ = make(tmp_path, when_full="block", capacity=100)
    b = Batcher(BatchConfig(max_lines=10, max_wait=60), "json", q, positions)
    streams = [StreamBatch({"job": "a"}, list(range(17)), [f"a{i}" for i in range(17)]),
               StreamBatch({"job": "b"}, list(range(8)), [f"b{i}" for i in range(8)])]
    b.add(streams, 25, 2 * 17 + 2 * 8, [])
    b.tick(force=True)
    got = []
    while (batch := q.get(0.1)) is not None:
        got += batch.items
    assert [i.lines for i in got] == [10, 10, 5]
    lines = [line for i in got for sb in decode_push(i.body, "application/json", None)
             for line in sb.lines]
    assert lines == [f"a{i}" for i in range(17)] + [f"b{i}" for i in range(8)]
