"""What Loki answers with 400 (REFERENCE §9 and Prometheus matching rules) → QueryError."""

from __future__ import annotations

import pytest

from sluiceway.logql import MemorySource, QueryError, QueryParams
from sluiceway.logql._metric import evaluate_metric
from tests.logql_metric.helpers import TENANT, S, make_source, run
from tests.logql_metric.test_cases import METADATA, STREAMS


@pytest.fixture(scope="module")
def src() -> MemorySource:
    return make_source(STREAMS, METADATA)


REJECTED: list[tuple[str, str]] = [
    # a parser fails on some lines and nothing drops them
    ('count_over_time({app="a"} | json [1m])', "pipeline error: 'JSONParserErr'"),
    ('sum by (level) (count_over_time({app="a"} | json [1m]))', "JSONParserErr"),
    ('sum(count_over_time({app=~"a|c"} | logfmt | json [1m]))', "JSONParserErr"),
    ('rate({app="a"} | json | __error__!="" [1m])', "JSONParserErr"),
    # unwrap of a value with a unit but without bytes()/duration()
    ('sum_over_time({app="a"} | logfmt size | unwrap size [1m])',
     "'SampleExtractionErr'"),
    ('sum_over_time({app="a"} | logfmt dur | unwrap dur [1m])', "SampleExtractionErr"),
    ('sum_over_time({app="a"} | logfmt level | unwrap duration(level) [1m])',
     "SampleExtractionErr"),
    # grouping not allowed on these range aggregations, unary minus on an expression
    ('sum_over_time({app="a"} | logfmt latency | unwrap latency [1m]) by (app)',
     "grouping not allowed"),
    ('rate({app="a"}[1m]) by (app)', "grouping not allowed"),
    ('-count_over_time({app="a"}[1m])', "parse error"),
    ('count_over_time({app="a"} | logfmt | unwrap latency [1m])', "unwrap"),
    ('avg_over_time({app="a"}[1m])', "without unwrap"),
    # vector matching
    ('count_over_time({env="prod"}[1m]) + on(env) count_over_time({env="prod"}[1m])',
     "many-to-many matching not allowed"),
    ('count_over_time({env="prod"}[1m]) + on(env) '
     'sum by (env) (count_over_time({env="prod"}[1m]))', "multiple matches for labels"),
    ('sum by (env) (count_over_time({env="prod"}[1m])) + on(env) group_left '
     'count_over_time({env="prod"}[1m])', "many-to-many matching not allowed"),
    ('label_replace(count_over_time({env="prod"}[1m]), "app", "x", "app", ".*")',
     "same labelset"),
    ('label_replace(count_over_time({app="a"}[1m]), "1bad", "x", "app", ".*")',
     "invalid destination label name"),
    ('topk(0, count_over_time({app="a"}[1m]))', "invalid parameter"),
    ('{app="a"}', "not a metric query"),
]


@pytest.mark.parametrize(("query", "message"), REJECTED, ids=[q for q, _ in REJECTED])
def test_rejected(src: MemorySource, query: str, message: str) -> None:
    with pytest.raises(QueryError) as info:
        run(src, query, 60)
    assert message in str(info.value)


def test_pipeline_error_text_matches_loki(src: MemorySource) -> None:
    with pytest.raises(QueryError) as info:
        run(src, 'count_over_time({app="c"} | json [1m])', 60)
    text = str(info.value)
    assert text.startswith("pipeline error: 'JSONParserErr' for series: "
                           "'{__error__=\"JSONParserErr\", __error_details__=")
    assert 'app="c", env="dev"}\'.\n' in text
    assert text.endswith(
        "Use a label filter to intentionally skip this error. "
        "(e.g | __error__!=\"JSONParserErr\").\n"
        "To skip all potential errors you can match empty errors.(e.g __error__=\"\")\n"
        "The label filter can also be specified after unwrap. "
        "(e.g | unwrap latency | __error__=\"\" )\n")


ACCEPTED = [
    'sum by (__error__) (count_over_time({app="a"} | json [1m]))',
    'count_over_time({app="a"} | json | __error__="" [1m])',
    'count_over_time({app="a"} | json | drop __error__, __error_details__ [1m])',
    'sum_over_time({app="a"} | logfmt size | unwrap size | __error__="" [1m])',
    'sum_over_time({app="a"} | logfmt size | unwrap bytes(size) [1m])',
]


@pytest.mark.parametrize("query", ACCEPTED)
def test_accepted(src: MemorySource, query: str) -> None:
    assert run(src, query, 60)["resultType"] == "vector"


@pytest.mark.parametrize(("start", "end", "step", "message"), [
    (0, 10, 0, "zero or negative query resolution step"),
    (0, 10, -1, "zero or negative query resolution step"),
    (0, 20_000, 1, "exceeded maximum resolution of 11,000 points"),
    (10, 0, 1, "end timestamp must not be before start time"),
])
def test_bad_params(src: MemorySource, start: int, end: int, step: int, message: str) -> None:
    params = QueryParams([TENANT], start * S, end * S, step_ns=step * S)
    with pytest.raises(QueryError, match=message):
        evaluate_metric(src, "vector(1)", params)
