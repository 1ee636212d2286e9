"""Loki's HTTP parameter rules: timestamps, durations, limits, direction."""

from __future__ import annotations

import math
import time

from sluiceway.model import (
    EARLIEST_NS,
    LATEST_NS,
    format_go_duration,
    format_prom_duration,
    parse_duration,
    parse_time_param,
    quote,
)


class ParamError(ValueError):
    """A bad request parameter: HTTP 400 with this message."""


_NS_SPAN = "between 1677-09-21T00:12:44Z and 2262-04-11T23:47:16Z"


def _out_of_range(name: str, value: str) -> ParamError:
    return ParamError(f"invalid {name} parameter {quote(value)}: out of range, a time must "
                      f"lie {_NS_SPAN}")


def parse_time(value: str | None, default_ns: int, name: str = "time") -> int:
    """Integer = ns (or s when at most 10 digits), float = s, or RFC3339 with all its
    digits — as Loki reads them (`sluiceway.model.parse_time_param`)."""
    if value is None or value == "":
        return default_ns
    try:
        ns = parse_time_param(value)
    except ValueError:
        raise ParamError(f"invalid {name} parameter {quote(value)}: use Unix nanoseconds, "
                         "Unix seconds with a fraction, or RFC3339") from None
    if not EARLIEST_NS <= ns <= LATEST_NS:
        raise _out_of_range(name, value)
    return ns


def parse_duration_ns(value: str, name: str) -> int:
    """Float seconds or a duration (`1h30m`), as nanoseconds that fit int64 (Loki's
    parseSecondsOrDuration, with its texts)."""
    what = f"invalid {name} parameter: cannot parse {quote(value)} to a valid duration"
    try:
        secs = float(value)
    except ValueError:
        try:
            secs = parse_duration(value)
        except ValueError:
            raise ParamError(what) from None
    else:
        what += ". It overflows int64"
    ns = secs * 1e9
    if not math.isfinite(ns) or not EARLIEST_NS <= ns <= LATEST_NS:
        raise ParamError(what)
    return round(ns)


def parse_seconds_or_duration(value: str, name: str) -> float:
    """`parse_duration_ns` in seconds (`delay_for`, `min_age`)."""
    return parse_duration_ns(value, name) / 1e9


def parse_step(value: str) -> int:
    """A query step in ns (Loki's parsing texts); `logql.check_resolution` then applies
    Loki's rules on its size (positive, at most 11,000 points)."""
    return parse_duration_ns(value, "step")


def time_range(params: dict[str, str], default_lookback_s: float) -> tuple[int, int]:
    now = time.time_ns()
    end = parse_time(params.get("end"), now, "end")
    since = params.get("since")
    lookback = parse_duration_ns(since, "since") if since else int(default_lookback_s * 1e9)
    default_start = end - lookback
    if not params.get("start") and not EARLIEST_NS <= default_start <= LATEST_NS:
        raise ParamError(f"invalid since parameter {quote(since or '')}: the start time it "
                         f"gives is out of range, a time must lie {_NS_SPAN}")
    start = parse_time(params.get("start"), default_start, "start")
    if end < start:
        raise ParamError("end timestamp must not be before or equal to start time")
    return start, end


def parse_limit(value: str | None, default: int, max_limit: int) -> int:
    if value is None or value == "":
        return default
    try:
        limit = int(value)
    except ValueError:
        raise ParamError(f"invalid limit parameter {value!r}: must be an integer") from None
    if limit <= 0:
        raise ParamError("limit must be a positive value")
    if max_limit:
        check_entries_limit(limit, max_limit)
    return limit


def check_entries_limit(limit: int, max_limit: int) -> None:
    """Loki's `max_entries_limit_per_query` (log queries only; 0: none)."""
    if max_limit and limit > max_limit:
        raise ParamError(f"max entries limit per query exceeded, limit > "
                         f"max_entries_limit_per_query ({limit} > {max_limit})")


def check_query_length(start: int, end: int, max_length_s: float) -> None:
    """Loki's `max_query_length` (0: none), its length counted in whole milliseconds."""
    if not max_length_s:
        return
    length_ms = end // 1_000_000 - start // 1_000_000
    if length_ms * 1_000_000 > max_length_s * 1e9:
        raise ParamError(f"the query time range exceeds the limit (query length: "
                         f"{format_go_duration(length_ms * 1_000_000)}, limit: "
                         f"{format_prom_duration(round(max_length_s * 1e9))})")


def lookback_floor(lookback_s: float, now_ns: int | None = None) -> int | None:
    """The earliest time a read may see under `max_query_lookback` (0: no limit)."""
    if not lookback_s:
        return None
    return (time.time_ns() if now_ns is None else now_ns) - int(lookback_s * 1e9)


def within_lookback(start: int, end: int, floor: int | None) -> tuple[int, int] | None:
    """Loki's `max_query_lookback`: the range moved to start no earlier than `floor`, or
    None when it ends before that (an empty answer)."""
    if floor is None:
        return start, end
    if end < floor:
        return None
    return max(start, floor), end


def parse_direction(value: str | None) -> str:
    if value is None or value == "":
        return "backward"
    v = value.lower()
    if v not in ("forward", "backward"):
        raise ParamError(f"invalid direction {value!r}: use forward or backward")
    return v
