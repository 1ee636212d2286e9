"""RFC 3164 ("BSD") messages: `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`, and the common
variants seen in the wild: no hostname (local /dev/log), a year or fraction of a second
after the date (Cisco, rsyslog), an RFC 3339 timestamp, no timestamp at all."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo

from sluiceway.wire._syslog_5424 import parse_rfc3339, unix_ns

_MONTHS = {m: i + 1 for i, m in enumerate(
    (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
     b"Dec"))}
_BSD_TIME = re.compile(
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +([0-9]{1,2}) (?:([0-9]{4}) )?"
    rb"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?(?: |$)")
_ISO_TIME = re.compile(rb"([0-9]{4}-[0-9]{2}-[0-9]{2}T\S+)(?: |$)")
_TAG = re.compile(rb"([^\s\[\]:]{1,64})(?:\[([^\]\s]{1,32})\])?:(?: |$)")
_HOST = re.compile(rb"(\S+) ")
# A date without a year more than this far in the future was sent last year.
_FUTURE_SLACK = timedelta(days=31)


def parse_3164(rest: bytes, now: datetime, tz: tzinfo) -> tuple[
        int | None, str | None, str | None, str | None, str]:
    """`rest` follows the `<PRI>`. Returns ts, hostname, app_name, procid, message."""
    ts, pos = _timestamp(rest, now, tz)
    host = None
    tag = _TAG.match(rest, pos)
    if tag is None and ts is not None:  # a hostname comes before the tag
        h = _HOST.match(rest, pos)
        if h is not None:
            host, pos = _str(h.group(1)), h.end()
            tag = _TAG.match(rest, pos)
    if tag is None:
        return ts, host, None, None, _str(rest[pos:])
    procid = tag.group(2)
    return (ts, host, _str(tag.group(1)), None if procid is None else _str(procid),
            _str(rest[tag.end():]))


def _timestamp(rest: bytes, now: datetime, tz: tzinfo) -> tuple[int | None, int]:
    m = _BSD_TIME.match(rest)
    if m is not None:
        return _bsd_ns(m, now, tz), m.end()
    iso = _ISO_TIME.match(rest)
    if iso is not None:
        ts = parse_rfc3339(iso.group(1).decode("ascii", "replace"))
        if ts is not None:
            return ts, iso.end()
    return None, 0


def _bsd_ns(m: re.Match[bytes], now: datetime, tz: tzinfo) -> int | None:
    mon, day, year, h, mi, s, frac = m.groups()
    try:
        local_now = now.astimezone(tz)
        when = datetime(int(year or local_now.year), _MONTHS[mon], int(day), int(h), int(mi),
                        int(s), tzinfo=tz)
        if year is None and when - local_now > _FUTURE_SLACK:
            when = when.replace(year=when.year - 1)  # December's logs read in January
        ns = int(when.timestamp()) * 1_000_000_000
    # Feb 30, hour 25, Feb 29 of a non-leap year, ...; a year before 1 or after 9999 (a
    # clock at either end of the calendar, a zone pushing a date over it)
    except (ValueError, OverflowError):
        return None
    return unix_ns(ns + int((frac or b"0").ljust(9, b"0")))


def _str(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")
