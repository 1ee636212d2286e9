"""The agent's use of the shared buffer: line accounting and positions per policy."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sluiceway.agent._config import BatchConfig, QueueConfig
from sluiceway.agent._positions import Positions
from sluiceway.agent._queue import REASONS, AgentQueue, Batcher
from sluiceway.agent._records import Piece
from sluiceway.agent._stats import Stats
from sluiceway.buffer import Batch
from sluiceway.ship import Push
from sluiceway.wire import decode_push


def make(tmp: Path, **queue: object) -> tuple[AgentQueue, Positions]:
    positions = Positions(tmp / "positions.json")
    q = AgentQueue(QueueConfig.model_validate({"capacity": 20, **queue}), tmp, positions)
    return q, positions


def get(q: AgentQueue) -> Batch[Push] | None:
    return q.buffer.get_batch(max_items=1, max_wait=0.1)


def lost(q: AgentQueue) -> dict[str, int]:
    return {REASONS[r]: n for r, n in q.buffer.stats()["dropped_by_reason"].items()}


def piece(labels: dict[str, str], ts: list[int], lines: list[str]) -> Piece:
    return Piece(labels, np.asarray(ts, dtype=np.int64), [x.encode() for x in lines])


def test_the_queue_counts_lines_and_never_holds_more_than_its_capacity(
        tmp_path: Path) -> None:
    q, _ = make(tmp_path, when_full="drop", capacity=25)
    assert [q.put(Push(b"x", "json", 10, [])) for _ in range(4)] == [True, True, False, False]
    s = q.buffer.stats()
    assert s["depth"] == 20 and s["capacity"] == 25 and s["high_watermark"] == 20
    assert s["enqueued"] == 20 and lost(q) == {"queue_full": 20}


def test_drop_oldest_counts_the_lines_it_evicts(tmp_path: Path) -> None:
    q, positions = make(tmp_path, when_full="drop", drop="oldest")
    positions.register("1:1", "/f", 0, "", 0)
    for i in range(5):  # room for 2 pushes: the 3 oldest go
        positions.add("1:1", 0, i * 100, (i + 1) * 100)
        assert q.put(Push(b"x", "json", 10, [("1:1", 0, i * 100, (i + 1) * 100)]))
    batch = get(q)
    assert batch is not None and batch.items[0].meta[0][2] == 300
    assert lost(q) == {"queue_full_oldest": 30}
    q.buffer.ack(batch)
    q.done(batch.items)
    # dropped ranges count as handled, so the position moves past them
    assert positions.snapshot()["1:1"].committed == 400


def test_drop_newest_counts_and_moves_positions(tmp_path: Path) -> None:
    q, positions = make(tmp_path, when_full="drop")
    positions.register("1:1", "/f", 0, "", 0)
    results = []
    for i in range(3):
        positions.add("1:1", 0, i * 10, (i + 1) * 10)
        results.append(q.put(Push(b"x", "json", 10, [("1:1", 0, i * 10, (i + 1) * 10)])))
    assert results == [True, True, False]
    assert lost(q) == {"queue_full": 10}


def test_spill_mode_file_lines_wait_while_the_backend_is_healthy(tmp_path: Path) -> None:
    """A file can be read again: while pushes succeed its reader waits for room instead
    of writing to disk what the file already holds; once a push fails (a nack with
    spill) it spills like any other input."""
    q, _ = make(tmp_path, when_full="spill", capacity=10)
    assert q.put(Push(b"a", "json", 10, []), can_wait=True)
    done = threading.Event()
    t = threading.Thread(target=lambda: (q.put(Push(b"b", "json", 10, []), can_wait=True),
                                         done.set()), daemon=True)
    t.start()
    assert not done.wait(0.3)  # waiting, not spilling
    assert q.buffer.stats()["spilled"] == 0 and q.buffer.stats()["waiting_s"] > 0
    assert q.put(Push(b"c", "json", 10, []))  # stdin cannot read it again: to disk
    deadline = time.monotonic() + 5
    while q.buffer.stats()["spilled"] < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert q.buffer.stats()["spilled"] == 10 and not done.is_set()
    batch = get(q)
    assert batch is not None
    q.buffer.nack(batch, spill=True)  # the backend fails: file lines spill now too
    assert done.wait(5)
    while q.buffer.stats()["spilled"] < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert q.buffer.stats()["spilled"] == 30
    q.buffer.close()


def test_batcher_keeps_pieces_and_cuts_by_lines(tmp_path: Path) -> None:
    q, positions = make(tmp_path, when_full="block", capacity=100)
    b = Batcher(BatchConfig(max_lines=10, max_wait=60), "json", q, positions)
    for i in range(3):
        b.add([piece({"job": "a"}, [i * 4 + k for k in range(4)],
                     [f"l{i * 4 + k}" for k in range(4)])], 4, 8, [])
    b.tick(force=True)
    first, second = get(q), get(q)
    assert first is not None and second is not None
    assert [first.items[0].lines, second.items[0].lines] == [8, 4]
    (sb,) = decode_push(first.items[0].body, "application/json", None)
    assert sb.lines == [f"l{i}" for i in range(8)]


@pytest.mark.parametrize("fmt", ["protobuf", "json"])
def test_batcher_builds_one_push_of_pieces_from_several_streams(tmp_path: Path,
                                                                fmt: Any) -> None:
    q, positions = make(tmp_path, when_full="block", capacity=100)
    b = Batcher(BatchConfig(max_lines=100, max_wait=60), fmt, q, positions)
    b.add([piece({"job": "a"}, [1, 2], ["a1", "a2"])], 2, 4, [])
    b.add([piece({"job": "b"}, [3], ["b1"]), piece({"job": "a"}, [4], ["é"])], 2, 4, [])
    b.tick(force=True)
    batch = get(q)
    assert batch is not None and batch.items[0].lines == 4 and batch.count == 4
    ctype = "application/x-protobuf" if fmt == "protobuf" else "application/json"
    got = {(tuple(sorted(sb.labels.items())), t, line)
           for sb in decode_push(batch.items[0].body, ctype, None)
           for t, line in zip(sb.ts, sb.lines, strict=True)}
    assert got == {((("job", "a"),), 1, "a1"), ((("job", "a"),), 2, "a2"),
                   ((("job", "b"),), 3, "b1"), ((("job", "a"),), 4, "é")}


def test_a_batch_never_holds_more_lines_than_the_queue(tmp_path: Path) -> None:
    from sluiceway.agent._queue import batch_lines

    assert batch_lines(QueueConfig(capacity=300), BatchConfig(max_lines=1000)) == 300
    assert batch_lines(QueueConfig(capacity=3200), BatchConfig(max_lines=1000)) == 1000


def test_demo_input_generates_lines() -> None:
    from sluiceway.agent._config import DemoInput
    from sluiceway.agent._inputs import DemoGenerator

    got: list[str] = []
    stop = threading.Event()
    gen = DemoGenerator(DemoInput(type="demo", rate=50, labels={"job": "demo"}),
                        lambda pieces, n, b, ck, can_wait=False: got.extend(
                            line.decode() for p in pieces for line in p.lines), Stats(), stop)
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
    q, positions = make(tmp_path, when_full="block", capacity=100)
    b = Batcher(BatchConfig(max_lines=10, max_wait=60), "json", q, positions)
    pieces = [piece({"job": "a"}, list(range(17)), [f"a{i}" for i in range(17)]),
              piece({"job": "b"}, list(range(8)), [f"b{i}" for i in range(8)])]
    b.add(pieces, 25, 2 * 17 + 2 * 8, [])
    b.tick(force=True)
    got = []
    while (batch := get(q)) is not None:
        got += batch.items
    assert [i.lines for i in got] == [10, 10, 5]
    lines = [line for i in got for sb in decode_push(i.body, "application/json", None)
             for line in sb.lines]
    assert lines == [f"a{i}" for i in range(17)] + [f"b{i}" for i in range(8)]
