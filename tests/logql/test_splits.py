"""A query cut into time splits and merged (`sluiceway.logql._splits`) answers as the unsplit
engine does, through the byte codec a remote split travels in; the whole-query limits hold."""

from __future__ import annotations

import copy

import pytest

from sluiceway.logql import (
    ExecOptions,
    MemorySource,
    QueryError,
    QueryParams,
    SplitAnswer,
    decode_answer,
    decode_request,
    encode_answer,
    encode_error,
    encode_request,
    evaluate,
    evaluate_splits,
    local_runner,
    parse,
    query_splits,
    run_split,
)
from sluiceway.model import StreamBatch

S = 10**9
M = 60 * S
H = 3600 * S
T0 = 1_700_000_000 // 3600 * H  # on the hour grid


def source() -> MemorySource:
    """Four hours of lines in three streams, at distinct times (no ties)."""
    src = MemorySource(block_size=16)
    for app, off, every in (("api", 0, 7), ("web", 1, 11), ("db", 2, 13)):
        ts = list(range(T0 + off * S, T0 + 4 * H, every * S * 10))
        lines = [f'level={"error" if i % 5 == 0 else "info"} n={i} dur={i % 17}ms'
                 for i in range(len(ts))]
        src.push("t", [StreamBatch({"app": app, "env": "prod"}, ts, lines)])
    return src


LOG_QUERIES = ['{env="prod"}', '{env="prod"} |= "error"', '{app=~"api|db"} | logfmt | n > 100',
               '{env="prod"} | logfmt | line_format "{{.app}} {{.n}}"']
METRIC_QUERIES = ['count_over_time({env="prod"}[5m])', 'sum by (app) (rate({env="prod"}[10m]))',
                  'sum(count_over_time({env="prod"} |= "error"[1h]))',
                  'max_over_time({env="prod"} | logfmt | unwrap n [15m]) by (app)',
                  'topk(2, sum by (app) (bytes_over_time({env="prod"}[2m])))',
                  'sum(count_over_time({env="prod"}[5m])) / 2']


def params(start: int, end: int, **kw: object) -> QueryParams:
    return QueryParams(["t"], start, end, options=ExecOptions(split_ns=H), **kw)  # type: ignore[arg-type]


def via_codec(src: MemorySource):  # type: ignore[no-untyped-def]
    """Splits run as a remote node runs them: request and answer through bytes."""
    def run(query: str, splits: list[QueryParams]):  # type: ignore[no-untyped-def]
        for sub in splits:
            req = decode_request(encode_request(query, sub, None), ExecOptions())
            yield decode_answer(encode_answer(run_split(src, parse(req.query), req.params)))
    return run


def answer(result) -> object:  # type: ignore[no-untyped-def]
    return result.to_loki_json()["result"]


@pytest.mark.parametrize("direction", ["backward", "forward"])
@pytest.mark.parametrize("limit", [7, 100, 5000])
@pytest.mark.parametrize("query", LOG_QUERIES)
def test_log_query_splits_merge_to_the_unsplit_answer(query: str, limit: int,
                                                      direction: str) -> None:
    src = source()
    p = params(T0 + 13 * M, T0 + 3 * H + 29 * M, limit=limit, direction=direction)
    assert len(query_splits(parse(query), p) or []) == 4
    want = evaluate(src, query, copy.copy(p))
    got, warnings = evaluate_splits(query, copy.copy(p), via_codec(src))
    assert answer(got) == answer(want) and warnings == []
    assert got.stats.entries_returned == want.stats.entries_returned
    got_local, _ = evaluate_splits(query, copy.copy(p), local_runner(lambda _: src))
    assert answer(got_local) == answer(want)


@pytest.mark.parametrize("step", [None, 60 * S, 7 * M, 25 * M])
@pytest.mark.parametrize("query", METRIC_QUERIES)
def test_metric_range_query_splits_merge_to_the_unsplit_answer(query: str,
                                                               step: int | None) -> None:
    src = source()
    p = params(T0 + 13 * M + 5 * S, T0 + 3 * H + 29 * M, step_ns=step)
    splits = query_splits(parse(query), p)
    assert splits is not None and len(splits) >= 3
    want = evaluate(src, query, copy.copy(p))
    got, _ = evaluate_splits(query, copy.copy(p), via_codec(src))
    assert answer(got) == answer(want)


def test_instant_queries_and_interval_are_not_split() -> None:
    p = params(T0, T0 + 3 * H, instant=True)
    assert query_splits(parse('count_over_time({app="api"}[5h])'), p) is None
    p = params(T0, T0 + 3 * H, interval_ns=M)
    assert query_splits(parse('{app="api"}'), p) is None
    assert query_splits(parse('{app="api"}'), params(T0, T0 + H)) is None


def test_the_series_limit_holds_for_the_whole_query() -> None:
    """Each split alone holds 2 series; together 3: the merged answer is over the limit."""
    src = MemorySource()
    for app, hour in (("a", 0), ("b", 0), ("c", 1)):
        src.push("t", [StreamBatch({"app": app}, [T0 + hour * H + M], ["x"])])
    q = 'count_over_time({app=~".+"}[1m])'
    p = params(T0, T0 + 2 * H, max_series=2, step_ns=M)
    for sub in query_splits(parse(q), p) or []:
        evaluate(src, q, sub)  # no split is over the limit on its own
    with pytest.raises(QueryError, match=r"maximum of series \(2\) reached"):
        evaluate_splits(q, copy.copy(p), via_codec(src))


def test_bytes_read_are_summed_over_the_splits() -> None:
    def run(query: str, splits: list[QueryParams]):  # type: ignore[no-untyped-def]
        for sub in splits:
            ans = run_split(source(), parse(query), sub)
            yield SplitAnswer(ans.result, 600)

    p = params(T0, T0 + 3 * H, limit=5000)  # every split is needed
    p.options.max_bytes_read = 1000
    with pytest.raises(QueryError, match="the query would read too many bytes"):
        evaluate_splits('{env="prod"}', p, run)


def test_a_split_error_travels_as_the_querys_error() -> None:
    err = QueryError("parse error : some text")
    with pytest.raises(QueryError) as got:
        decode_answer(encode_error(err))
    assert str(got.value) == str(err)


def test_nan_and_infinities_travel() -> None:
    src = source()
    q = 'sum(count_over_time({env="prod"}[5m])) / 0 - sum(count_over_time({env="prod"}[5m])) / 0'
    p = params(T0, T0 + 2 * H, step_ns=10 * M)
    want = evaluate(src, q, copy.copy(p))
    got, _ = evaluate_splits(q, copy.copy(p), via_codec(src))
    assert answer(got) == answer(want)
