"""Splits and their answers as bytes (orjson), to run a split on another process.

A request carries the split's `QueryParams` (the deadline as the seconds left, the
execution settings that change the answer; threads and caches are the answering node's)
and the lookback floor; an answer carries the typed result, its stats, the bytes read and
the warnings, or the error the split raised (the query's error: a `QueryError` text is
Loki's 400 body, a timeout is the query's 504). Floats that JSON cannot hold (NaN, ±Inf)
travel as Go's spellings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import orjson

from sluiceway.logql._engine import QueryParams
from sluiceway.logql._errors import QueryError
from sluiceway.logql._exec import ExecOptions, QueryCancelled
from sluiceway.logql._levels import LevelRules
from sluiceway.logql._limits import Deadline, QueryTimeout
from sluiceway.logql._result import (
    MatrixResult,
    MatrixSeries,
    QueryResult,
    QueryStats,
    ScalarResult,
    Stream,
    StreamsResult,
    VectorResult,
)
from sluiceway.logql._splits import SplitAnswer

_STATS = [f.name for f in fields(QueryStats)]


@dataclass(slots=True)
class SplitRequest:
    query: str
    params: QueryParams
    floor: int | None  # `max_query_lookback`: nothing before it is read (None: no floor)


def encode_request(query: str, params: QueryParams, floor: int | None) -> bytes:
    d = params.deadline
    o = params.options
    return orjson.dumps({
        "q": query, "tenants": params.tenants, "start": params.start, "end": params.end,
        "limit": params.limit, "direction": params.direction, "step": params.step_ns,
        "interval": params.interval_ns, "instant": params.instant,
        "categorize": params.categorize_labels, "max_series": params.max_series,
        "max_line_size": params.max_line_size,
        "timeout": None if d is None else max(0.0, d.at - d.clock()),
        "levels": None if params.levels is None else
        [list(params.levels.fields), params.levels.json_max_depth],
        "split_ns": o.split_ns, "max_bytes": o.max_bytes_read, "columnar": o.columnar,
        "floor": floor})


def decode_request(body: bytes, options: ExecOptions) -> SplitRequest:
    """The split; `options` is the answering node's (threads, cache), which gets the
    query's split interval, byte limit and engine choice."""
    r = orjson.loads(body)
    options.split_ns, options.max_bytes_read = int(r["split_ns"]), int(r["max_bytes"])
    options.columnar = bool(r["columnar"])
    lv = r["levels"]
    params = QueryParams(
        tenants=list(r["tenants"]), start=int(r["start"]), end=int(r["end"]),
        limit=int(r["limit"]), direction=str(r["direction"]), step_ns=r["step"],
        interval_ns=r["interval"], instant=bool(r["instant"]),
        categorize_labels=bool(r["categorize"]), max_series=int(r["max_series"]),
        max_line_size=int(r["max_line_size"]),
        deadline=None if r["timeout"] is None else Deadline(float(r["timeout"])),
        levels=None if lv is None else LevelRules(tuple(lv[0]), int(lv[1])),
        options=options)
    return SplitRequest(str(r["q"]), params, r["floor"])


def _f(v: float) -> float | str:
    if math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")


def encode_answer(ans: SplitAnswer) -> bytes:
    res = ans.result
    data = res.data
    body: Any
    if isinstance(data, StreamsResult):
        body = [[s.labels, s.entries] for s in data.streams]
    elif isinstance(data, MatrixResult):
        body = [[s.labels, s.times, [_f(v) for v in s.values]] for s in data.series]
    elif isinstance(data, VectorResult):
        body = [data.time, [[lb, _f(v)] for lb, v in data.samples]]
    else:
        body = [data.time, _f(data.value)]
    return orjson.dumps({
        "type": res.result_type, "data": body, "flags": list(res.encoding_flags),
        "stats": [getattr(res.stats, k) for k in _STATS], "bytes": ans.bytes_read,
        "warnings": ans.warnings})


def encode_error(exc: BaseException) -> bytes:
    """A split's failure, as the query's failure on the node that took it."""
    kind = ("timeout" if isinstance(exc, QueryTimeout) else
            "cancelled" if isinstance(exc, QueryCancelled) else
            "query" if isinstance(exc, QueryError) else "internal")
    return orjson.dumps({"error": str(exc) or type(exc).__name__, "kind": kind})


class SplitFailed(Exception):
    """A split failed on the node that ran it for a reason that is not the query's
    (a bug or a broken store there): the query answers 500."""


def decode_answer(body: bytes) -> SplitAnswer:
    """The answer, or the split's error raised as the query's."""
    r = orjson.loads(body)
    if "error" in r:
        kind, msg = r["kind"], r["error"]
        if kind == "timeout":
            raise QueryTimeout()
        if kind == "cancelled":
            raise QueryCancelled(msg)
        if kind == "query":
            raise QueryError(msg)
        raise SplitFailed(msg)
    stats = QueryStats(**dict(zip(_STATS, r["stats"], strict=True)))
    t, d = r["type"], r["data"]
    data: StreamsResult | MatrixResult | VectorResult | ScalarResult
    if t == "streams":
        data = StreamsResult([Stream(lb, [(int(e[0]), e[1], e[2]) for e in entries])
                              for lb, entries in d])
    elif t == "matrix":
        data = MatrixResult([MatrixSeries(lb, times, [float(v) for v in vals])
                             for lb, times, vals in d])
    elif t == "vector":
        data = VectorResult(int(d[0]), [(lb, float(v)) for lb, v in d[1]])
    else:
        data = ScalarResult(int(d[0]), float(d[1]))
    return SplitAnswer(QueryResult(data, stats, tuple(r["flags"])), int(r["bytes"]),
                       list(r["warnings"]))
