"""Timestamp parsers: RFC3339, unix epochs and Go reference-time layouts (the agent's
`timestamp` stage and LogQL's `toDate`), and `parse_time_param`, the one reader of time
parameters for the server's API and the query CLI."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Literal

Parser = Callable[[str], int]  # text -> Unix ns; raises ValueError

_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?\s*"
    r"([Zz]|[+-]\d\d:?\d\d)?$")
_FRAC_RE = re.compile(r"(\d\d:\d\d:\d\d)[.,](\d{1,9})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Go's reference time tokens -> strptime directives; longest first so "2006" wins over "2".
_GO_TOKENS = [
    ("January", "%B"), ("Monday", "%A"), ("Z07:00", "%z"), ("-07:00", "%z"), ("Z0700", "%z"),
    ("-0700", "%z"), ("2006", "%Y"), ("Jan", "%b"), ("Mon", "%a"), ("MST", "%Z"),
    ("_2", "%d"), ("01", "%m"), ("02", "%d"), ("03", "%I"), ("04", "%M"), ("05", "%S"),
    ("06", "%y"), ("15", "%H"), ("PM", "%p"), ("1", "%m"), ("2", "%d"), ("3", "%I"),
    ("4", "%M"), ("5", "%S"),
]
_GO_TOKEN_RE = re.compile("|".join(re.escape(t) for t, _ in _GO_TOKENS))
_GO_MAP = dict(_GO_TOKENS)
_GO_FRAC_RE = re.compile(r"[.,](0+|9+)")
NAMED_LAYOUTS = {
    "ANSIC": "Mon Jan _2 15:04:05 2006",
    "UnixDate": "Mon Jan _2 15:04:05 MST 2006",
    "RFC822": "02 Jan 06 15:04 MST",
    "RFC822Z": "02 Jan 06 15:04 -0700",
    "RFC850": "Monday, 02-Jan-06 15:04:05 MST",
    "RFC1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "RFC1123Z": "Mon, 02 Jan 2006 15:04:05 -0700",
    "Stamp": "Jan _2 15:04:05",
    "StampMilli": "Jan _2 15:04:05.000",
    "StampMicro": "Jan _2 15:04:05.000000",
    "StampNano": "Jan _2 15:04:05.000000000",
    "DateTime": "2006-01-02 15:04:05",
}


def parse_rfc3339(text: str) -> int:
    m = _RFC3339_RE.match(text.strip())
    if m is None:
        raise ValueError(f"not RFC3339: {text!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    secs = int(datetime(int(y), int(mo), int(d), int(h), int(mi), int(s),
                        tzinfo=UTC).timestamp())
    if tz and tz not in "Zz":
        off = (int(tz[1:3]) * 60 + int(tz[-2:])) * 60
        secs -= off if tz[0] == "+" else -off
    ns = int((frac or "0").ljust(9, "0"))
    return secs * 1_000_000_000 + ns


def _unix(scale: int) -> Parser:
    def parse(text: str) -> int:
        t = text.strip()
        if "." in t and scale == 1_000_000_000:
            whole, _, frac = t.partition(".")
            return int(whole) * scale + int(frac[:9].ljust(9, "0"))
        return int(float(t) * scale) if "." in t else int(t) * scale
    return parse


def go_layout_parser(layout: str, zone: tzinfo | None = None) -> Parser:
    """A parser for a Go reference-time layout such as `2006-01-02 15:04:05.000 -0700`;
    a time without a zone is read in `zone` (default UTC)."""
    has_frac = _GO_FRAC_RE.search(layout) is not None
    base = _GO_FRAC_RE.sub("", layout) if has_frac else layout
    fmt = _GO_TOKEN_RE.sub(lambda m: _GO_MAP[m.group(0)], base.replace("%", "%%"))
    squeeze = "_2" in layout  # `Jan  2`: space-padded day, so compare with spaces collapsed
    if squeeze:
        fmt = " ".join(fmt.split())
    has_year = "%Y" in fmt or "%y" in fmt

    def parse(text: str) -> int:
        frac_ns = 0
        if has_frac:
            m = _FRAC_RE.search(text)
            if m is not None:
                frac_ns = int(m.group(2).ljust(9, "0"))
                text = text[: m.start(2) - 1] + text[m.end(2):]
        dt = datetime.strptime(" ".join(text.split()) if squeeze else text.strip(), fmt)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=zone or UTC)
        if not has_year:
            # Syslog-style stamps omit the year: this year, or last year just after New Year.
            now = datetime.now(UTC)
            dt = dt.replace(year=now.year)
            if (dt - now).days >= 1:
                dt = dt.replace(year=now.year - 1)
        delta = dt - _EPOCH
        return ((delta.days * 86400 + delta.seconds) * 1_000_000_000
                + delta.microseconds * 1000 + frac_ns)
    return parse


def make_parser(fmt: str, zone: tzinfo | None = None) -> Parser:
    """`RFC3339`, `RFC3339Nano`, `Unix`, `UnixMs`, `UnixUs`, `UnixNs`, a Go named layout
    (`ANSIC`, `RFC1123Z`, `Stamp`, ...) or any Go reference-time layout (read in `zone`
    when it has no zone of its own)."""
    if fmt in ("RFC3339", "RFC3339Nano", "ISO8601"):
        return parse_rfc3339
    scales = {"Unix": 1_000_000_000, "UnixMs": 1_000_000, "UnixUs": 1_000, "UnixNs": 1}
    if fmt in scales:
        return _unix(scales[fmt])
    layout = NAMED_LAYOUTS.get(fmt, fmt)
    if not _GO_TOKEN_RE.search(layout):
        raise ValueError(f"timestamp format {fmt!r} is neither a known name nor a Go layout")
    return go_layout_parser(layout, zone)


def now_ns() -> int:
    return time.time_ns()


def rfc3339_micros(ns: int) -> str:
    """Unix ns as RFC3339 UTC with microseconds (`2024-05-01T12:00:00.000000Z`), the form
    of the times in Loki's push rejection texts."""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Unix nanoseconds as Loki holds them (int64).
EARLIEST_NS, LATEST_NS = -(2**63), 2**63 - 1
EpochDigits = Literal["loki", "auto"]


def parse_time_param(text: str, epoch: EpochDigits = "loki") -> int:
    """A time as Loki's HTTP API reads one, in Unix ns (the server's `start`/`end`/`time`
    and `sluiceway query --from/--to` share this):

    - with a `.`: Unix seconds as a float, the fraction rounded to the millisecond, as
      Loki does;
    - an integer: `epoch="loki"` reads up to 10 digits as seconds and longer ones as
      nanoseconds (Loki's rule); `epoch="auto"` (the CLI) reads it by its number of digits:
      up to 10 seconds, 13 milliseconds, 16 microseconds, more nanoseconds;
    - else RFC3339, every digit of the fraction kept (nanoseconds); no zone means UTC.

    Raises ValueError for text that is none of these. The result may lie outside int64
    (`EARLIEST_NS`..`LATEST_NS`); callers check that with their own message."""
    v = text.strip()
    if "." in v:
        try:
            f = float(v)
        except ValueError:
            pass
        else:
            if math.isnan(f):
                raise ValueError(f"not a time: {text!r}")
            if math.isinf(f):
                return LATEST_NS + 1 if f > 0 else EARLIEST_NS - 1
            frac, sec = math.modf(f)
            return int(sec) * 1_000_000_000 + round(frac * 1000) * 1_000_000
    digits = v[1:] if v[:1] in "+-" else v
    if digits.isascii() and digits.isdigit():
        n = int(v)
        if epoch == "loki":
            return n * 1_000_000_000 if len(digits) <= 10 else n
        scale = (1_000_000_000 if len(digits) <= 10 else 1_000_000 if len(digits) <= 13
                 else 1_000 if len(digits) <= 16 else 1)
        return n * scale
    try:
        return parse_rfc3339(v)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a time: {text!r}") from exc
