"""`QueryParams.deadline` on every engine path: the columnar counts and unwrapped values
(one thread and several), and log queries whose filters read ahead on threads.

The clock moves only when the source hands out a block (one second each), so the
deadline passes at a known block: the query must stop there, not at the end of the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sluiceway.logql import (
    Deadline,
    ExecOptions,
    LinePrefilter,
    MemorySource,
    QueryParams,
    QueryTimeout,
    SeriesRef,
    evaluate,
)
from sluiceway.model import EntryBlock, ReadHints, StreamBatch
from tests.logql_metric.helpers import TENANT, S, columnar_only

BLOCKS = 40  # per stream
TIMEOUT_S = 3.5  # blocks handed out before the deadline passes: 3 (the 4th passes it)


class BlockClock(MemorySource):
    """A `MemorySource` whose clock advances one second for every block it hands out."""

    def __init__(self) -> None:
        super().__init__(block_size=10)
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               prefilter: LinePrefilter | None = None,
               deadline: Deadline | None = None,
               hints: ReadHints | None = None) -> Iterator[EntryBlock]:
        for b in super().blocks(ref, start, end, direction, prefilter=prefilter,
                                deadline=deadline, hints=hints):
            self.now += 1.0
            yield b


def _source(streams: int) -> BlockClock:
    src = BlockClock()
    n = BLOCKS * src.block_size
    src.push(TENANT, [StreamBatch({"job": "d", "n": str(k)}, [S + i * S for i in range(n)],
                                  [f'{{"level":"info","v":{i}}}' for i in range(n)])
                      for k in range(streams)])
    return src


def _params(src: BlockClock, parallelism: int, **kw: Any) -> QueryParams:
    return QueryParams([TENANT], 0, 10_000 * S, deadline=Deadline(TIMEOUT_S, src.clock),
                       options=ExecOptions(parallelism=parallelism, split_ns=0), **kw)


@pytest.mark.parametrize("query", [
    'sum by (level) (count_over_time({job="d"} | json [1h]))',
    'sum by (n) (bytes_over_time({job="d"}[1h]))',
    'sum by (level) (sum_over_time({job="d"} | json | unwrap v [1h]))',
])
def test_the_columnar_engine_stops_at_the_block_that_passes_the_deadline(
        query: str, monkeypatch: pytest.MonkeyPatch) -> None:
    columnar_only(monkeypatch)
    src = _source(1)  # one stream of 40 blocks: the check is between blocks of one unit
    with pytest.raises(QueryTimeout):
        evaluate(src, query, _params(src, 1, step_ns=3600 * S))
    assert src.blocks_read == 4  # the 4th block is handed out past the deadline


def test_the_columnar_engine_on_threads_stops_at_the_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    columnar_only(monkeypatch)
    src = _source(4)
    with pytest.raises(QueryTimeout):
        evaluate(src, 'sum by (n) (count_over_time({job="d"}[1h]))',
                 _params(src, 2, step_ns=3600 * S))
    # Two units in flight: each notices at its next block, of 160.
    assert 4 <= src.blocks_read <= 4 + 2


@pytest.mark.parametrize("parallelism", [1, 2])
def test_log_queries_reading_ahead_stop_at_the_deadline(parallelism: int) -> None:
    src = _source(1)
    params = _params(src, parallelism, limit=10_000, direction="forward")
    with pytest.raises(QueryTimeout):
        evaluate(src, '{job="d"} |= "info"', params)
    # The read-ahead holds at most two blocks more than the one being merged.
    assert 4 <= src.blocks_read <= 4 + 2
