"""Deletion and per-stream retention, as Loki's compactor reads them: a delete request's
query compiled into what the store leaves out and removes (`QueryDeleter`), the delete
API's parameters with Loki's messages, and `retention_stream`'s precedence."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sluiceway.logql import LogExpr, LogPipeline, QueryError, parse, parse_selector
from sluiceway.model import EntryBlock, Matcher, parse_rfc3339, parse_time_param
from sluiceway.server._config import LimitsSection, StreamRetention
from sluiceway.server._params import ParamError
from sluiceway.store import DeleteRequest


def parse_delete_query(text: str) -> LogExpr:
    """A delete request's query: a log selector with optional stages (Loki takes any log
    pipeline); ParamError with Loki's text otherwise."""
    if not text:
        raise ParamError("query not set")
    try:
        expr = parse(text)
    except QueryError as exc:
        raise ParamError(f"invalid query expression: {exc}") from None
    if not isinstance(expr, LogExpr):
        raise ParamError("invalid query expression: a log selector expression was expected, "
                         "not a metric query")
    return expr


def parse_delete_time(text: str) -> int:
    """A delete request's time, as Loki's delete handler reads one: RFC3339, or Unix
    seconds of exactly 10 digits; in Unix ms. ValueError otherwise."""
    v = text.strip()
    if len(v) == 10 and v.isascii() and v.isdigit():
        return parse_time_param(v) // 1_000_000
    if "T" not in v:
        raise ValueError(f"not unix seconds nor RFC3339: {text!r}")
    return parse_rfc3339(v) // 1_000_000


def delete_times(start: str | None, end: str | None, now_ms: int) -> tuple[int, int]:
    """(start, end) in Unix ms with Loki's checks and messages (ParamError)."""
    if not start:
        raise ParamError("start time not set")
    try:
        lo = parse_delete_time(start)
    except ValueError:
        raise ParamError("invalid start time: require unix seconds or RFC3339 format") \
            from None
    try:
        hi = parse_delete_time(end) if end else now_ms
    except ValueError:
        raise ParamError("invalid end time: require unix seconds or RFC3339 format") \
            from None
    if hi > now_ms:
        raise ParamError("deletes in the future are not allowed")
    if lo > hi:
        raise ParamError("start time can't be greater than end time")
    return lo, hi


class QueryDeleter:
    """A request's query as the store applies it (`sluiceway.store.LineDeleter`): its
    selector picks streams, its stages pick lines (a line is deleted when the pipeline
    keeps it)."""

    def __init__(self, expr: LogExpr) -> None:
        self.matchers = expr.matchers
        self.pipeline = LogPipeline(expr.stages)
        self._every = not expr.stages

    @property
    def every_line(self) -> bool:
        return self._every

    def selects(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels.get(m.name, "")) for m in self.matchers)

    def lines(self, block: EntryBlock) -> npt.NDArray[np.bool_]:
        mask = np.zeros(len(block), dtype=np.bool_)
        idx = self.pipeline.select(block)
        if not self.pipeline.row_stages:
            mask[idx] = True
            return mask
        for i in idx.tolist():  # stages past the line filters: line by line
            one = np.array([i], dtype=np.intp)
            if next(iter(self.pipeline.process(block, one, False)), None) is not None:
                mask[i] = True
        return mask


def compile_delete(_tenant: str, req: DeleteRequest) -> QueryDeleter:
    """The store's `DeleteRequests.compile`."""
    return QueryDeleter(parse_delete_query(req.query))


StreamRule = tuple[list[Matcher], float, int]  # matchers, period (s), priority


def stream_rules(limits: LimitsSection) -> tuple[StreamRule, ...]:
    """A tenant's `retention_stream`, its selectors parsed (once per distinct list)."""
    return _parsed(limits.retention_stream)


@functools.lru_cache(maxsize=256)
def _parsed(rules: tuple[StreamRetention, ...]) -> tuple[StreamRule, ...]:
    return tuple((parse_selector(r.selector), r.period, r.priority) for r in rules)


def stream_retention(rules: Sequence[StreamRule], labels: dict[str, str],
                     default: float) -> float:
    """Seconds a stream keeps its data under Loki's `retention_stream` precedence: of the
    rules whose selector matches, the highest priority; among equal priorities the
    shortest period; `default` (the tenant's `retention_period`) when none matches."""
    best: tuple[float, int] | None = None
    for matchers, period, priority in rules:
        if not all(m.matches(labels.get(m.name, "")) for m in matchers):
            continue
        if best is None or priority > best[1] or (priority == best[1] and period < best[0]):
            best = (period, priority)
    return default if best is None else best[0]
