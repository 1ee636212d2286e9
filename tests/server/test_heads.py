"""The heads apply durable records in log order, off the WAL writer's thread, and decide
duplicates and lines too far behind per stream as Loki's stream.go does, so a replay
makes the same decisions as the pushes did."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import httpx
import numpy as np
import orjson

from sluiceway.model import EntryBlock, Matcher, PushRecord
from sluiceway.store import OUT_OF_ORDER, Store, StoreConfig, WalWriteError
from sluiceway.store._applier import Applier
from tests.inproc import InProcessServer, wait_for
from tests.procs import ServerProcess

HOUR = 3600 * 10**9


def _block(ts: list[int], lines: list[str], labels: dict[str, str] | None = None) -> EntryBlock:
    return EntryBlock.from_lines(labels or {"job": "h"}, np.array(ts, dtype=np.int64),
                                 [x.encode() for x in lines])


def _entries(st: Store, tenant: str = "fake") -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for ref in st.series([tenant], [Matcher("job", "=~", ".+")], 0, 2**62):
        for b in st.blocks(ref, 0, 2**62, "forward"):
            out += list(zip(b.ts.tolist(), b.lines(), strict=True))
    return sorted(out)


def test_apply_follows_the_append_order_whatever_order_futures_resolve() -> None:
    applied: list[str] = []
    ap: Applier[int, str] = Applier(lambda record, pos: applied.append(record.tenant) or "ok")
    logged = [Future[int]() for _ in range(5)]
    outs = [Future[str]() for _ in range(5)]
    for k in range(5):
        ap.submit(PushRecord(f"r{k}", []), logged[k], outs[k])
    for k in (4, 2, 3, 0, 1):  # the log resolves them out of order
        if k == 3:
            logged[k].set_exception(OSError("not stored"))
        else:
            logged[k].set_result(k)
    assert [f.exception(10) is not None for f in outs] == [False, False, False, True, False]
    ap.close()
    assert applied == ["r0", "r1", "r2", "r4"]
    late = Future[str]()
    ap.submit(PushRecord("late", []), Future(), late)  # after close: refused, never hangs
    assert isinstance(late.exception(10), WalWriteError)


def test_the_wal_writer_goes_on_while_the_heads_apply(tmp_path: Path) -> None:
    """Applying a record does not hold up the WAL: the next push is written (durable)
    while the first is still being applied; each answer waits for its own apply."""
    st = Store(StoreConfig(data_dir=tmp_path, compaction_enabled=False))
    entered, release = threading.Event(), threading.Event()
    real = st.heads.apply

    def apply(tenant: str, record: PushRecord, pos: object, replay: bool = False) -> object:
        if record.blocks[0].lines()[0] == b"first":
            entered.set()
            assert release.wait(60)
        return real(tenant, record, pos, replay)  # type: ignore[arg-type]

    st.heads.apply = apply  # type: ignore[method-assign]
    try:
        base = time.time_ns()
        first = st.push("fake", [_block([base], ["first"])])
        assert entered.wait(60)
        second = st.push("fake", [_block([base + 1], ["second"])])
        wait_for(lambda: st.wal.records == 2, "the second record to be written")
        assert not first.done() and not second.done()  # durable, not yet applied
        release.set()
        first.result(60)
        second.result(60)
        assert _entries(st) == [(base, b"first"), (base + 1, b"second")]
    finally:
        release.set()
        st.close()


def test_the_push_s_own_newest_line_counts_as_in_loki() -> None:
    """Loki's stream.go moves the stream's newest time along the push: a line more than
    the window behind an earlier line of the same push is refused, in a new stream too."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        srv = InProcessServer(Path(d))
        try:
            now = time.time_ns() - 10**9
            body = orjson.dumps({"streams": [{"stream": {"job": "new"}, "values": [
                [str(now), "newest"], [str(now - 2 * HOUR), "two hours back"],
                [str(now - 30 * 60 * 10**9), "half an hour back"]]}]})
            r = srv.post("/loki/api/v1/push", content=body,
                         headers={"Content-Type": "application/json"})
            assert r.status_code == 400
            assert "entry too far behind" in r.text and "total ignored: 1 out of 3" in r.text
            assert [line for _, line in _entries(srv.store)] == [
                b"half an hour back", b"newest"]
        finally:
            srv.close()


def test_the_window_is_limits_unordered_window(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path, **{"limits.unordered_window": "10m"})
    try:
        now = time.time_ns() - 10**9

        def push(ts: int, line: str) -> int:
            body = orjson.dumps({"streams": [{"stream": {"job": "w"}, "values": [
                [str(ts), line]]}]})
            return srv.post("/loki/api/v1/push", content=body,
                            headers={"Content-Type": "application/json"}).status_code

        assert push(now, "newest") == 204
        assert push(now - 5 * 60 * 10**9, "five minutes back") == 204
        assert push(now - 30 * 60 * 10**9, "half an hour back") == 400
    finally:
        srv.close()


def test_a_replay_refuses_what_the_push_refused(tmp_path: Path) -> None:
    """The WAL holds the refused line too (it is decided after the write); a replay
    decides it the same way."""
    cfg = StoreConfig(data_dir=tmp_path, compaction_enabled=False, flush_on_shutdown=False)
    st = Store(cfg)
    now = time.time_ns()
    st.push("fake", [_block([now], ["newest"])]).result(60)
    applied = st.push("fake", [_block([now - 2 * HOUR, now - 1], ["old", "recent"])]).result(60)
    assert [(r.reason, r.lines.lines()) for r in applied.rejections] == [
        (OUT_OF_ORDER, [b"old"])]
    assert applied.rejections[0].detail().startswith("entry with timestamp ")
    live = _entries(st)
    st.close()  # nothing flushed: the next start replays both records
    st = Store(cfg)
    try:
        assert st.replayed_records == 2
        assert _entries(st) == live == [(now - 1, b"recent"), (now, b"newest")]
    finally:
        st.close()


def test_concurrent_pushes_to_one_stream_replay_to_what_was_served(tmp_path: Path) -> None:
    """Many threads push to one stream, times jumping back and forth across the window,
    so which lines are refused depends on the order they are applied in. Records are
    applied in the order of their WAL positions, and the lines served before a crash are
    exactly the lines a replay brings back."""
    cfg = StoreConfig(data_dir=tmp_path, compaction_enabled=False, flush_on_shutdown=False)
    st = Store(cfg)
    positions: list[object] = []
    real = st.heads.apply

    def apply(tenant: str, record: PushRecord, pos: object, replay: bool = False) -> object:
        positions.append(pos)
        return real(tenant, record, pos, replay)  # type: ignore[arg-type]

    st.heads.apply = apply  # type: ignore[method-assign]
    base = time.time_ns() - 4 * HOUR
    refused = [0]
    lock = threading.Lock()

    def pusher(w: int) -> None:
        rng = random.Random(w)
        for k in range(40):
            ts = sorted(base + rng.randrange(0, 3 * HOUR) for _ in range(3))
            a = st.push("fake", [_block(ts, [f"w{w} k{k} {i}" for i in range(3)])]).result(60)
            with lock:
                refused[0] += a.rejected

    threads = [threading.Thread(target=pusher, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    live = _entries(st)
    assert refused[0] and len(live) + refused[0] == 6 * 40 * 3
    assert len(positions) == 240 and positions == sorted(positions)  # type: ignore[type-var]
    st.close()
    st = Store(cfg)
    try:
        assert _entries(st) == live
    finally:
        st.close()


def test_the_window_is_the_tenant_s_own_and_a_replay_keeps_it(tmp_path: Path) -> None:
    """`unordered_window` overridden for one tenant (runtime config): its pushes are judged
    by its own window, the others' by the default; after a SIGKILL the replay (the heads'
    windows are given to the store before it) refuses exactly what the pushes refused."""
    rt = tmp_path / "runtime.yaml"
    rt.write_text("overrides:\n  strict:\n    unordered_window: 10m\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"runtime_config:\n  file: {rt}\n"
                   "storage:\n  flush_on_shutdown: false\n")
    srv = ServerProcess(tmp_path / "data", config=cfg).start()
    now = time.time_ns() - 10**9

    def push(tenant: str, ts: int, line: str) -> int:
        body = orjson.dumps({"streams": [{"stream": {"job": "w"}, "values": [[str(ts), line]]}]})
        return httpx.post(f"{srv.url}/loki/api/v1/push", content=body, timeout=30, headers={
            "Content-Type": "application/json", "X-Scope-OrgID": tenant}).status_code

    def lines(tenant: str) -> list[str]:
        r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=30, params={
            "query": '{job="w"}', "start": str(now - HOUR), "end": str(now + 10**9),
            "direction": "forward"}, headers={"X-Scope-OrgID": tenant})
        assert r.status_code == 200, r.text
        return [v[1] for s in r.json()["data"]["result"] for v in s["values"]]

    try:
        for tenant in ("strict", "lax"):
            assert push(tenant, now, "newest") == 204
        assert push("strict", now - 30 * 60 * 10**9, "half an hour back") == 400
        assert push("lax", now - 30 * 60 * 10**9, "half an hour back") == 204
        served = {t: lines(t) for t in ("strict", "lax")}
        assert served == {"strict": ["newest"], "lax": ["half an hour back", "newest"]}
        srv.kill()  # every line only in the WAL
        srv.start()
        assert {t: lines(t) for t in ("strict", "lax")} == served
    finally:
        srv.stop()


def test_the_heads_drop_exact_duplicates_of_the_stream(tmp_path: Path) -> None:
    """An exact duplicate (same time and line as one the stream holds in memory, or one
    earlier in the push) is dropped by the heads, not only hidden by reads: /index/stats
    counts what the heads hold. The same time with another line, or the same line in
    another stream, is kept."""
    st = Store(StoreConfig(data_dir=tmp_path, compaction_enabled=False))
    try:
        t = time.time_ns()
        first = st.push("fake", [_block([t, t, t], ["a", "b", "a"])]).result(60)
        assert (first.duplicates, first.rejected) == (1, 0)
        again = st.push("fake", [_block([t, t], ["b", "c"]),
                                 _block([t], ["b"], {"job": "other"})]).result(60)
        assert again.duplicates == 1
        assert [b.lines() for b in again.blocks] == [[b"c"], [b"b"]]  # what live tail gets
        stats = st.index_stats(["fake"], [Matcher("job", "=~", ".+")], 0, 2**62)
        assert (stats["streams"], stats["entries"]) == (2, 4)
        assert _entries(st) == [(t, b"a"), (t, b"b"), (t, b"b"), (t, b"c")]
    finally:
        st.close()
