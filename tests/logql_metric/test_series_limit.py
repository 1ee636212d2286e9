"""`max_query_series`: a metric query stops as soon as its answer would hold more series
than the limit (Loki's message), not after building all of them; an answer within the
limit is never refused because of the series it was computed from."""

from __future__ import annotations

from typing import Any

import pytest

from sluiceway.logql import ExecOptions, MemorySource, QueryError, QueryParams, evaluate
from sluiceway.logql._template_funcs import FUNCS
from sluiceway.model import StreamBatch
from tests.logql_metric.helpers import TENANT, S, columnar_only

STREAMS = 50
LIMIT = 3
MESSAGE = f"maximum of series ({LIMIT}) reached for a single query"


def _many(t: float = 30, line: str = "v=1") -> MemorySource:
    """50 streams `{job="many", n="<i>"}`, one line each (one block per stream)."""
    src = MemorySource()
    src.push(TENANT, [StreamBatch({"job": "many", "n": str(i)}, [int(t * S)], [line])
                      for i in range(STREAMS)])
    return src


def _instant(query: str, at: float = 60) -> QueryParams:
    return QueryParams([TENANT], int(at * S), int(at * S), instant=True, max_series=LIMIT)


@pytest.mark.parametrize("query", [
    'count_over_time({job="many"}[1m])',
    'rate({job="many"}[1m]) * 2',
    '2 * bytes_over_time({job="many"}[1m])',
    'sum by (n) (count_over_time({job="many"}[1m]))',
    'avg by (n) (count_over_time({job="many"}[1m]))',
    'sort_desc(max by (n) (rate({job="many"}[1m])))',
    'count_over_time({job="many"}[1m]) > bool 0',
    'sum_over_time({job="many"} | logfmt | unwrap v [1m])',
    'max by (n) (max_over_time({job="many"} | logfmt | unwrap v [1m]))',
])
def test_stops_at_the_first_series_past_the_limit(query: str) -> None:
    src = _many()
    with pytest.raises(QueryError) as err:
        evaluate(src, query, _instant(query))
    assert str(err.value) == MESSAGE
    assert src.blocks_read == LIMIT + 1  # of 50: one block per stream


@pytest.mark.parametrize("query,series", [
    ('sum(count_over_time({job="many"}[1m]))', 1),
    ('count(rate({job="many"}[1m]))', 1),
    ('topk(2, count_over_time({job="many"}[1m]))', 2),
    ('count_over_time({job="many"}[1m]) > 5', 0),  # the filter empties the answer
    ('sum by (job) (count_over_time({job="many"}[1m]))', 1),
    ('count_over_time({job="many"}[1m]) and on () vector(1) > 5', 0),
])
def test_an_answer_within_the_limit_is_not_refused(query: str, series: int) -> None:
    res = evaluate(_many(), query, _instant(query)).to_loki_json()
    assert len(res["result"]) == series


def test_series_not_counted_early_are_counted_at_the_end() -> None:
    src = _many()
    query = 'label_replace(count_over_time({job="many"}[1m]), "x", "$1", "n", "(.*)")'
    with pytest.raises(QueryError, match=MESSAGE.replace("(", r"\(").replace(")", r"\)")):
        evaluate(src, query, _instant(query))


def test_lines_between_the_windows_make_no_series() -> None:
    # Points at 300 s and 600 s with [1m] windows: lines at 400 s are read but fall in no
    # window, so the answer is empty, not 50 series past the limit.
    src = _many(t=400)
    params = QueryParams([TENANT], 60 * S, 600 * S, step_ns=300 * S, max_series=LIMIT)
    res = evaluate(src, 'count_over_time({job="many"}[1m])', params).to_loki_json()
    assert res["result"] == []
    assert src.blocks_read == STREAMS


def test_stops_inside_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    # One stream, one block of 200 lines, each line its own series after `logfmt`: the
    # query stops at the line that makes the fourth series.
    lines_seen: list[Any] = []
    monkeypatch.setitem(FUNCS, "probe", lambda: lines_seen.append(1) or "")
    src = MemorySource(block_size=1000)
    src.push(TENANT, [StreamBatch({"job": "one"}, [int(30 * S) + i for i in range(200)],
                                  [f"id={i}" for i in range(200)])])
    query = 'count_over_time({job="one"} | logfmt | line_format "{{ probe }}" [1m])'
    with pytest.raises(QueryError, match=r"maximum of series \(3\)"):
        evaluate(src, query, _instant(query))
    assert src.blocks_read == 1
    assert len(lines_seen) == LIMIT + 1


@pytest.mark.parametrize("query", [
    'count_over_time({job="many"}[1m])',
    'sum by (n) (rate({job="many"} | logfmt | v="1" [1m]))',
    'sum by (n) (bytes_over_time({job="many"} | logfmt [1m])) * 2',
    'sum by (n) (sum_over_time({job="many"} | logfmt | unwrap v [1m]))',
])
def test_the_columnar_engine_stops_at_the_first_series_past_the_limit(
        query: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The per-line engine is out of the way: these shapes run on the columnar one, whose
    # units count each block's series on the query's limit as they read.
    columnar_only(monkeypatch)
    src = _many()
    with pytest.raises(QueryError) as err:
        evaluate(src, query, _instant(query))
    assert str(err.value) == MESSAGE
    assert src.blocks_read == LIMIT + 1  # of 50: one block per stream


def test_the_columnar_engine_on_threads_stops_near_the_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    columnar_only(monkeypatch)
    src = _many()
    query = 'count_over_time({job="many"}[1m])'
    params = _instant(query)
    params.options = ExecOptions(parallelism=2)
    with pytest.raises(QueryError) as err:
        evaluate(src, query, params)
    assert str(err.value) == MESSAGE
    # Whichever thread counts the fourth series stops the query; the other thread may
    # have read one more block by then.
    assert LIMIT + 1 <= src.blocks_read <= LIMIT + 2


def test_the_columnar_engine_answers_within_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    columnar_only(monkeypatch)
    query = 'sum by (job) (count_over_time({job="many"}[1m]))'
    res = evaluate(_many(), query, _instant(query)).to_loki_json()
    assert [r["value"][1] for r in res["result"]] == [str(STREAMS)]
