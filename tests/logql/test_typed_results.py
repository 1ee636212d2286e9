"""The engine answers typed results (streams, matrix, vector, scalar: times in ns, values
as floats); Loki's JSON is written from them only by `to_loki_json`, at the HTTP edge."""

from __future__ import annotations

import math

import pytest

from sluiceway.logql import (
    MatrixResult,
    MemorySource,
    QueryParams,
    ScalarResult,
    StreamsResult,
    VectorResult,
    evaluate,
)
from sluiceway.model import StreamBatch
from sluiceway.ruler import samples_of

S = 10**9
MS = 10**6


def _source() -> MemorySource:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "a"}, [10 * S + 1, 20 * S, 70 * S + 5 * MS],
                               ["x=0.1", "x=0.2", "x=nan"]),
                   StreamBatch({"app": "b"}, [15 * S], ["x=3"])])
    return src


def test_a_log_query_answers_streams_with_ns_times() -> None:
    res = evaluate(_source(), '{app=~"a|b"}', QueryParams(["t"], 0, 100 * S, direction="forward"))
    assert isinstance(res.data, StreamsResult) and res.result_type == "streams"
    assert [(s.labels, s.entries) for s in res.data.streams] == [
        ({"app": "a"}, [(10 * S + 1, "x=0.1", None), (20 * S, "x=0.2", None),
                        (70 * S + 5 * MS, "x=nan", None)]),
        ({"app": "b"}, [(15 * S, "x=3", None)])]
    assert res.to_loki_json()["result"][0]["values"][0] == [str(10 * S + 1), "x=0.1"]


def test_a_range_metric_query_answers_a_matrix_of_floats() -> None:
    res = evaluate(_source(), 'sum_over_time({app="a"} | logfmt | unwrap x [1m])',
                   QueryParams(["t"], 60 * S, 120 * S, step_ns=60 * S))
    assert isinstance(res.data, MatrixResult)
    [series] = res.data.series
    assert series.labels == {"app": "a"} and series.times == [60 * S, 120 * S]
    assert series.values[0] == 0.1 + 0.2 and math.isnan(series.values[1])
    # Written as Loki does: seconds, Go's shortest float text.
    assert res.to_loki_json()["result"][0]["values"] == [[60, "0.30000000000000004"],
                                                         [120, "NaN"]]


def test_an_instant_metric_query_answers_a_vector_and_rules_read_it_typed() -> None:
    res = evaluate(_source(), 'sum by (app) (count_over_time({app=~".+"}[1m]))',
                   QueryParams(["t"], 60 * S + 500 * MS, 60 * S + 500 * MS, instant=True))
    assert isinstance(res.data, VectorResult) and res.data.time == 60 * S + 500 * MS
    assert res.data.samples == [({"app": "a"}, 2.0), ({"app": "b"}, 1.0)]
    assert samples_of(res) == [({"app": "a"}, 2.0), ({"app": "b"}, 1.0)]
    assert res.to_loki_json()["result"][0] == {"metric": {"app": "a"}, "value": [60.5, "2"]}


@pytest.mark.parametrize(("instant", "kind"), [(True, ScalarResult), (False, MatrixResult)])
def test_a_scalar_query(instant: bool, kind: type) -> None:
    res = evaluate(_source(), "0.1 + 0.2", QueryParams(["t"], 60 * S, 60 * S if instant
                                                       else 120 * S, step_ns=60 * S,
                                                       instant=instant))
    assert isinstance(res.data, kind)
    if isinstance(res.data, ScalarResult):
        assert (res.data.time, res.data.value) == (60 * S, 0.1 + 0.2)
        assert res.to_loki_json()["result"] == [60_000, "0.30000000000000004"]
        assert samples_of(res) == [({}, 0.1 + 0.2)]
