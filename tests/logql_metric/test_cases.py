"""Table-driven metric queries over a small data set; every expectation is derived by hand.

Data (times in seconds from the epoch):
  {app="a", env="prod"}: 10 20 30 40 50, logfmt lines with level/latency/dur/size
  {app="b", env="prod"}: 15 45, latency 10 and 30
  {app="c", env="dev"}:  5 "hello"
  {app="d"}:             counter c = 1 3 6 2 at 10 20 30 40 (a reset at 40)
  {app="e"}:             "x" at 10 (metadata trace_id="t1"), "y" at 20
  {app="f"}:             "é" at 10 (2 bytes)
Instant queries run at t=60 unless the case says otherwise, so `[1m]` = (0, 60].
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from sluiceway.logql import MemorySource
from sluiceway.model import StreamBatch
from tests.logql_metric.helpers import S, make_source, run

A = '{app="a", env="prod"}'
B = '{app="b", env="prod"}'
C = '{app="c", env="dev"}'
D = '{app="d"}'
E = '{app="e"}'
F = '{app="f"}'

STREAMS = {
    A: [(10, "level=info latency=100 dur=1s size=1KB"),
        (20, "level=error latency=300 dur=500ms size=2KB"),
        (30, "level=info latency=200 dur=2s size=512B"),
        (40, "level=info latency=400 dur=1.5s size=1KiB"),
        (50, "level=error latency=50 dur=250ms size=3KB")],
    B: [(15, "level=info latency=10"), (45, "level=info latency=30")],
    C: [(5, "hello")],
    D: [(10, "c=1"), (20, "c=3"), (30, "c=6"), (40, "c=2")],
    E: [(10, "x"), (20, "y")],
    F: [(10, "é")],
}
METADATA = {(E, 10): {"trace_id": "t1"}}

ALL = '{app=~".+"}'
PROD = '{env="prod"}'
ENVS = '{env=~".+"}'
LAT = '{app="a"} | logfmt latency | unwrap latency'


@pytest.fixture(scope="module")
def src() -> MemorySource:
    return make_source(STREAMS, METADATA)


# (query, expected {labels: value} in result order) — instant at t=60
INSTANT: list[tuple[str, dict[str, float]]] = [
    # log range aggregations
    (f"count_over_time({PROD}[1m])", {A: 5, B: 2}),
    ('count_over_time({app="a"}[1m])', {A: 5}),
    ('rate({app="a"}[1m])', {A: 5 / 60}),
    ('bytes_over_time({app="c"}[1m])', {C: 5}),
    ('bytes_rate({app="c"}[1m])', {C: 5 / 60}),
    ('bytes_over_time({app="f"}[1m])', {F: 2}),
    ('bytes_over_time({app="c"} | line_format "hi" [1m])', {C: 2}),
    ('count_over_time({app="a"} |= "error" [1m])', {A: 2}),
    ('count_over_time({app="a"} != "error" [1m])', {A: 3}),
    ('bytes_over_time({app="a"} |~ "latency=(50|300) " [1m])',
     {A: len("level=error latency=300 dur=500ms size=2KB")
      + len("level=error latency=50 dur=250ms size=3KB")}),
    ('absent_over_time({app="zzz"}[1m])', {'{app="zzz"}': 1}),
    ('absent_over_time({app="a"}[1m])', {}),
    ('absent_over_time({app=~"z.*", env="x"}[1m])', {'{env="x"}': 1}),
    ('count_over_time({app="e"}[1m])', {E: 1, '{app="e", trace_id="t1"}': 1}),
    ('count_over_time({app="e"} | trace_id="t1" [1m])', {'{app="e", trace_id="t1"}': 1}),
    ('count_over_time({app="a"}[1m] offset 30s)', {A: 3}),  # (−30, 30]: 10, 20, 30
    ('count_over_time({app="a"}[20s] offset 25s)', {A: 2}),  # (15, 35]: 20, 30
    # vector aggregations
    (f"sum(count_over_time({PROD}[1m]))", {"{}": 7}),
    (f"sum by (app) (count_over_time({ENVS}[1m]))",
     {'{app="a"}': 5, '{app="b"}': 2, '{app="c"}': 1}),
    (f"sum(count_over_time({ENVS}[1m])) by (env)", {'{env="dev"}': 1, '{env="prod"}': 7}),
    (f"sum without (app) (count_over_time({ENVS}[1m]))", {'{env="dev"}': 1, '{env="prod"}': 7}),
    (f"count(count_over_time({ENVS}[1m]))", {"{}": 3}),
    (f"avg(count_over_time({PROD}[1m]))", {"{}": 3.5}),
    (f"avg by (env) (count_over_time({ENVS}[1m]))", {'{env="dev"}': 1, '{env="prod"}': 3.5}),
    (f"max(count_over_time({PROD}[1m]))", {"{}": 5}),
    (f"min(count_over_time({PROD}[1m]))", {"{}": 2}),
    (f"stddev(count_over_time({PROD}[1m]))", {"{}": 1.5}),
    (f"stdvar(count_over_time({PROD}[1m]))", {"{}": 2.25}),
    (f"topk(1, count_over_time({ENVS}[1m]))", {A: 5}),
    (f"bottomk(2, count_over_time({ENVS}[1m]))", {B: 2, C: 1}),
    (f"topk by (env) (1, count_over_time({ENVS}[1m]))", {A: 5, C: 1}),
    (f"sort(count_over_time({ENVS}[1m]))", {C: 1, B: 2, A: 5}),
    (f"sort_desc(count_over_time({ENVS}[1m]))", {A: 5, B: 2, C: 1}),
    (f"sum by (app) (rate({PROD}[1m]))", {'{app="a"}': 5 / 60, '{app="b"}': 2 / 60}),
    # parsers and label filters before the range
    ('sum by (level) (count_over_time({app="a"} | logfmt [1m]))',
     {'{level="error"}': 2, '{level="info"}': 3}),
    ('count(count_over_time({app="a"} | logfmt | level="error" [1m]))', {"{}": 2}),
    ('sum(count_over_time({app="a"} | logfmt | latency > 150 [1m]))', {"{}": 3}),
    ('sum by (__error__) (count_over_time({app="a"} | json [1m]))',
     {'{__error__="JSONParserErr"}': 5}),
    ('sum(count_over_time({app="a"} | json | __error__="" [1m]))', {}),
    # an empty extracted value is no label at all in series labels
    ('count_over_time({app="c"} | regexp "(?P<x>z*)hello" [1m])', {C: 1}),
    # Loki bugs not copied (REFERENCE §9): the metric path sees the formatted line and
    # filters on the new label value
    ('sum by (x) (count_over_time({app="c"} | line_format "bye" '
     '| label_format x="{{__line__}}" [1m]))', {'{x="bye"}': 1}),
    ('sum(count_over_time({app="a"} | logfmt | label_format level="{{ToUpper .level}}" '
     '| level="ERROR" [1m]))', {"{}": 2}),
    # unwrapped range aggregations
    (f"sum_over_time({LAT} [1m])", {A: 1050}),
    (f"avg_over_time({LAT} [1m])", {A: 210}),
    (f"max_over_time({LAT} [1m])", {A: 400}),
    (f"min_over_time({LAT} [1m])", {A: 50}),
    (f"first_over_time({LAT} [1m])", {A: 100}),
    (f"last_over_time({LAT} [1m])", {A: 50}),
    (f"stdvar_over_time({LAT} [1m])", {A: 16400}),
    (f"stddev_over_time({LAT} [1m])", {A: math.sqrt(16400)}),
    (f"quantile_over_time(0.5, {LAT} [1m])", {A: 200}),
    (f"quantile_over_time(0.9, {LAT} [1m])", {A: 300 * 0.4 + 400 * 0.6}),
    (f"rate({LAT} [1m])", {A: 1050 / 60}),
    (f"sum(rate({LAT} [1m]))", {"{}": 1050 / 60}),
    ('sum_over_time({app="a"} | logfmt dur | unwrap duration(dur) [1m])', {A: 5.25}),
    ('sum_over_time({app="a"} | logfmt dur | unwrap duration_seconds(dur) [1m])', {A: 5.25}),
    ('sum_over_time({app="a"} | logfmt size | unwrap bytes(size) [1m])', {A: 7536}),
    ('sum_over_time({app="a"} | logfmt size | unwrap size | __error__="" [1m])', {}),
    ('max_over_time({env="prod"} | logfmt latency | unwrap latency [1m]) by (env)',
     {'{env="prod"}': 400}),
    ('min_over_time({env="prod"} | logfmt latency | unwrap latency [1m]) by (app)',
     {'{app="a"}': 50, '{app="b"}': 10}),
    ('avg_over_time({env="prod"} | logfmt latency | unwrap latency [1m]) by (env)',
     {'{env="prod"}': 1090 / 7}),
    ('max by (env) (max_over_time({env="prod"} | logfmt latency | unwrap latency [1m]))',
     {'{env="prod"}': 400}),
    ('sum_over_time({app="a"} | logfmt latency | latency > 150 | unwrap latency [1m])',
     {'{app="a", env="prod"}': 900}),
    # a filter after unwrap still sees the unwrapped label (dropped only from the series)
    ('sum_over_time({app="a"} | logfmt latency | unwrap latency | latency > 150 [1m])',
     {A: 900}),
    # (20, 60]: 6 @30, 2 @40; the reset adds 6 → rise 2; start gap 10 s < 1.1 × 10 s
    # extrapolates fully, end gap 20 s only by half a gap (5 s): 2 × 25/10 / 40
    ('rate_counter({app="d"} | logfmt | unwrap c [40s])', {D: 0.125}),
    # binary operators with scalars
    ('count_over_time({app="a"}[1m]) * 2', {A: 10}),
    ('count_over_time({app="a"}[1m]) + 1', {A: 6}),
    ('count_over_time({app="a"}[1m]) - 1', {A: 4}),
    ('count_over_time({app="a"}[1m]) / 2', {A: 2.5}),
    ('count_over_time({app="a"}[1m]) % 3', {A: 2}),
    ('count_over_time({app="a"}[1m]) ^ 2', {A: 25}),
    ('10 - count_over_time({app="a"}[1m])', {A: 5}),
    ('2 ^ count_over_time({app="a"}[1m])', {A: 32}),
    (f"count_over_time({PROD}[1m]) > 3", {A: 5}),
    (f"count_over_time({PROD}[1m]) >= 2", {A: 5, B: 2}),
    (f"count_over_time({PROD}[1m]) == 2", {B: 2}),
    (f"count_over_time({PROD}[1m]) != 2", {A: 5}),
    (f"count_over_time({PROD}[1m]) < 3", {B: 2}),
    (f"count_over_time({PROD}[1m]) <= 5", {A: 5, B: 2}),
    (f"count_over_time({PROD}[1m]) > 10", {}),
    (f"count_over_time({PROD}[1m]) > bool 3", {A: 1, B: 0}),
    (f"3 < count_over_time({PROD}[1m])", {A: 5}),
    (f"3 < bool count_over_time({PROD}[1m])", {A: 1, B: 0}),
    # vector / vector
    (f"count_over_time({PROD}[1m]) / count_over_time({PROD}[1m])", {A: 1, B: 1}),
    (f"sum by (app) (count_over_time({PROD}[1m])) / on(app) "
     f"sum by (app, env) (count_over_time({PROD}[1m]))", {'{app="a"}': 1, '{app="b"}': 1}),
    (f"count_over_time({PROD}[1m]) / ignoring(app) group_left "
     f"sum by (env) (count_over_time({PROD}[1m]))", {A: 5 / 7, B: 2 / 7}),
    (f"sum by (env) (count_over_time({PROD}[1m])) - ignoring(app) group_right "
     f"count_over_time({PROD}[1m])", {A: 2, B: 5}),
    (f"sum by (env) (count_over_time({ENVS}[1m])) * on(env) group_left(app) "
     f"count_over_time({{app=\"c\"}}[1m])", {'{app="c", env="dev"}': 1}),
    (f"count_over_time({PROD}[1m]) > on(env) group_left sum by (env) "
     f"(count_over_time({{app=\"b\"}}[1m]))", {A: 5}),
    (f"count_over_time({PROD}[1m]) >= bool count_over_time({PROD}[1m])", {A: 1, B: 1}),
    (f"count_over_time({ENVS}[1m]) and count_over_time({PROD}[1m])", {A: 5, B: 2}),
    (f"count_over_time({ENVS}[1m]) unless count_over_time({PROD}[1m])", {C: 1}),
    ('count_over_time({app="a"}[1m]) or count_over_time({app="b"}[1m])', {A: 5, B: 2}),
    (f"count_over_time({ENVS}[1m]) and on(env) count_over_time({{app=\"b\"}}[1m])",
     {A: 5, B: 2}),
    (f"count_over_time({ENVS}[1m]) unless ignoring(app) count_over_time({{app=\"b\"}}[1m])",
     {C: 1}),
    (f"sum(count_over_time({PROD}[1m])) / sum(count_over_time({ENVS}[1m]))", {"{}": 7 / 8}),
    # literals, vector()
    ("vector(5)", {"{}": 5}),
    ("vector(1) + vector(2)", {"{}": 3}),
    ("vector(1) + 1", {"{}": 2}),
    ("vector(2) > 1", {"{}": 2}),
    ("-1 + vector(1)", {"{}": 0}),
    ("vector(1) and vector(1)", {"{}": 1}),
    # label_replace
    ('label_replace(count_over_time({app="a"}[1m]), "svc", "$1-x", "app", "(.*)")',
     {'{app="a", env="prod", svc="a-x"}': 5}),
    ('label_replace(count_over_time({app="a"}[1m]), "svc", "${1}y", "app", "(a)")',
     {'{app="a", env="prod", svc="ay"}': 5}),
    ('label_replace(count_over_time({app="a"}[1m]), "svc", "$1", "app", "z(.*)")', {A: 5}),
    ('label_replace(count_over_time({app="a"}[1m]), "app", "", "app", ".*")',
     {'{env="prod"}': 5}),
    (f'sum by (svc) (label_replace(count_over_time({PROD}[1m]), "svc", "s", "nope", ""))',
     {'{svc="s"}': 7}),
]

SCALARS: list[tuple[str, float]] = [
    ("1 + 1", 2), ("2 * 3 - 1", 5), ("2 ^ 3 ^ 2", 512), ("7 % 4", 3), ("1 > 2", 0),
    ("2 > bool 1", 1), ("1 / 0", math.inf), ("(1 + 2) * 3", 9), ("-2 * 3", -6),
]


def _same(got: float, want: float) -> bool:
    if math.isinf(want):
        return got == want
    return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)


def _labels(metric: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


def _vector(data: dict[str, Any]) -> list[tuple[str, float]]:
    assert data["resultType"] == "vector"
    return [(_labels(r["metric"]), float(r["value"][1])) for r in data["result"]]


@pytest.mark.parametrize(("query", "want"), INSTANT, ids=[q for q, _ in INSTANT])
def test_instant(src: MemorySource, query: str, want: dict[str, float]) -> None:
    got = _vector(run(src, query, 60))
    assert [k for k, _ in got] == list(want) if query.startswith("sort") else \
        sorted(k for k, _ in got) == sorted(want)
    for k, v in got:
        assert _same(v, want[k]), (k, v, want[k])


@pytest.mark.parametrize(("query", "want"), SCALARS)
def test_scalar(src: MemorySource, query: str, want: float) -> None:
    data = run(src, query, 60)
    assert data["resultType"] == "scalar"
    assert data["result"][0] == 60_000  # Loki's scalar time is in ms
    assert _same(float(data["result"][1]), want)


def test_instant_window_is_left_open(src: MemorySource) -> None:
    # (10, 30]: the entry at 10 is out, the one at 30 is in
    assert _vector(run(src, 'count_over_time({app="a"}[20s])', 30)) == [(A, 2)]
    assert _vector(run(src, 'count_over_time({app="a"}[20s])', 10)) == [(A, 1)]
    assert _vector(run(src, 'count_over_time({app="a"}[10s])', 29.999)) == [(A, 1)]


def test_rate_counter_extrapolates_to_zero(src: MemorySource) -> None:
    # (0, 40]: 1 3 6 2, rise 2 - 1 + 6 (reset) = 7 over 30 s; the counter would hit zero
    # 30 × 1/7 s before the first sample (< 10 s gap): 7 × (30 + 30/7) / 30 / 40 = 0.2
    got = _vector(run(src, 'rate_counter({app="d"} | logfmt | unwrap c [40s])', 40))
    assert got[0][0] == D and _same(got[0][1], 0.2)


def test_multi_tenant_merges_series() -> None:
    src = make_source({A: STREAMS[A]})
    src.push("t2", [StreamBatch({"app": "a", "env": "prod"}, [11 * S, 21 * S], ["x", "y"])])
    assert _vector(run(src, 'count_over_time({app="a"}[1m])', 60, tenants=("t2",))) == [(A, 2)]
    assert _vector(run(src, 'count_over_time({app="a"}[1m])', 60,
                       tenants=("fake", "t2"))) == [(A, 7)]
