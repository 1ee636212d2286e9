"""The columnar parsers' line classes (the RE2 pass that decides which lines are plain
`key=value` pairs) are kept with a cached block: a second query over the same compacted
blocks does not classify them again and answers the same; a chunk rewritten by compaction
or a delete is new blocks, classified anew (no stale classes)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from sluiceway.logql import ExecOptions, MemorySource, QueryParams, evaluate
from sluiceway.logql._columnar_block import classifications
from sluiceway.model import EntryBlock, StreamBatch
from sluiceway.server._deletion import compile_delete
from sluiceway.server._querier import StoreSource
from sluiceway.store import CompactorConfig, Store, StoreConfig

S = 10**9
T0 = 1_700_000_040 * S
TENANT = "acme"
LABELS = {"app": "worker-1"}
Q = 'sum by (level) (count_over_time({app=~"worker-.+"} | logfmt | __error__="" [1m]))'
QJ = 'sum by (level) (count_over_time({app=~"worker-.+"} | json | __error__="" [1m]))'
QU = ('sum by (level) (sum_over_time({app=~"worker-.+"} | logfmt | unwrap i '
      '| __error__="" [1m]))')


def _lines(n: int, start: int, seed: int) -> tuple[np.ndarray, list[bytes]]:
    ts = start + S + np.arange(n, dtype=np.int64) * 10_000_000  # inside the first step
    out = []
    for i in range(n):
        k = (i * 7 + seed) % 10
        if k == 0:
            out.append(b'level=warn msg="a \\"quoted\\" word" n=1')  # escapes: per-line
        elif k == 1:
            out.append(b"level=error =oops")  # not logfmt: __error__
        elif k == 2:
            out.append(b'{"level":"info","n":3}')
        else:
            out.append(f"level={['info', 'debug'][i % 2]} i={i} took={i % 90}ms".encode())
    return ts, out


def _push(st: Store, mem: MemorySource, ts: np.ndarray, lines: list[bytes]) -> None:
    for k in range(4):
        lo, hi = len(lines) * k // 4, len(lines) * (k + 1) // 4
        st.push(TENANT, [EntryBlock.from_lines(LABELS, ts[lo:hi], lines[lo:hi])]).result()
    mem.push(TENANT, [StreamBatch(LABELS, ts.tolist(), [x.decode() for x in lines])])


def _run(src: object, q: str, columnar: bool = True) -> object:
    return evaluate(src, q, QueryParams(  # type: ignore[arg-type]
        [TENANT], T0, T0 + 900 * S, step_ns=60 * S,
        options=ExecOptions(columnar=columnar))).to_loki_json()["result"]


@pytest.mark.parametrize("q", [Q, QJ, QU])
def test_warm_query_reuses_line_classes_and_rewritten_chunks_do_not(tmp_path: Path,
                                                                    q: str) -> None:
    st = Store(StoreConfig(data_dir=tmp_path / "data", wal_sync="interval",
                           compaction_enabled=False, compaction_level=10),
               compactor=CompactorConfig(delete_request_cancel_period=0))
    st.deletes.compile = compile_delete
    try:
        mem = MemorySource(block_size=500)
        ts, lines = _lines(20_000, T0, 0)  # 200 s, several blocks once compacted
        _push(st, mem, ts, lines)
        st.flush_all()
        st.compact(min_age_s=0)
        want = _run(mem, q, columnar=False)
        before = classifications()
        first = _run(StoreSource(st), q)
        assert first == want
        cold = classifications() - before
        assert cold > 0  # the first query classified the blocks
        before = classifications()
        assert _run(StoreSource(st), q) == want
        assert classifications() == before  # the warm one read the kept classes
        # More lines of the same stream, compacted with the old ones: new chunks, new
        # blocks (a stale class would count wrongly, or fail on the row count).
        ts2, lines2 = _lines(20_000, T0 + 200 * S, 3)
        _push(st, mem, ts2, lines2)
        st.flush_all()
        st.compact(min_age_s=0)
        st.compact(min_age_s=0)
        want2 = _run(mem, q, columnar=False)
        assert want2 != want
        before = classifications()
        assert _run(StoreSource(st), q) == want2
        assert classifications() > before
        before = classifications()
        assert _run(StoreSource(st), q) == want2
        assert classifications() == before
        # A delete rewrites the chunks without the lines it names: new blocks again.
        ms = T0 // 10**6
        st.deletes.add(TENANT, '{app="worker-1"} |~ "debug|info"', ms, ms + 900_000,
                       time.time())
        assert st.process_deletes() > 0
        want3 = _run(StoreSource(st), q, columnar=False)
        assert want3 != want2
        before = classifications()
        assert _run(StoreSource(st), q) == want3
        assert classifications() > before
    finally:
        st.close()
