"""Engine behaviour: laziness under a limit, ordering, tenants, interval, time bounds, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sluiceway.logql import (
    MemorySource,
    QueryError,
    QueryParams,
    QueryResult,
    QueryStats,
    ScalarResult,
    evaluate,
    parse,
    register_metric_evaluator,
)
from sluiceway.logql._engine import _no_metrics
from sluiceway.model import EntryBlock, StreamBatch
from tests.logql.conftest import HOUR, TENANT, Dataset, load_dataset


def _source(n_series: int, per_series: int, block: int = 10) -> MemorySource:
    src = MemorySource(block_size=block)
    for s in range(n_series):
        b = StreamBatch({"app": "x", "s": str(s)})
        for i in range(per_series):
            b.append(1000 + i * 100 + s, f"line {i} of {s}" + (" needle" if i % 7 == 0 else ""))
        src.push("t", [b])
    return src


def _run(src: Any, q: str, **kw: Any) -> dict[str, Any]:
    params = QueryParams(["t"], kw.pop("start", 0), kw.pop("end", 10**12), **kw)
    return evaluate(src, q, params).to_loki_json()


def _values(data: dict[str, Any]) -> list[tuple[int, str]]:
    return [(int(v[0]), v[1]) for s in data["result"] for v in s["values"]]


def test_limit_stops_reading_blocks() -> None:
    src = _source(4, 1000, block=10)  # 100 blocks per series
    data = _run(src, '{app="x"}', limit=20, direction="backward")
    assert len(_values(data)) == 20
    assert src.blocks_read <= 4 * 2 + 1  # only the newest block or two of each series
    src.blocks_read = 0
    _run(src, '{app="x"} |= "needle"', limit=5, direction="forward")
    assert src.blocks_read <= 4 * 2


def test_merge_across_series_is_ordered() -> None:
    src = _source(3, 50)
    for direction in ("forward", "backward"):
        data = _run(src, '{app="x"}', limit=40, direction=direction)
        ts = sorted(t for t, _ in _values(data))
        everything = sorted((1000 + i * 100 + s for s in range(3) for i in range(50)),
                            reverse=direction == "backward")[:40]
        assert ts == sorted(everything)
        for s in data["result"]:
            got = [int(v[0]) for v in s["values"]]
            assert got == sorted(got, reverse=direction == "backward")


def test_streams_sorted_by_label_string() -> None:
    src = _source(12, 3)
    data = _run(src, '{app="x"}', limit=1000)
    assert [s["stream"]["s"] for s in data["result"]] == sorted(str(i) for i in range(12))


def test_time_range_is_half_open() -> None:
    src = _source(1, 10)  # ts 1000, 1100, ..., 1900
    data = _run(src, '{app="x"}', start=1100, end=1500, limit=100, direction="forward")
    assert [t for t, _ in _values(data)] == [1100, 1200, 1300, 1400]


def test_interval_keeps_one_entry_per_interval() -> None:
    src = _source(1, 20)
    fwd = [t for t, _ in _values(_run(src, '{app="x"}', interval_ns=350, direction="forward"))]
    assert fwd == [1000, 1400, 1800, 2200, 2600]
    bwd = [t for t, _ in _values(_run(src, '{app="x"}', interval_ns=350))]
    assert bwd == [2900, 2500, 2100, 1700, 1300]


def test_tenants_are_separate_and_combinable() -> None:
    src = MemorySource()
    src.push("a", [StreamBatch({"app": "x"}, [1, 2], ["a1", "a2"])])
    src.push("b", [StreamBatch({"app": "x"}, [3], ["b1"])])
    one = evaluate(src, '{app="x"}', QueryParams(["a"], 0, 10)).to_loki_json()
    assert [v[1] for v in one["result"][0]["values"]] == ["a2", "a1"]
    both = evaluate(src, '{app="x"}', QueryParams(["a", "b"], 0, 10)).to_loki_json()
    assert sorted(v[1] for s in both["result"] for v in s["values"]) == ["a1", "a2", "b1"]
    assert evaluate(src, '{app="x"}', QueryParams(["c"], 0, 10)).to_loki_json()["result"] == []


def test_duplicates_removed_by_source() -> None:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, [5, 5, 5], ["same", "same", "other"])])
    data = _run(src, '{app="x"}', direction="forward")
    assert _values(data) == [(5, "same"), (5, "other")]  # equal ts keep arrival order


def test_limit_zero_returns_nothing(dataset: Dataset) -> None:
    params = QueryParams([TENANT], dataset.base, dataset.base + HOUR, limit=0)
    assert evaluate(dataset.source, '{app="api"}', params).to_loki_json()["result"] == []


def test_categorized_parsed_and_metadata(dataset: Dataset) -> None:
    params = QueryParams([TENANT], dataset.base, dataset.base + HOUR, 200, "forward",
                         categorize_labels=True)
    data = evaluate(dataset.source, '{app="api", level="info"} | json | status=201',
                    params).to_loki_json()
    assert data["encodingFlags"] == ["categorize-labels"]
    assert [s["stream"] for s in data["result"]] == [{"app": "api", "env": "prod",
                                                      "level": "info"}]
    values = data["result"][0]["values"]
    assert all(v[2]["parsed"]["status"] == "201" for v in values)
    with_md = [v for v in values if "structuredMetadata" in v[2]]
    assert len(with_md) == 2 and all(list(v[2]) == ["structuredMetadata", "parsed"]
                                     for v in with_md)


def test_metadata_merged_into_labels_when_not_categorized(dataset: Dataset) -> None:
    params = QueryParams([TENANT], dataset.base, dataset.base + HOUR, 1000)
    data = evaluate(dataset.source, '{app="api"} | trace_id!=""', params).to_loki_json()
    assert len(data["result"]) == 4 and all("trace_id" in s["stream"] for s in data["result"])


def test_stats_are_real(dataset: Dataset) -> None:
    params = QueryParams([TENANT], dataset.base, dataset.base + HOUR, 1000)
    stats = evaluate(dataset.source, '{app="worker"} |= "retry"',
                     params).to_loki_json()["stats"]
    total = sum(len(line.encode()) for s, _, line, _ in dataset.entries if s["app"] == "worker")
    assert stats["summary"]["totalBytesProcessed"] == total
    assert stats["summary"]["totalLinesProcessed"] == 100
    assert stats["summary"]["totalPostFilterLines"] == 7
    assert stats["summary"]["totalEntriesReturned"] == 7
    assert stats["querier"]["store"]["chunk"]["decompressedLines"] == 100
    assert stats["index"]["totalStreams"] == 2


def test_instant_log_query_rejected(dataset: Dataset) -> None:
    with pytest.raises(QueryError, match="log queries are not supported as an instant"):
        evaluate(dataset.source, '{app="api"}', QueryParams([TENANT], 0, 1, instant=True))


def test_metric_evaluator_is_pluggable(dataset: Dataset) -> None:
    params = QueryParams([TENANT], dataset.base, dataset.base + HOUR, step_ns=60 * 10**9)
    previous = register_metric_evaluator(_no_metrics)
    try:
        with pytest.raises(QueryError, match="metric queries are not supported yet"):
            evaluate(dataset.source, 'sum(count_over_time({app="api"}[5m]))', params)

        def fake(source: Any, expr: Any, p: QueryParams, stats: QueryStats) -> QueryResult:
            return QueryResult(ScalarResult(p.end, 2.0))

        register_metric_evaluator(fake)
        data = evaluate(dataset.source, "1+1", params).to_loki_json()
        assert data["resultType"] == "scalar" and data["result"][1] == "2"
    finally:
        register_metric_evaluator(previous)


def test_metric_queries_reach_the_metric_engine(dataset: Dataset) -> None:
    params = QueryParams([TENANT], dataset.base, dataset.base + HOUR, step_ns=600 * 10**9)
    data = evaluate(dataset.source, 'sum by (app) (count_over_time({env="prod"}[10m]))',
                    params).to_loki_json()
    assert data["resultType"] == "matrix"
    assert {s["metric"]["app"] for s in data["result"]} == {"api", "worker"}
    assert data["stats"]["summary"]["totalLinesProcessed"] > 0


def test_accepts_parsed_expression_and_rejects_bad_direction(dataset: Dataset) -> None:
    params = QueryParams([TENANT], dataset.base, dataset.base + HOUR, 3, "forward")
    assert evaluate(dataset.source, parse('{app="api"}'), params).stats.entries_returned == 3
    with pytest.raises(QueryError):
        evaluate(dataset.source, '{app="api"}',
                 QueryParams([TENANT], dataset.base, dataset.base + HOUR, direction="up"))


def test_block_size_does_not_change_results(dataset: Dataset) -> None:
    other = load_dataset(block_size=3)
    for q in ('{env="prod"} |= "POST"', '{app="worker"} | logfmt | level!="info"'):
        for direction in ("forward", "backward"):
            p = QueryParams([TENANT], dataset.base, dataset.base + HOUR, 37, direction)
            assert (evaluate(dataset.source, q, p).to_loki_json()["result"]
                    == evaluate(other.source, q, p).to_loki_json()["result"])


class _WideBlocks:
    """A source whose blocks overrun [start, end): the engine still clips them."""

    def series(self, tenants: list[str], matchers: Any, start: int, end: int) -> list[Any]:
        from sluiceway.logql import SeriesRef

        return [SeriesRef("t", 1, {"app": "x"})]

    def blocks(self, ref: Any, start: int, end: int, direction: str, **_: Any) -> Any:
        ts = np.arange(0, 100, 10, dtype=np.int64)
        yield EntryBlock.from_lines({"app": "x"}, ts, [str(t).encode() for t in ts.tolist()])


def test_engine_clips_blocks_to_range() -> None:
    data = _run(_WideBlocks(), '{app="x"}', start=20, end=50, direction="forward")
    assert [t for t, _ in _values(data)] == [20, 30, 40]


def test_lines_with_invalid_utf8_do_not_crash() -> None:
    class Src(_WideBlocks):
        def blocks(self, ref: Any, start: int, end: int, direction: str, **_: Any) -> Any:
            yield EntryBlock.from_lines({"app": "x"}, np.array([1], dtype=np.int64),
                                        [b"bad \xff byte"])

    data = _run(Src(), '{app="x"} |= "bad"')
    assert _values(data) == [(1, "bad \ufffd byte")]


def test_unpack_restores_packed_entries() -> None:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, [1, 2, 3], [
        '{"_entry":"original line","pod":"p-1","n":5}', '{"plain":"json"}', "not json"])])
    data = _run(src, '{app="x"} | unpack', direction="forward")
    got = {(tuple(sorted(s["stream"].items())), v[1]) for s in data["result"]
           for v in s["values"]}
    assert (((("app", "x"), ("pod", "p-1"))), "original line") in got
    assert ((("app", "x"),), '{"plain":"json"}') in got
    errored = [s["stream"] for s in data["result"] if "__error__" in s["stream"]]
    assert errored and errored[0]["__error__"] == "JSONParserErr"


def test_unpack_takes_only_strings() -> None:
    """Loki's unpack skips every value that is not a string, floats written as `1.50`
    included (the reference read them back as their text, a str, and kept them); an
    `_entry` that is a number unpacks nothing."""
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, [1, 2], [
        '{"_entry":"line","n":1.50,"m":2.5,"s":"v"}', '{"_entry":1.50,"s":"w"}'])])
    data = _run(src, '{app="x"} | unpack', direction="forward")
    got = [(s["stream"], v[1]) for s in data["result"] for v in s["values"]]
    assert got == [({"app": "x", "s": "v"}, "line"),
                   ({"app": "x"}, '{"_entry":1.50,"s":"w"}')]


def test_json_nested_null_and_arrays() -> None:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, [1], [
        '{"a":{"b":{"c":1.5}},"n":null,"arr":[1,2],"t":true,"1st":"x","we ird":"y"}'])])
    data = _run(src, '{app="x"} | json')
    assert data["result"][0]["stream"] == {"app": "x", "a_b_c": "1.5", "t": "true",
                                           "_1st": "x", "we_ird": "y"}
    data = _run(src, '{app="x"} | json c="a.b.c", first="arr[0]", obj="a.b", none="nope"')
    assert data["result"][0]["stream"] == {"app": "x", "c": "1.5", "first": "1",
                                           "obj": '{"c":1.5}', "none": ""}


def test_decolorize_and_filters_after_it() -> None:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, [1, 2], ["\x1b[31mERROR\x1b[0m boom", "fine"])])
    data = _run(src, '{app="x"} | decolorize |= "ERROR boom"')
    assert _values(data) == [(1, "ERROR boom")]


def test_label_format_rules() -> None:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x", "env": "e"}, [1], ["line"])])
    data = _run(src, '{app="x"} | label_format e2=env, missing=nosuch, t="{{.app}}-{{.e2}}"')
    # renames happen in order; templates see the labels as they are at the first template
    assert data["result"][0]["stream"] == {"app": "x", "e2": "e", "t": "x-e"}
    from sluiceway.logql import ParseError

    with pytest.raises(ParseError, match="multiple label name 'a'"):
        parse('{app="x"} | label_format a=b, a=c')
    with pytest.raises(ParseError, match="__error__ cannot be formatted"):
        parse('{app="x"} | label_format __error__=b')


def test_series_without_recent_hits_are_not_scanned_to_the_end() -> None:
    src = MemorySource(block_size=10)
    busy = StreamBatch({"app": "x", "s": "busy"})
    quiet = StreamBatch({"app": "x", "s": "quiet"})
    for i in range(1000):
        busy.append(10_000 + i * 10, f"hit {i}")
        quiet.append(10_001 + i * 10, "hit old" if i < 5 else f"miss {i}")
    src.push("t", [busy, quiet])
    data = _run(src, '{app="x"} |= "hit"', limit=30)
    assert len(_values(data)) == 30 and {s["stream"]["s"] for s in data["result"]} == {"busy"}
    # 3 blocks of "busy" and a few of "quiet"; not the 100 blocks down to quiet's old hits
    assert src.blocks_read <= 8


def test_json_numbers_keep_their_text() -> None:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, [1], ['{"a":1.50,"b":1e3,"c":0.25,"d":7}'])])
    data = _run(src, '{app="x"} | json')
    assert data["result"][0]["stream"] == {"app": "x", "a": "1.50", "b": "1e3", "c": "0.25",
                                           "d": "7"}
    src.push("t", [StreamBatch({"app": "y"}, [1], ['{"o":{"p":2.50,"q":[1,"s"]}}'])])
    data = _run(src, '{app="y"} | json o')
    assert data["result"][0]["stream"]["o"] == '{"p":2.50,"q":[1,"s"]}'
