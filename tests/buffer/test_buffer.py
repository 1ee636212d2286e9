"""The bounded queue in memory: drop, block, protected eviction, ack/nack, stats."""

from __future__ import annotations

import threading
import time

import pytest

from sluiceway.buffer import Buffer, BufferConfig


def drain(buf: Buffer[int], wait: float = 0.05) -> list[int]:
    out: list[int] = []
    while (b := buf.get_batch(100, max_wait=wait)) is not None:
        out.extend(b.items)
        buf.ack(b)
    return out


def test_drop_newest_counts_exactly() -> None:
    buf: Buffer[int] = Buffer(BufferConfig(max_items=100, when_full="drop"))
    accepted = [i for i in range(1000) if buf.put(i, tag="info" if i % 2 else "debug")]
    assert accepted == list(range(100))
    s = buf.stats()
    assert s["dropped"] == 900 and s["dropped_by_reason"] == {"full": 900}
    assert s["dropped_by_tag"] == {"info": {"full": 450}, "debug": {"full": 450}}
    assert s["enqueued"] == 100 and s["high_watermark"] == 100
    assert drain(buf) == list(range(100))
    assert buf.stats()["acked"] == 100


def test_drop_oldest_keeps_the_newest() -> None:
    buf: Buffer[int] = Buffer(BufferConfig(max_items=10, when_full="drop", drop="oldest"))
    assert all(buf.put(i) for i in range(50))
    assert drain(buf) == list(range(40, 50))
    assert buf.stats()["dropped_by_reason"] == {"oldest": 40}


def test_byte_bound() -> None:
    buf: Buffer[int] = Buffer(BufferConfig(max_items=1000, max_bytes=1000, when_full="drop"))
    assert sum(buf.put(i, size=100) for i in range(20)) == 10
    big: Buffer[int] = Buffer(BufferConfig(max_items=10, max_bytes=10))
    assert big.put(1, size=500)  # an item larger than the bound still fits an empty queue


def test_drop_wait_waits_then_drops() -> None:
    buf: Buffer[int] = Buffer(BufferConfig(max_items=1, when_full="drop", drop_wait=0.1))
    buf.put(0)
    t0 = time.monotonic()
    assert not buf.put(1)
    assert 0.09 <= time.monotonic() - t0 < 1.0
    threading.Timer(0.05, lambda: buf.get_batch(1)).start()
    assert buf.put(2)  # room appeared within the wait


def test_block_waits_for_room_and_times_out() -> None:
    buf: Buffer[int] = Buffer(BufferConfig(max_items=2, when_full="block", block_timeout=0.2))
    buf.put(0), buf.put(1)
    t0 = time.monotonic()
    assert not buf.put(2)
    assert 0.19 <= time.monotonic() - t0 < 1.5
    assert buf.stats()["dropped_by_reason"] == {"timeout": 1}
    forever: Buffer[int] = Buffer(BufferConfig(max_items=2, when_full="block"))
    forever.put(0), forever.put(1)
    done = threading.Event()

    def producer() -> None:
        forever.put(2)
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    assert not done.wait(0.2)  # still blocked
    b = forever.get_batch(1)
    assert b is not None and b.items == [0]
    assert done.wait(2)
    assert drain(forever) == [1, 2]


def test_protected_evicts_oldest_unprotected() -> None:
    buf: Buffer[str] = Buffer(BufferConfig(max_items=5, when_full="drop"))
    for i in range(5):
        buf.put(f"d{i}", tag="debug")
    for i in range(5):
        assert buf.put(f"E{i}", protected=True, tag="error")
    assert not buf.put("E5", protected=True, tag="error")  # nothing left to evict
    assert drain(buf) == [f"E{i}" for i in range(5)]  # type: ignore[comparison-overlap]
    s = buf.stats()
    assert s["dropped_by_tag"] == {"debug": {"evicted": 5}, "error": {"full": 1}}


def test_nack_puts_the_batch_back_at_the_head() -> None:
    buf: Buffer[int] = Buffer(BufferConfig(max_items=100))
    for i in range(10):
        buf.put(i)
    b = buf.get_batch(4)
    assert b is not None and b.items == [0, 1, 2, 3]
    assert buf.stats()["in_flight"] == 4
    buf.nack(b)
    assert drain(buf) == list(range(10))
    assert buf.join(1)


def test_get_batch_waits_and_wakes() -> None:
    buf: Buffer[int] = Buffer(BufferConfig())
    t0 = time.monotonic()
    assert buf.get_batch(max_wait=0.1) is None
    assert time.monotonic() - t0 >= 0.09
    threading.Timer(0.05, lambda: buf.put(7)).start()
    b = buf.get_batch(max_wait=2)
    assert b is not None and b.items == [7]


def test_many_producers_nothing_lost_under_block() -> None:
    buf: Buffer[int] = Buffer(BufferConfig(max_items=64, when_full="block"))
    n, producers = 5000, 4
    got: list[int] = []

    def consume() -> None:
        while len(got) < n * producers:
            b = buf.get_batch(50, max_wait=0.5)
            if b is not None:
                got.extend(b.items)
                buf.ack(b)

    c = threading.Thread(target=consume)
    c.start()
    ts = [threading.Thread(target=lambda k=k: [buf.put(k * n + i) for i in range(n)])
          for k in range(producers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    c.join(10)
    assert sorted(got) == list(range(n * producers))
    for k in range(producers):  # each producer's items stay in order
        mine = [x for x in got if x // n == k]
        assert mine == sorted(mine)


def test_closed_buffer_refuses_and_counts() -> None:
    buf: Buffer[int] = Buffer(BufferConfig())
    buf.put(1)
    buf.close()
    assert not buf.put(2)
    assert buf.stats()["dropped_by_reason"] == {"closed": 1}
    assert drain(buf) == [1]


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError):
        BufferConfig(when_full="spill")  # no spill_dir
    with pytest.raises(ValueError):
        BufferConfig(when_full="sometimes")  # type: ignore[arg-type]




def test_drop_oldest_spares_protected_items() -> None:
    buf: Buffer[str] = Buffer(BufferConfig(max_items=4, when_full="drop", drop="oldest"))
    buf.put("E0", protected=True)
    for i in range(10):
        buf.put(f"d{i}")
    assert drain(buf) == ["E0", "d7", "d8", "d9"]  # type: ignore[comparison-overlap]
    assert buf.stats()["dropped_by_reason"] == {"oldest": 7}
