"""Spill to disk: order, segment freeing, cap policies, corruption, SIGKILL + reopen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from sluiceway.buffer import Buffer, BufferConfig

REPO = Path(__file__).resolve().parents[2]


def spill_cfg(d: Path, **kw: object) -> BufferConfig:
    base: dict[str, object] = dict(max_items=50, when_full="spill", spill_dir=d,
                                   record_items=10, segment_bytes=4096)
    base.update(kw)
    return BufferConfig(**base)  # type: ignore[arg-type]


def drain(buf: Buffer[int], wait: float = 0.3) -> list[int]:
    out: list[int] = []
    while (b := buf.get_batch(25, max_wait=wait)) is not None:
        out.extend(b.items)
        buf.ack(b)
    return out


def wait_until(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_overflow_spills_and_replays_in_order(tmp_path: Path) -> None:
    buf: Buffer[int] = Buffer(spill_cfg(tmp_path))
    for i in range(2000):
        assert buf.put(i, size=8)
    wait_until(lambda: buf.stats()["spilled"] == 1950)
    s = buf.stats()
    assert s["dropped"] == 0 and s["spill_segments"] > 1 and s["spill_bytes"] > 0
    assert drain(buf) == list(range(2000))
    s = buf.stats()
    assert s["spill_segments"] == 0 and s["spill_bytes"] == 0 and s["replayed"] == 1950
    assert not list(tmp_path.glob("*.seg"))
    buf.close()


def test_order_kept_with_a_concurrent_slow_consumer(tmp_path: Path) -> None:
    buf: Buffer[int] = Buffer(spill_cfg(tmp_path))
    got: list[int] = []
    n = 5000

    def consume() -> None:
        while len(got) < n:
            b = buf.get_batch(30, max_wait=0.5)
            if b is not None:
                got.extend(b.items)
                buf.ack(b)
                time.sleep(0.0005)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(n):
        buf.put(i, size=8)
        if i % 500 == 0:
            time.sleep(0.005)
    t.join(20)
    assert got == list(range(n))
    buf.close()


def test_nack_with_spill_moves_memory_to_disk(tmp_path: Path) -> None:
    buf: Buffer[int] = Buffer(spill_cfg(tmp_path, max_items=1000))
    for i in range(100):
        buf.put(i)
    b = buf.get_batch(10)
    assert b is not None and b.items == list(range(10))
    buf.nack(b, spill=True)  # downstream failing: everything goes to disk
    wait_until(lambda: buf.stats()["spill_pending"] == 100)
    for i in range(100, 150):  # new items stay behind the spilled ones
        buf.put(i)
    assert drain(buf) == list(range(150))
    buf.close()


def test_spill_cap_then_drop_is_announced_and_counted(tmp_path: Path, caplog: object) -> None:
    cfg = spill_cfg(tmp_path, max_items=20, spill_max_bytes=8192, when_spill_full="drop")
    buf: Buffer[int] = Buffer(cfg)
    accepted = 0
    for i in range(3000):
        accepted += buf.put(i, size=8)
        if i % 10 == 0:
            time.sleep(0.002)  # let the spiller keep up: only the cap should drop
    s = buf.stats()
    assert s["spill_full"] and s["spill_full_events"] == 1
    assert s["spill_bytes"] <= 8192
    assert s["dropped_by_reason"].get("spill_full", 0) > 0
    assert "disk cap of 8192 bytes reached" in caplog.text  # type: ignore[attr-defined]
    assert accepted + s["dropped"] == 3000
    got = drain(buf)
    assert len(got) == accepted and got == sorted(got)
    buf.close()


def test_spill_cap_then_block_waits_for_acks(tmp_path: Path) -> None:
    cfg = spill_cfg(tmp_path, max_items=20, spill_max_bytes=8192, when_spill_full="block")
    buf: Buffer[int] = Buffer(cfg)
    n = 3000
    done = threading.Event()

    def produce() -> None:
        for i in range(n):
            buf.put(i, size=8)
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    time.sleep(0.5)
    assert not done.is_set() and buf.stats()["spill_full"]
    got = []
    while len(got) < n:
        b = buf.get_batch(50, max_wait=2)
        assert b is not None
        got.extend(b.items)
        buf.ack(b)
    assert got == list(range(n)) and done.wait(2)
    assert buf.stats()["dropped"] == 0
    buf.close()


def test_torn_tail_and_corrupt_record_are_skipped(tmp_path: Path) -> None:
    buf: Buffer[int] = Buffer(spill_cfg(tmp_path, max_items=1, segment_bytes=1 << 20))
    for i in range(101):
        buf.put(i)
    wait_until(lambda: buf.stats()["spilled"] == 100)
    buf.close(persist=False)
    seg = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(seg.read_bytes())
    data[40] ^= 0xFF  # damage the payload of a record near the start
    seg.write_bytes(bytes(data[:-5]))  # and tear the last record
    buf2: Buffer[int] = Buffer(spill_cfg(tmp_path, max_items=1, segment_bytes=1 << 20))
    got = drain(buf2)
    assert 70 < len(got) < 100 and got == sorted(got) and got[-1] < 100
    assert buf2.stats()["corrupt_records"] >= 1
    buf2.close()


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sluiceway.buffer import Buffer, BufferConfig
    d, n = Path(sys.argv[1]), int(sys.argv[2])
    buf = Buffer(BufferConfig(max_items=10, when_full="spill", spill_dir=d,
                              record_items=7, segment_bytes=4096))
    for i in range(n):
        buf.put({"i": i})
    while buf.stats()["spilled"] < n - 10:
        time.sleep(0.01)
    acked = []
    b = buf.get_batch(10)           # the 10 in memory: delivered and acked
    buf.ack(b)
    acked += [x["i"] for x in b.items]
    b = buf.get_batch(14)           # whole disk records: acked
    buf.ack(b)
    acked += [x["i"] for x in b.items]
    b = buf.get_batch(7)            # disk records in flight, never acked
    print(max(acked), b.items[0]["i"], flush=True)
    time.sleep(60)
""")


def test_sigkill_then_reopen_replays_unacked(tmp_path: Path) -> None:
    n = 500
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(n)],
                         stdout=subprocess.PIPE, cwd=REPO)
    assert p.stdout is not None
    last_acked, first_in_flight = map(int, p.stdout.readline().split())
    assert first_in_flight == last_acked + 1
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    buf: Buffer[dict[str, int]] = Buffer(spill_cfg(tmp_path, max_items=10, record_items=7))
    assert buf.stats()["spill_pending"] == n - first_in_flight
    got = []
    while (b := buf.get_batch(100, max_wait=0.3)) is not None:
        got.extend(x["i"] for x in b.items)
        buf.ack(b)
    # acked items are not sent twice; the unacked in-flight records come again
    assert got == list(range(first_in_flight, n))
    buf.close()
    buf3: Buffer[int] = Buffer(spill_cfg(tmp_path))
    assert buf3.stats()["spill_pending"] == 0
    buf3.close()


def test_a_spill_directory_has_one_owner(tmp_path: Path) -> None:
    import pytest

    from sluiceway.buffer import SpillDirLocked

    first: Buffer[int] = Buffer(spill_cfg(tmp_path))
    with pytest.raises(SpillDirLocked):
        Buffer(spill_cfg(tmp_path))
    first.close()
    Buffer(spill_cfg(tmp_path)).close()  # free again once the owner closed it


def test_memory_goes_to_disk_behind_a_hung_consumer(tmp_path: Path) -> None:
    buf: Buffer[int] = Buffer(spill_cfg(tmp_path, max_items=1000, spill_stalled_after=0.3))
    assert buf.get_batch(3, max_wait=0.6) is None  # merely idle: waiting is not stuck
    threading.Timer(0.2, lambda: [buf.put(i) for i in range(10)]).start()
    b = buf.get_batch(3, max_wait=2.0)  # woken by the puts, then hangs downstream
    assert b is not None and b.items == list(range(len(b)))
    time.sleep(0.1)
    assert buf.stats()["spill_pending"] == 0
    wait_until(lambda: buf.stats()["spill_pending"] == 10 - len(b), timeout=3)
    s = buf.stats()
    assert s["stalled_spills"] == 1 and s["spilled"] == 10 - len(b)
    buf.nack(b)
    assert drain(buf) == list(range(10))
    buf.close()


def test_items_the_codec_refuses_are_dropped_and_counted(tmp_path: Path) -> None:
    from sluiceway.buffer import OrjsonCodec

    class Picky(OrjsonCodec):
        def encode(self, items: list[object]) -> bytes:
            if "bad" in items:
                raise ValueError("cannot encode")
            return super().encode(items)

    buf: Buffer[str] = Buffer(spill_cfg(tmp_path, max_items=1), codec=Picky())
    for x in ["a", "b", "bad", "c"]:
        buf.put(x, tag="t")
    wait_until(lambda: buf.stats()["spilled"] == 2)
    assert buf.stats()["dropped_by_tag"] == {"t": {"encode": 1}}
    got = []
    while (b := buf.get_batch(10, max_wait=0.3)) is not None:
        got.extend(b.items)
        buf.ack(b)
    assert got == ["a", "b", "c"]
    buf.close()
