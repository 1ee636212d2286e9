"""Loki's HTTP parameter rules: timestamps, durations, limits, direction."""

from __future__ import annotations

import math
import time
from datetime import datetime

from sluiceway.model import parse_duration, quote


class ParamError(ValueError):
    """A bad request parameter: HTTP 400 with this message."""


# Unix nanoseconds as Loki holds them (int64): every time parameter, and every time
# derived from one, must fall in here or the request is a 400.
EARLIEST_NS, LATEST_NS = -(2**63), 2**63 - 1
_NS_SPAN = "between 1677-09-21T00:12:44Z and 2262-04-11T23:47:16Z"


def _out_of_range(name: str, value: str) -> ParamError:
    return ParamError(f"invalid {name} parameter {quote(value)}: out of range, a time must "
                      f"lie {_NS_SPAN}")


def parse_time(value: str | None, default_ns: int, name: str = "time") -> int:
    """Integer = ns (or s when at most 10 digits), float = s, or RFC3339 — as Loki reads them."""
    if value is None or value == "":
        return default_ns
    ns = _time_ns(value.strip())
    if ns is None:
        raise ParamError(f"invalid {name} parameter {quote(value)}: use Unix nanoseconds, "
                         "Unix seconds with a fraction, or RFC3339")
    if not EARLIEST_NS <= ns <= LATEST_NS:
        raise _out_of_range(name, value)
    return ns


def _time_ns(v: str) -> int | None:
    if "." in v:
        try:
            f = float(v)
        except ValueError:
            pass
        else:
            if math.isnan(f):
                return None
            if math.isinf(f):
                return LATEST_NS + 1 if f > 0 else EARLIEST_NS - 1
            frac, sec = math.modf(f)  # Python's order; Go's Modf gives (int, frac)
            return int(sec) * 1_000_000_000 + round(frac * 1000) * 1_000_000
    try:
        n = int(v)
        return n * 1_000_000_000 if len(v.lstrip("-")) <= 10 else n
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
    except (ValueError, OverflowError, OSError):  # a zone-less date near year 1 or 9999
        return None


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
    if max_limit and limit > max_limit:
        raise ParamError(f"max entries limit per query exceeded, limit > max_entries_limit "
                         f"({limit} > {max_limit})")
    return limit


def parse_direction(value: str | None) -> str:
    if value is None or value == "":
        return "backward"
    v = value.lower()
    if v not in ("forward", "backward"):
        raise ParamError(f"invalid direction {value!r}: use forward or backward")
    return v
