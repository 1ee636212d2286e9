"""What every fuzz test shares: its hypothesis settings, the answer checks, and
strategies for near-valid inputs (valid shapes with extreme numbers, odd text and small
byte-level damage), so that inputs get past the first 400 into the deep code."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

NOW = time.time_ns()
MAX_ANSWER = 4 << 20  # no answer to a small request may be larger than this


# `SLUICEWAY_FUZZ_SCALE=20 pytest tests/fuzz` runs 20 times the examples (a longer hunt);
# the default keeps the suite at about 15 s of CPU, as `make test` runs it.
SCALE = int(os.environ.get("SLUICEWAY_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    """Bounded and deadline-free: the suite runs in `make test` on a shared 2-core box."""
    return settings(max_examples=examples * SCALE, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


def check(r: httpx.Response) -> None:
    """No 5xx and a bounded answer. (An exception inside the app is raised by the
    transport instead, with its traceback, and fails the test all the same.)"""
    assert r.status_code < 500, (r.status_code, r.text[:2000])
    assert len(r.content) < MAX_ANSWER, len(r.content)
    if r.status_code >= 400:
        assert r.content.strip(), "an error answer must say what is wrong"


# --- text and numbers ---------------------------------------------------------------

ODD_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from([
    "", " ", "\x00", "\ud800", "\u2028", "é", "日本", "\U0001f600", "a" * 300, "\\", '"',
    "{", "}", "=", ",", "|", "\n", "\r\n", "${x}", "{{.x}}", "%s", "..", "/", "-", "_",
])
SAFE_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)

INT_EDGES = [0, 1, -1, 2**31, 2**32, 2**53, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
             -(2**63), -(2**63) - 1, 10**19, 10**30]
NS_TIMES = st.sampled_from([NOW, NOW - 10**9, NOW - 3600 * 10**9, NOW + 10**12,
                            NOW - 8 * 86400 * 10**9, *INT_EDGES]) | \
    st.integers(NOW - 7200 * 10**9, NOW + 60 * 10**9)

def weighted(plausible: st.SearchStrategy[str], odd: st.SearchStrategy[str],
             times: int = 2) -> st.SearchStrategy[str]:
    """Plausible values `times` as often as odd ones: requests must get past the
    parameter checks often enough to reach the store and the engine."""
    return st.one_of(*([plausible] * times), odd)


def one_in(n: int, draw: st.DrawFn) -> bool:
    """True once in `n` draws. (`integers(0, n - 1) == 0` would be true far more often:
    hypothesis favours small integers.)"""
    return bool(draw(st.sampled_from([False] * (n - 1) + [True])))


def _rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


PLAUSIBLE_NS = st.integers(NOW - 7200 * 10**9, NOW + 60 * 10**9)
TIME_TEXT = weighted(st.one_of(
    PLAUSIBLE_NS.map(str), PLAUSIBLE_NS.map(lambda ns: str(ns // 10**9)),
    PLAUSIBLE_NS.map(lambda ns: f"{ns / 1e9:.3f}"), PLAUSIBLE_NS.map(_rfc3339)),
    st.sampled_from([
        "", "0", "-1", "1", "1.5", "-1.5", "1e9", "1e400", "-1e400", "nan", "inf", "NaN.",
        "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2262-04-11T23:47:16Z",
        "1677-09-21T00:12:43Z", "2024-02-30T00:00:00Z", "2024-01-01T00:00:00+14:00",
        "2024-01-01", "2024-01-01T00:00:00", "0001-01-01", "now", "yesterday",
        "99999999999999999999999", "-99999999999999999999999", "1.797693134862316e+305",
        "١٢٣", "1_000", " 1 ", "0x10"]) | NS_TIMES.map(str) |
    st.floats(allow_nan=True, allow_infinity=True).map(repr), 5)

DURATION_TEXT = weighted(st.sampled_from(["15s", "30", "1m", "60", "5m", "1h", "0.5", "2m30s"]),
                         st.sampled_from([
    "", "0", "-1", "1", "0.001", "1ns", "1us", "1ms", "1s", "1d", "1w", "1y", "1h30m", "1.5h",
    "-5m", "10000000h", "106752d", "292y", "1e300", "-1e300", "1e-300", "nan", "inf", "-inf",
    "abc", "5 m", "5M", "９", "1e9", "3600"]) |
    st.floats(allow_nan=True, allow_infinity=True).map(repr) |
    st.integers(-(2**70), 2**70).map(str), 5)

LIMIT_TEXT = weighted(st.integers(1, 200).map(str), st.sampled_from(
    ["", "0", "-1", "5000", "5001", "1e3", "x", "99999999999999999999", "1.5", " 3"]) |
    st.integers(-5, 6000).map(str), 5)


# --- LogQL ----------------------------------------------------------------------------

SELECTORS = ['{app="api"}', '{app=~"api|web"}', '{env="prod", app!="db"}', '{fmt=~".+"}',
             '{app="nope"}', '{app=~".*"}', '{app=""}', "{}", '{app="api"', 'app="api"}']
STAGES = ['|= "req"', '!= "1"', '|~ "re(q|d)"', '!~ "x+"', '|> "<_> <_>"',
          '|= ip("10.0.0.0/8")', "| json", '| json u="user.name", t="tags[0]"', "| logfmt",
          "| logfmt --strict", '| regexp "(?P<n>\\\\d+)"', '| pattern "<a> <b> <_>"',
          "| unpack", "| decolorize", '| level="error"', "| status >= 300",
          "| took > 10ms", "| size > 5KB", '| __error__=""', '| line_format "{{.level}} {{.n}}"',
          '| label_format x="{{.level | upper}}"', "| label_format y=level",
          '| line_format "{{ __timestamp__ | date \\"2006\\" }}"', "| drop level",
          '| keep app, level', '| level="error" or status=500', '| n > 3 and n < 40',
          '| line_format "{{ repeat 1000 \\"x\\" }}"', '| line_format "{{"']
RANGES = ["1s", "1m", "5m", "1h", "1d", "106751d", "0s", "1ms"]
OFFSETS = ["", " offset 5m", " offset -1h", " offset 106751d", " offset -106751d"]
RANGE_OPS = ["count_over_time", "rate", "bytes_over_time", "bytes_rate", "absent_over_time"]
UNWRAP_OPS = ["sum_over_time", "avg_over_time", "max_over_time", "min_over_time",
              "first_over_time", "last_over_time", "stddev_over_time", "stdvar_over_time",
              "rate_counter", "quantile_over_time"]
UNWRAP = ["n", "took", "duration(took)", "bytes(size)", "status", "level"]
VECTOR_OPS = ["sum", "avg", "min", "max", "count", "stddev", "stdvar", "sort", "sort_desc"]
BINOPS = ["+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or",
          "unless", "> bool", "== bool", "/ on (app)", "* ignoring (env) group_left"]


@st.composite
def log_query(draw: st.DrawFn) -> str:
    stages = draw(st.lists(st.sampled_from(STAGES), max_size=4))
    return " ".join([draw(st.sampled_from(SELECTORS)), *stages])


@st.composite
def metric_query(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.integers(0, 5 if depth < 2 else 2))
    rng, off = draw(st.sampled_from(RANGES)), draw(st.sampled_from(OFFSETS))
    if kind == 0:
        return f"{draw(st.sampled_from(RANGE_OPS))}({draw(log_query())} [{rng}]{off})"
    if kind == 1:
        op = draw(st.sampled_from(UNWRAP_OPS))
        param = "0.5, " if op == "quantile_over_time" else ""
        return f"{op}({param}{draw(log_query())} | unwrap {draw(st.sampled_from(UNWRAP))} " \
               f"[{rng}]{off})"
    if kind == 2:
        return draw(st.sampled_from(["1", "-2.5", "vector(3)", "1e308", "0", "NaN", "Inf"]))
    if kind == 3:
        op = draw(st.sampled_from(VECTOR_OPS))
        grp = draw(st.sampled_from(["", " by (app)", " without (env)", " by (level, app)"]))
        return f"{op}{grp} ({draw(metric_query(depth + 1))})"
    if kind == 4:
        op = draw(st.sampled_from(["topk", "bottomk"]))
        k = draw(st.sampled_from(["1", "3", "0", "-1", "1e9", "2.5"]))
        return f"{op}({k}, {draw(metric_query(depth + 1))})"
    op = draw(st.sampled_from(BINOPS))
    return f"({draw(metric_query(depth + 1))}) {op} ({draw(metric_query(depth + 1))})"


def mutate_text(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Small edits: replace, cut, insert or delete at positions."""
    s = list(text)
    for kind, pos, ch in edits:
        if not s:
            break
        p = pos % len(s)
        if kind == 0:
            s[p] = ch
        elif kind == 1:
            del s[p:]
        elif kind == 2:
            s.insert(p, ch)
        else:
            del s[p]
    return "".join(s)


TEXT_EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 12),
                                st.sampled_from(list('(){}[]|"`=~!,+-*/^ 0159.emshdbyx\\#\n'))),
                      max_size=3)


@st.composite
def any_query(draw: st.DrawFn) -> str:
    base = draw(st.one_of(log_query(), metric_query(), st.sampled_from(
        ["+".join(["1"] * 300), "(" * 120 + "1" + ")" * 120, "sum(" * 40 + "vector(1)" + ")" * 40,
         '{app="api"} | ' + " and ".join(['level="error"'] * 200)]), ODD_TEXT))
    return mutate_text(base, draw(TEXT_EDITS))


def mutate_bytes(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, byte in edits:
        if not buf:
            break
        p = pos % len(buf)
        if kind == 0:
            buf[p] = byte
        elif kind == 1:
            del buf[p:]
        elif kind == 2:
            buf.insert(p, byte)
        else:
            del buf[p]
    return bytes(buf)


BYTE_EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16),
                                st.integers(0, 255)), max_size=4)
TENANTS = weighted(st.sampled_from([None, "fake", "t1", "(" * 150, "a" * 127 + "!"]),
                   st.sampled_from(["a|b", "", " ", "..", ".", "a/b", "x" * 151, "é",
                                    "a\x00b"]), 5)
