"""Skipping what cannot match (issue 12 step 5), on real stores on disk, in process.

The compactor writes a token filter per block; a query whose lines must hold a token
leaves out the blocks whose filter lacks it (counted as blocks skipped by filter), and
answers exactly as the same lines held in memory. Counts without a parser or filter are
answered from block footers where a block lies inside one bucket of the query's window
edges and no other chunk overlaps it; everywhere else (blocks straddling an edge, chunks
holding exact duplicates of each other) the lines are read, and every answer is the
per-line reference's.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import orjson
import pytest

from sluiceway.logql import (
    ExecOptions,
    LevelRules,
    MemorySource,
    QueryParams,
    block_levels,
    evaluate,
)
from sluiceway.model import EntryBlock, StreamBatch
from sluiceway.server._querier import StoreSource
from sluiceway.store import Store, StoreConfig
from sluiceway.store import _chunkfmt as v2

S = 10**9
T0 = 1_700_000_040 * S  # a minute edge + 40 s
TENANT = "acme"
API = {"app": "api", "env": "prod"}
JOBS = {"app": "jobs", "env": "prod", "level": "warn"}
WEB = {"app": "web", "env": "edge", "level": "info"}  # its label decides every line's level
NEEDLE = "qz7kv93xw"
RULES = LevelRules()


def _store(data: Path, **kw: object) -> Store:
    cfg = StoreConfig(data_dir=data, wal_sync="interval", compaction_enabled=False,
                      compaction_level=10, **kw)  # type: ignore[arg-type]
    return Store(cfg)


def _lines(n: int, step_ns: int, seed: int, start: int = T0,
           needle_every: int = 0) -> tuple[np.ndarray, list[bytes]]:
    """`n` JSON and logfmt lines `step_ns` apart with random ids; every `needle_every`th
    line holds the needle as a word."""
    rng = random.Random(seed)
    ts = start + np.arange(n, dtype=np.int64) * step_ns
    out = []
    for i in range(n):
        extra = f" {NEEDLE}" if needle_every and i % needle_every == needle_every // 2 else ""
        if i % 2:
            out.append((f'{{"level":"{rng.choice(["info", "error"])}","msg":"done{extra}",'
                        f'"user":"u\\u0041{rng.getrandbits(20)}","trace":'
                        f'"{rng.getrandbits(64):016x}"}}').encode())
        else:
            out.append((f'level=info msg="job {i}{extra}" trace={rng.getrandbits(64):016x} '
                        f'took={rng.randint(1, 900)}ms').encode())
    return ts, out


def _push(st: Store, labels: dict[str, str], ts: np.ndarray, lines: list[bytes],
          mem: MemorySource, parts: int = 4) -> None:
    for k in range(parts):
        lo, hi = len(lines) * k // parts, len(lines) * (k + 1) // parts
        st.push(TENANT, [EntryBlock.from_lines(labels, ts[lo:hi], lines[lo:hi])]).result()
    mem.push(TENANT, [StreamBatch(labels, ts.tolist(), [x.decode() for x in lines])])


def _result(src: object, q: str, **kw: object) -> object:
    return evaluate(src, q, QueryParams([TENANT], **kw)).to_loki_json()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def compacted(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A store whose data is compacted (filters in every block) plus a reference."""
    data = tmp_path_factory.mktemp("filters") / "data"
    st = _store(data)
    # As the server does: the compactor counts each block's lines by detected_level.
    st.block_labels = lambda _tenant, b: (RULES.key, block_levels(RULES, b))
    mem = MemorySource(block_size=500)
    ts, lines = _lines(40_000, 5_000_000, 1, needle_every=30_000)  # 200 s, ~3.5 MB
    _push(st, API, ts, lines, mem)
    st.flush_all()
    ts2, lines2 = _lines(3000, 200_000_000, 2)  # 600 s, sparse
    _push(st, JOBS, ts2, lines2, mem)
    ts3, lines3 = _lines(36_000, 2_500_000, 3, start=T0 + 60 * S + 10**6)  # 90 s
    _push(st, WEB, ts3, lines3, mem)
    st.flush_all()
    st.compact(min_age_s=0)
    st.compact(min_age_s=0)
    yield st, mem
    st.close()


def _footers(st: Store) -> list[v2.Footer]:
    out = []
    for t in st.tenants.values():
        for s in t.stream_list():
            for c in s.chunks:
                out.append(t.footer(s, c)[0])
    return out


def test_compacted_blocks_carry_filters_and_fresh_ones_none(tmp_path: Path,
                                                            compacted) -> None:  # type: ignore[no-untyped-def]
    st, _ = compacted
    blocks = [b for f in _footers(st) for b in f.blocks]
    assert len(blocks) >= 4 and all(b.filters for b in blocks)
    fresh = _store(tmp_path / "data")
    try:
        ts, lines = _lines(2000, 5_000_000, 3)
        _push(fresh, API, ts, lines, MemorySource())
        fresh.flush_all()
        assert all(not b.filters for f in _footers(fresh) for b in f.blocks)
    finally:
        fresh.close()


@pytest.mark.parametrize("q", [
    '{{app=~".+"}} |~ "\\\\b{needle}\\\\b"',
    '{{app="api"}} |= "done {needle}\\"" | json',
    '{{app="api"}} | json | user="{user}"',
    '{{app="api"}} |= "took=" | logfmt | trace="{trace}"',
])
def test_a_rare_token_skips_the_blocks_without_it(compacted, q: str) -> None:  # type: ignore[no-untyped-def]
    # A user and a trace id of one line each (the user's `\u0041` is unescaped by json).
    _, api_lines = _lines(40_000, 5_000_000, 1, needle_every=30_000)
    user = orjson.loads(api_lines[20_001])["user"]
    trace = api_lines[20_002].split(b"trace=")[1].split()[0].decode()
    q = q.format(user=user, trace=trace, needle=NEEDLE)
    st, mem = compacted
    kw = {"start": T0, "end": T0 + 700 * S, "limit": 5000, "direction": "forward"}
    want = _result(mem, q, **kw)
    src = StoreSource(st)
    got = evaluate(src, q, QueryParams([TENANT], **kw))  # type: ignore[arg-type]
    assert got.to_loki_json()["result"] == want["result"]
    stats = got.stats
    assert stats.blocks_skipped >= 3, (q, stats)
    assert stats.blocks_read <= 3, (q, stats)
    summary = got.to_loki_json()["stats"]["summary"]
    assert summary["totalBlocksSkippedByFilter"] == stats.blocks_skipped
    # The same as a metric query, on both engines.
    for columnar in (True, False):
        mq = f"sum(count_over_time({q} [1m]))"
        want_m = _result(mem, mq, start=T0, end=T0 + 700 * S, step_ns=60 * S,
                         options=ExecOptions(columnar=False))
        got_m = evaluate(StoreSource(st), mq, QueryParams(
            [TENANT], T0, T0 + 700 * S, step_ns=60 * S, options=ExecOptions(columnar=columnar)))
        assert got_m.to_loki_json()["result"] == want_m["result"], (mq, columnar)
        assert got_m.stats.blocks_skipped >= 3


def test_a_token_in_every_block_skips_nothing_and_a_fresh_chunk_is_read(
        compacted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    st, mem = compacted
    q = '{app="api"} |= " msg=" | logfmt'
    got = evaluate(StoreSource(st), q, QueryParams([TENANT], T0, T0 + 700 * S, limit=10))
    assert got.stats.blocks_skipped == 0
    fresh = _store(tmp_path / "data")
    try:
        ts, lines = _lines(4000, 5_000_000, 3, needle_every=3000)
        _push(fresh, API, ts, lines, MemorySource())
        fresh.flush_all()
        q = f'{{app="api"}} |~ "\\\\b{NEEDLE}\\\\b"'
        got = evaluate(StoreSource(fresh), q, QueryParams([TENANT], T0, T0 + 700 * S))
        # Data younger than the compaction age has no filters: every block is read.
        assert got.stats.blocks_skipped == 0 and got.stats.blocks_read >= 2
        assert len(got.to_loki_json()["result"][0]["values"]) == 1
    finally:
        fresh.close()


METRIC = [  # query, step (s), blocks from footers at least: without levels, with them
    ('count_over_time({app="api"}[1m])', 60, 2, 2),  # its lines say their level
    ('sum by (env) (count_over_time({app=~".+"}[1m]))', 60, 4, 4),
    ('bytes_over_time({app="api"}[2m])', 60, 2, 2),
    ('sum(rate({app=~".+"}[5m]))', 300, 4, 4),
    ('count_over_time({app="api"}[1m])', 10, 0, 0),  # 10 s buckets: blocks straddle
    ('sum without (env) (bytes_rate({app=~".+"}[1m]))', 30, 0, 0),
    ('count_over_time({app="web"}[1m])', 60, 2, 2),  # its label decides its level
    ('count_over_time({app=~"web|jobs"}[1m])', 60, 2, 2),
]


@pytest.mark.parametrize(("q", "step", "plain", "leveled"), METRIC)
@pytest.mark.parametrize("levels", [False, True])
def test_counts_from_block_metadata_equal_the_lines(compacted, q: str, step: int, plain: int,
                                                    leveled: int, levels: bool) -> None:  # type: ignore[no-untyped-def]
    """The differential: the store's answer (some blocks counted from their footers)
    is the per-line engine's over the same lines in memory."""
    st, mem = compacted
    rules = RULES if levels else None
    kw = {"start": T0 - 60 * S, "end": T0 + 700 * S, "step_ns": step * S, "levels": rules}
    want = _result(mem, q, options=ExecOptions(columnar=False), **kw)
    for par in (1, 2):
        got = evaluate(StoreSource(st), q, QueryParams(
            [TENANT], options=ExecOptions(parallelism=par), **kw))  # type: ignore[arg-type]
        assert got.to_loki_json()["result"] == want["result"]
        s = got.stats
        assert s.blocks_summarized >= (leveled if levels else plain), s
        assert s.lines_processed == s.post_filter_lines  # summaries count their lines


def test_counts_kept_under_other_level_rules_are_not_used(compacted) -> None:  # type: ignore[no-untyped-def]
    """The tenant's level fields changed since compaction: the kept counts by level say
    nothing of the levels now, so the lines are read."""
    st, mem = compacted
    q = 'count_over_time({app="api"}[1m])'
    kw = {"start": T0, "end": T0 + 700 * S, "step_ns": 60 * S,
          "levels": LevelRules(("lvl",))}
    got = evaluate(StoreSource(st), q, QueryParams([TENANT], **kw))  # type: ignore[arg-type]
    assert got.to_loki_json()["result"] == _result(
        mem, q, options=ExecOptions(columnar=False), **kw)["result"]
    assert got.stats.blocks_summarized == 0 and got.stats.blocks_read >= 4


def test_blocks_straddling_a_bucket_edge_count_by_minute_or_are_read(
        compacted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The sparse stream's blocks span many minutes. Counted in whole minutes, their
    footers' counts per minute answer; in 30-second buckets, or without counts (a fresh
    chunk), they must be read (counted from the footer as one bucket, every line would
    land in the wrong one)."""
    st, mem = compacted
    footers = [f for f in _footers(st) if f.labels is not None and "jobs" in f.labels]
    spans = [(b.mint, b.maxt) for f in footers for b in f.blocks]
    straddling = sum(1 for a, b in spans if -(-a // (30 * S)) != -(-b // (30 * S)))
    assert straddling >= 1
    for q, step, read in (('count_over_time({app="jobs"}[1m])', 60, 0),
                          ('bytes_over_time({app="jobs"}[5m])', 60, 0),
                          ('count_over_time({app="jobs"}[30s])', 30, straddling),
                          ('count_over_time({app="jobs"}[1m])', 30, straddling)):
        kw = {"start": T0, "end": T0 + 700 * S, "step_ns": step * S}
        got = evaluate(StoreSource(st), q, QueryParams([TENANT], **kw))  # type: ignore[arg-type]
        assert got.to_loki_json()["result"] == _result(
            mem, q, options=ExecOptions(columnar=False), **kw)["result"], (q, step)
        assert got.stats.blocks_read >= read, (q, step)
        if not read:
            assert got.stats.blocks_summarized == len(spans), (q, step)
    fresh = _store(tmp_path / "data")
    fresh_mem = MemorySource(block_size=500)
    try:
        ts, lines = _lines(3000, 200_000_000, 2)
        _push(fresh, JOBS, ts, lines, fresh_mem)
        fresh.flush_all()
        q = 'count_over_time({app="jobs"}[1m])'
        kw = {"start": T0, "end": T0 + 700 * S, "step_ns": 60 * S}
        got = evaluate(StoreSource(fresh), q, QueryParams([TENANT], **kw))  # type: ignore[arg-type]
        assert got.to_loki_json()["result"] == _result(
            fresh_mem, q, options=ExecOptions(columnar=False), **kw)["result"]
        assert got.stats.blocks_read >= 1
    finally:
        fresh.close()


def test_chunks_holding_exact_duplicates_of_each_other_are_read(tmp_path: Path) -> None:
    """The same lines pushed again after a flush land in a second chunk over the same
    time: the read removes the duplicates, so neither chunk may be counted from its
    footer (the count would be twice the lines)."""
    st = _store(tmp_path / "data")
    mem = MemorySource(block_size=500)
    try:
        ts, lines = _lines(20_000, 5_000_000, 4)
        _push(st, API, ts, lines, mem)
        st.flush_all()
        _push(st, API, ts, lines, mem)  # exact duplicates, in a chunk of their own
        st.flush_all()
        ts2, lines2 = _lines(20_000, 5_000_000, 5, start=T0 + 200 * S)
        _push(st, API, ts2, lines2, mem)  # after them: a chunk no other overlaps
        st.flush_all()
        q = 'count_over_time({app="api"}[1m])'
        kw = {"start": T0, "end": T0 + 500 * S, "step_ns": 60 * S}
        got = evaluate(StoreSource(st), q, QueryParams([TENANT], **kw))  # type: ignore[arg-type]
        assert got.to_loki_json()["result"] == _result(
            mem, q, options=ExecOptions(columnar=False), **kw)["result"]
        lone = [f for f in _footers(st) if f.mint >= T0 + 200 * S]
        overlapping = [f for f in _footers(st) if f.mint < T0 + 200 * S]
        assert len(overlapping) == 2
        # Only the lone chunk's blocks come from footers; both copies are read, merged
        # and deduplicated (the engine sees each line once, a block per pair).
        assert 1 <= got.stats.blocks_summarized <= sum(len(f.blocks) for f in lone)
        assert got.stats.blocks_read >= len(overlapping[0].blocks)
        assert got.stats.lines_processed == 40_000
    finally:
        st.close()


def test_chunks_overlapping_at_an_edge_read_only_the_blocks_there(tmp_path: Path) -> None:
    """Two chunks whose time spans meet in a few seconds (out-of-order pushes, with
    exact duplicates there): the blocks in that stretch are read and merged, the others
    are counted from their footers."""
    st = _store(tmp_path / "data")
    mem = MemorySource(block_size=500)
    try:
        ts, lines = _lines(40_000, 5_000_000, 6)  # 200 s
        _push(st, API, ts[:30_000], lines[:30_000], mem)
        st.flush_all()
        # The second chunk starts 10 s before the first ends, repeating 1,000 of its lines.
        _push(st, API, ts[28_000:], lines[28_000:], mem)
        st.flush_all()
        spans = sorted((f.mint, f.maxt) for f in _footers(st))
        assert len(spans) == 2 and spans[1][0] <= spans[0][1]
        q = 'count_over_time({app="api"}[1m])'
        kw = {"start": T0, "end": T0 + 300 * S, "step_ns": 60 * S}
        got = evaluate(StoreSource(st), q, QueryParams([TENANT], **kw))  # type: ignore[arg-type]
        assert got.to_loki_json()["result"] == _result(
            mem, q, options=ExecOptions(columnar=False), **kw)["result"]
        assert got.stats.blocks_summarized >= 4 and got.stats.blocks_read >= 2
    finally:
        st.close()


def test_compaction_merges_chunks_that_overlap_so_compacted_ones_do_not(
        tmp_path: Path) -> None:
    """Fresh chunks that overlap in time (pushes out of order) go into one compacted chunk
    even past the target size (up to twice), so compacted chunks do not overlap and their
    blocks can be counted from their footers."""
    st = _store(tmp_path / "data", compaction_target_size=1 << 20)
    mem = MemorySource(block_size=500)
    try:
        for k, start in enumerate((0, 10, 30, 40)):  # [0,15] [10,25] [30,45] [40,55] s
            ts, lines = _lines(9000, 15 * S // 9000, 10 + k, start=T0 + start * S)
            _push(st, API, ts, lines, mem, parts=1)
            st.flush_all()
        assert len(_footers(st)) == 4
        st.compact(min_age_s=0)
        spans = sorted((f.mint, f.maxt) for f in _footers(st))
        assert len(spans) == 2
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))
        q = 'count_over_time({app="api"}[1m])'
        kw = {"start": T0, "end": T0 + 120 * S, "step_ns": 60 * S}
        got = evaluate(StoreSource(st), q, QueryParams([TENANT], **kw))  # type: ignore[arg-type]
        assert got.to_loki_json()["result"] == _result(
            mem, q, options=ExecOptions(columnar=False), **kw)["result"]
        assert got.stats.blocks_read == 0 and got.stats.blocks_summarized >= 2
    finally:
        st.close()


def test_a_footer_keeps_the_rows_of_its_blocks_for_the_grids_asked(compacted) -> None:  # type: ignore[no-untyped-def]
    """A count reads each block's counts section once: the rows per bucket stay with the
    cached footer for up to `MEMO_GRIDS` grids a block (a dashboard's refreshes ask the
    same again), they are what the section says, and answers stay exact."""
    from sluiceway.store._blockfilter import MEMO_GRIDS, block_rows

    st, mem = compacted
    q = 'count_over_time({app="jobs"}[1m])'
    footers = [f for f in _footers(st) if f.labels is not None and "jobs" in f.labels]
    for f in footers:
        f.memo.clear()
    for step, levels in ((60, RULES), (60, None), (120, RULES), (300, RULES), (600, RULES),
                         (900, RULES), (60, RULES)):
        kw = {"start": T0, "end": T0 + 700 * S, "step_ns": step * S, "levels": levels}
        got = evaluate(StoreSource(st), q, QueryParams([TENANT], **kw))  # type: ignore[arg-type]
        assert got.to_loki_json()["result"] == _result(
            mem, q, options=ExecOptions(columnar=False), **kw)["result"], step
        assert got.stats.blocks_summarized >= 1
    kept = 0
    for f in footers:
        assert len(f.memo) <= (MEMO_GRIDS + 1) * len(f.blocks)
        for k, rows in f.memo.items():
            assert isinstance(k, tuple)
            if len(k) != 3:
                continue  # a block's parsed counts section
            index, key, grid = k
            b = f.blocks[index]
            one = -(-b.mint // grid) == -(-b.maxt // grid)
            assert rows == block_rows(b.filters, key, grid, one, b.n, b.line_bytes, b.maxt)
            kept += 1
    assert kept >= 1
