"""Where replay starts: the checkpoint "every record up to P is in chunks" (checkpoint.json),
WAL segments released up to it, and positions that never repeat across restarts."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from sluiceway.model import EntryBlock, Matcher
from sluiceway.store import Store, StoreConfig
from tests.inproc import wait_for
from tests.procs import ServerProcess


def _push(srv: ServerProcess, tag: str, t0: int, n: int = 50) -> list[str]:
    lines = [f"{tag} {i:03d}" for i in range(n)]
    body = orjson.dumps({"streams": [{"stream": {"job": "ckpt"}, "values": [
        [str(t0 + i), line] for i, line in enumerate(lines)]}]})
    r = httpx.post(f"{srv.url}/loki/api/v1/push", content=body, timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text
    return lines


def _query(srv: ServerProcess) -> list[str]:
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=30, params={
        "query": '{job="ckpt"}', "start": str(time.time_ns() - 3600 * 10**9),
        "end": str(time.time_ns() + 10**10), "limit": "5000", "direction": "forward"})
    assert r.status_code == 200, r.text
    return [v[1] for s in r.json()["data"]["result"] for v in s["values"]]


def test_lines_acked_after_a_clean_stop_survive_a_crash(tmp_path: Path) -> None:
    """A clean stop flushes everything and deletes every WAL segment. The next process's
    WAL must not start again at segment 1, below the positions the index (before) or the
    checkpoint (now) records as flushed: a crash would then skip its records at replay
    and lose acked lines."""
    srv = ServerProcess(tmp_path / "data").start()
    t0 = time.time_ns() - 600 * 10**9
    sent: list[str] = []
    for k in range(3):  # each /flush starts a new segment
        sent += _push(srv, f"before-stop-{k}", t0 + k * 10**6)
        assert httpx.post(f"{srv.url}/flush", timeout=60).status_code == 204
    srv.stop()
    srv.start()
    sent += _push(srv, "after-restart", t0 + 10**9)
    srv.kill()  # only in the WAL
    srv.start()
    got = _query(srv)
    srv.stop()
    assert sorted(got) == sorted(sent)


def _block(labels: dict[str, str], base: int, n: int, tag: str) -> EntryBlock:
    return EntryBlock.from_lines(labels, np.arange(n, dtype=np.int64) + base,
                                 [f"{tag} {i:03d} ".encode() + b"p" * 60 for i in range(n)])


def _count(st: Store) -> dict[str, int]:
    out: dict[str, int] = {}
    for ref in st.series(["fake"], [Matcher("job", "=~", ".+")], 0, 2**62):
        lines = [ln for b in st.blocks(ref, 0, 2**62, "forward") for ln in b.lines()]
        assert len(lines) == len(set(lines)), f"a line of {ref.labels} came back twice"
        out[ref.labels["job"]] = len(lines)
    return out


def test_replay_starts_at_the_checkpoint_and_repeats_no_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Stream `slow` keeps the checkpoint at its first unflushed record, while `busy` is
    flushed by size past it: after a crash the records from the checkpoint on are
    replayed, `busy`'s lines in them are found in its chunks and not taken again, so
    queries and /index/stats count every line once. Segments before the checkpoint are
    gone."""
    caplog.set_level(logging.INFO, logger="sluiceway.store")
    cfg = StoreConfig(data_dir=tmp_path, chunk_target_size=4000, compaction_enabled=False,
                      flush_on_shutdown=False, flush_check_period=3600)
    st = Store(cfg)
    base = time.time_ns() - 600 * 10**9
    st.push("fake", [_block({"job": "first"}, base, 5, "first")]).result(60)
    st.flush_all()  # everything in chunks: checkpoint, and a new segment
    first_segment = st.wal.segment
    st.push("fake", [_block({"job": "busy"}, base, 60, "busy0"),
                     _block({"job": "slow"}, base, 3, "slow0")]).result(60)
    for k in range(1, 4):
        st.push("fake", [_block({"job": "busy"}, base + k * 1000, 60, f"busy{k}")]).result(60)
    wait_for(lambda: st.chunks_flushed == 5, "busy's heads to be flushed")
    ckpt = st.checkpoint()
    assert ckpt is not None and ckpt.segment == first_segment - 1  # before slow's record
    assert orjson.loads((tmp_path / "checkpoint.json").read_bytes())["after"] == [
        ckpt.segment, ckpt.offset]
    st.close()  # a crash, for the heads: nothing more is flushed
    # The segment before the checkpoint's is released; the one after it is replayed.
    assert [p.name for p in (tmp_path / "wal").glob("*.wal")] == [f"{first_segment:08d}.wal"]

    st = Store(cfg)
    try:
        assert st.replayed_records == 4  # everything after the checkpoint
        assert st.heads.replay_duplicates == 4 * 60  # busy's lines, all in chunks
        assert _count(st) == {"first": 5, "busy": 240, "slow": 3}
        stats = st.index_stats(["fake"], [Matcher("job", "=~", ".+")], 0, 2**62)
        assert (stats["streams"], stats["entries"]) == (3, 248)
        st.flush_all()
        assert not [p for p in (tmp_path / "wal").glob("*.wal") if p.stat().st_size]
    finally:
        st.close()
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert re.search(r"replayed 4 WAL records in \S+ \(243 lines; 240 of them were in "
                     r"chunks already, found reading \d+ chunks\)", log), log


def test_a_head_that_pins_old_segments_is_forced_out_past_max_wal_size(
        tmp_path: Path) -> None:
    """`max_wal_size`: a quiet stream's head keeps the checkpoint at its first record
    while a busy one fills the WAL; once the WAL is over the limit, the heads that pin its
    oldest segment are flushed and the segments go."""
    cfg = StoreConfig(data_dir=tmp_path, wal_segment_size=64 << 10, max_wal_size=256 << 10,
                      chunk_target_size=16 << 10, flush_check_period=0.05,
                      compaction_enabled=False)
    st = Store(cfg)
    try:
        base = time.time_ns() - 600 * 10**9
        st.push("fake", [_block({"job": "quiet"}, base, 3, "quiet")]).result(60)
        for k in range(200):  # about 1.3 MB of records
            st.push("fake", [_block({"job": "busy"}, base + k * 100, 100, f"busy{k}")]).result(60)
        quiet = next(s for s in st.tenant("fake").stream_list() if s.labels["job"] == "quiet")
        wait_for(lambda: bool(quiet.chunks), "the quiet head to be forced out")
        wait_for(lambda: st.wal.size_bytes() <= cfg.max_wal_size + cfg.wal_segment_size,
                 "old segments to be released")
        assert _count(st) == {"quiet": 3, "busy": 200 * 100}
    finally:
        st.close()


def test_the_index_names_no_log_position(tmp_path: Path) -> None:
    """Where replay starts is the checkpoint's business alone: index records (written by
    flushes and compaction) name no WAL position, so another ingest log's positions never
    have to fit the index."""
    from sluiceway.store import LocalDir
    from sluiceway.store._index import decode

    st = Store(StoreConfig(data_dir=tmp_path, compaction_enabled=False))
    try:
        base = time.time_ns() - 600 * 10**9
        for k in range(3):
            st.push("fake", [_block({"job": f"j{k}"}, base, 5, f"j{k}")]).result(60)
            st.flush_all()
        st.compact(min_age_s=0)
    finally:
        st.close()
    objects = LocalDir(tmp_path / "tenants")
    import orjson

    from sluiceway.store._frames import HDR, scan
    from sluiceway.store._index import plausible

    records = []
    for o in objects.list("index/t-fake/"):
        data = objects.get(o.key)
        assert not decode(data, o.key).lost
        records += [orjson.loads(data[a + HDR.size : b])
                    for a, b in scan(data, plausible)]  # type: ignore[misc]
    adds = [r for r in records if r["op"] == "add"]
    assert len(adds) >= 3 and {r["lvl"] for r in adds} == {1, 17}  # flushed and compacted
    assert all(set(r) == {"op", "fp", "labels", "path", "mint", "maxt", "n", "raw", "size",
                          "lvl", "at"} for r in adds), adds
    assert all(set(r) == {"op", "fp", "path", "at"} for r in records if r["op"] == "del"), \
        records
    assert all(set(r) == {"op", "v", "tenant", "period", "writer", "created", "supersedes"}
               for r in records if r["op"] == "hdr"), records
