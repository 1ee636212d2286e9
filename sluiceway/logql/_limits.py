"""What bounds one query's time and memory, with Loki's texts: the resolution rule
(11,000 points per series), the deadline (`query_timeout`), the series limit
(`max_query_series`) and the cap on a template's output (`max_line_size`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from sluiceway.logql._errors import QueryError

MAX_POINTS = 11_000
RESOLUTION_ERROR = ("exceeded maximum resolution of 11,000 points per time series. "
                    "Try increasing the value of the step parameter")
NON_POSITIVE_STEP = ("zero or negative query resolution step widths are not accepted. "
                     "Try a positive integer")
TIMEOUT_ERROR = ("request timed out, decrease the duration of the request or add more label "
                 "matchers (prefer exact match over regex match) to reduce the amount of data "
                 "processed")
# Loki's `max_line_size` default (256KB = 256,000 bytes): no template output is longer.
DEFAULT_MAX_LINE_SIZE = 256_000


def check_resolution(start: int, end: int, step_ns: int) -> None:
    """Loki's rule for every range request (`query_range`, `index/volume_range`): at most
    11,000 steps between start and end (times in ns)."""
    if step_ns <= 0:
        raise QueryError(NON_POSITIVE_STEP)
    if (end - start) // step_ns > MAX_POINTS:
        raise QueryError(RESOLUTION_ERROR)


def series_limit_error(limit: int) -> QueryError:
    return QueryError(f"maximum of series ({limit}) reached for a single query")


class QueryTimeout(Exception):
    """The query ran past its deadline (`query_timeout`): HTTP 504 with Loki's text."""

    def __init__(self) -> None:
        super().__init__(TIMEOUT_ERROR)


class Deadline:
    """The moment (by `clock`, seconds) a query must give up. The engine calls `check()`
    before each block, every `CHECK_EVERY` lines inside a block and per series when it
    builds results, so a query stops soon after its time is up whatever it is doing."""

    __slots__ = ("at", "clock")
    CHECK_EVERY = 64  # lines between two checks inside a block

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.at = clock() + timeout_s

    def check(self) -> None:
        if self.clock() > self.at:
            raise QueryTimeout
