"""Loki's HTTP parameter rules: timestamps, durations, limits, direction."""

from __future__ import annotations

import math
import time
from datetime import datetime

from sluiceway.model import parse_duration


class ParamError(ValueError):
    """A bad request parameter: HTTP 400 with this message."""


def parse_time(value: str | None, default_ns: int, name: str = "time") -> int:
    """Integer = ns (or s when at most 10 digits), float = s, or RFC3339 — as Loki reads them."""
    if value is None or value == "":
        return default_ns
    v = value.strip()
    if "." in v:
        try:
            f = float(v)
            sec, frac = math.modf(f)
            return int(sec) * 1_000_000_000 + round(frac * 1000) * 1_000_000
        except ValueError:
            pass
    try:
        n = int(v)
        return n * 1_000_000_000 if len(v.lstrip("-")) <= 10 else n
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
    except ValueError:
        raise ParamError(f"invalid {name} parameter {value!r}: use Unix nanoseconds, Unix "
                         "seconds with a fraction, or RFC3339") from None


def parse_seconds_or_duration(value: str, name: str) -> float:
    try:
        secs = float(value)
    except ValueError:
        try:
            secs = parse_duration(value)
        except ValueError:
            raise ParamError(f"invalid {name} parameter {value!r}: cannot parse as a duration "
                             "or seconds") from None
    if not math.isfinite(secs):
        raise ParamError(f"invalid {name} parameter {value!r}")
    return secs


def time_range(params: dict[str, str], default_lookback_s: float) -> tuple[int, int]:
    now = time.time_ns()
    end = parse_time(params.get("end"), now, "end")
    since = params.get("since")
    default_start = end - int(default_lookback_s * 1e9)
    if since:
        default_start = end - int(parse_seconds_or_duration(since, "since") * 1e9)
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
