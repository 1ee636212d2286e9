"""What the store holds in memory stays within its configured bounds: the heads
(`max_heads_bytes`, live and during a WAL replay), the chunk cache (`cache_bytes`, arrays
included), and a head never keeps another stream's lines alive."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sluiceway.model import MEMO_BYTES, EntryBlock, Matcher, PushRecord
from sluiceway.store import Store, StoreConfig
from sluiceway.store._cache import ChunkCache
from sluiceway.store._memory import block_bytes
from tests.inproc import wait_for

LINE = 200


def _block(app: str, first: int, n: int, base: int) -> EntryBlock:
    lines = [f"{app} line {first + j:08d} ".encode().ljust(LINE, b"x") for j in range(n)]
    return EntryBlock.from_lines({"app": app}, np.arange(first, first + n, dtype=np.int64)
                                 + base, lines)


def _record(blocks: list[EntryBlock]) -> PushRecord:
    """As the server gets a push from its workers: every block's lines in one buffer."""
    return PushRecord.decode(PushRecord("fake", blocks).encode())


def _count(st: Store, app: str) -> int:
    n = 0
    for ref in st.series(["fake"], [Matcher("app", "=", app)], 0, 2**62):
        n += sum(len(b) for b in st.blocks(ref, 0, 2**62, "forward"))
    return n


def test_a_head_keeps_only_its_own_lines_of_a_push_with_several_streams(
        tmp_path: Path) -> None:
    # Each push has 400 lines of a busy stream and one line of a quiet one. The busy
    # stream's heads are written to chunks; the quiet stream's head must not keep every
    # push's buffer (the busy lines) alive until it is cut.
    st = Store(StoreConfig(data_dir=tmp_path, chunk_target_size=70_000,
                           wal_sync="interval", compaction_enabled=False))
    base = time.time_ns()
    try:
        for i in range(20):
            st.ingest(_record([_block("busy", i * 400, 400, base),
                               _block("quiet", i, 1, base)])).result()
        wait_for(lambda: st.chunks_flushed == 20, "the busy stream's heads to be written")
        quiet = next(s for s in st.tenants["fake"].streams.values()
                     if s.labels == {"app": "quiet"})
        kept = sum(len(p.block.blob) for p in quiet.head)
        assert len(quiet.head) == 20
        assert kept <= 20 * LINE, f"the quiet stream's head keeps {kept} bytes alive"
        wait_for(lambda: st.memory.flushing.bytes == 0, "the busy heads to leave memory")
        assert st.memory.heads.bytes == sum(block_bytes(p.block) for p in quiet.head)
    finally:
        st.close()


def test_heads_past_the_bound_are_cut_and_written_early(tmp_path: Path) -> None:
    bound = 256 << 10
    st = Store(StoreConfig(data_dir=tmp_path, chunk_target_size=64 << 20, max_heads_size=bound,
                           wal_sync="interval", compaction_enabled=False))
    base = time.time_ns()
    push = 0
    try:
        for i in range(60):  # 60 pushes of 3 streams x 50 lines: 1.8 MB
            blocks = [_block(f"app{k}", i * 50, 50, base) for k in range(3)]
            push = max(push, sum(block_bytes(b) for b in blocks))
            assert st.wait_for_room(30)  # as the server does before it stores a push
            st.ingest(_record(blocks)).result()
        # Without the bound nothing would be cut (target 64 MB): all of it in memory.
        assert st.heads_cut_early > 0
        assert st.memory.heads.peak <= bound + push
        for k in range(3):
            assert _count(st, f"app{k}") == 3000
    finally:
        st.close()


def test_a_replay_larger_than_the_bound_writes_chunks_as_it_goes(tmp_path: Path) -> None:
    base = time.time_ns()
    unbounded = StoreConfig(data_dir=tmp_path, chunk_target_size=64 << 20, max_heads_size=0,
                            wal_sync="interval", flush_on_shutdown=False,
                            compaction_enabled=False)
    st = Store(unbounded)
    push = 0
    for i in range(40):  # 2 MB in the WAL, nothing in chunks
        blocks = [_block(f"app{k}", i * 50, 50, base) for k in range(5)]
        push = max(push, sum(block_bytes(b) for b in blocks))
        st.ingest(_record(blocks)).result()
    st.close()
    bound = 400 << 10
    st = Store(StoreConfig(data_dir=tmp_path, chunk_target_size=64 << 20, max_heads_size=bound,
                           wal_sync="interval", compaction_enabled=False))
    try:
        assert st.replayed_records == 40
        assert st.chunks_flushed > 0  # written during the replay, before any push
        assert st.memory.heads.peak <= bound + push
        for k in range(5):
            assert _count(st, f"app{k}") == 2000
    finally:
        st.close()


def test_the_chunk_cache_counts_arrays_and_stays_within_its_size() -> None:
    cache = ChunkCache(200_000)
    blocks = [_block("a", i * 100, 100, 0) for i in range(30)]  # ~21.6 kB each
    for i, b in enumerate(blocks):
        cache.put(str(i), b)
        assert cache.bytes <= 200_000
    held = [b for i, b in enumerate(blocks) if cache.get(str(i)) is not None]
    assert cache.bytes == sum(block_bytes(b) for b in held)
    # its arrays (16 bytes a line) and room for the per-line classes queries keep with it
    assert block_bytes(blocks[0]) == len(blocks[0].blob) + (16 + MEMO_BYTES) * len(blocks[0])
    assert cache.held.peak <= 200_000


def test_compaction_holds_one_group_at_a_time_by_default(tmp_path: Path) -> None:
    target = 200_000
    st = Store(StoreConfig(data_dir=tmp_path, chunk_target_size=40_000,
                           compaction_target_size=target, wal_sync="interval",
                           compaction_enabled=False))
    base = time.time_ns()
    try:
        for i in range(40):  # 40 x 4 streams x 100 lines x 200 B: 3.2 MB, chunks of ~40 kB
            st.ingest(_record([_block(f"app{k}", i * 100, 100, base) for k in range(4)])).result()
        st.flush_all()
        out = st.compact(min_age_s=0)
        assert out.chunks_in > out.chunks_out > 4
        # One group's chunks and their merged copy: two target sizes and their arrays.
        assert 0 < st.memory.compaction.peak <= 2 * target * 1.25
        assert st.memory.compaction.bytes == 0
        for k in range(4):
            assert _count(st, f"app{k}") == 4000
    finally:
        st.close()
