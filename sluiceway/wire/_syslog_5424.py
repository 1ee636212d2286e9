"""RFC 5424 messages: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD...] MSG`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from sluiceway.wire._syslog_types import StructuredData

_HEADER = re.compile(rb"([1-9][0-9]{0,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ?")
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2})", re.ASCII)
_SD_NAME = rb'[^ =\]"]{1,32}'
_SD_START = re.compile(rb"\[(" + _SD_NAME + rb")")
# Values are quoted; accept an unescaped "]" inside the quotes, as many senders emit it.
_SD_PARAM = re.compile(rb" (" + _SD_NAME + rb')="((?:[^"\\]|\\.)*)"', re.DOTALL)
_SD_ESCAPE = re.compile(rb'\\([\\"\]])')
_BOM = b"\xef\xbb\xbf"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_5424(rest: bytes) -> tuple[list[str | None], int | None, StructuredData, str] | None:
    """`rest` follows the `<PRI>`. Returns (host, app, procid, msgid), ts, SD, message;
    None if this is not RFC 5424 after all."""
    m = _HEADER.match(rest)
    if m is None:
        return None
    fields = [_nil(g) for g in m.groups()[2:]]
    sd, pos = _structured_data(rest, m.end())
    if sd is None:
        return None
    msg = rest[pos:]
    if msg.startswith(b" "):
        msg = msg[1:]
    if msg.startswith(_BOM):
        msg = msg[len(_BOM):]
    return fields, parse_rfc3339(m.group(2).decode("ascii", "replace")), sd, _text(msg)


def _nil(value: bytes) -> str | None:
    return None if value == b"-" else value.decode("utf-8", "replace")


def _structured_data(rest: bytes, pos: int) -> tuple[StructuredData | None, int]:
    if rest[pos:pos + 1] == b"-":
        return {}, pos + 1
    if pos >= len(rest):  # SD is mandatory, but a bare header is still clearly RFC 5424
        return {}, pos
    out: StructuredData = {}
    while (m := _SD_START.match(rest, pos)) is not None:
        params = out.setdefault(m.group(1).decode("utf-8", "replace"), {})
        pos = m.end()
        while (p := _SD_PARAM.match(rest, pos)) is not None:
            params[p.group(1).decode("utf-8", "replace")] = _text(
                _SD_ESCAPE.sub(rb"\1", p.group(2)))
            pos = p.end()
        if rest[pos:pos + 1] != b"]":
            return None, pos
        pos += 1
    return (out, pos) if out else (None, pos)


def parse_rfc3339(text: str) -> int | None:
    """Unix ns of an RFC 3339 timestamp (fraction up to ns), or None if invalid."""
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        tz = UTC if zone in ("Z", "z") else timezone(
            (1 if zone[0] == "+" else -1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:])))
        when = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=tz)
    except ValueError:
        return None
    delta = when - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return unix_ns(seconds * 1_000_000_000 + int((frac or "0").ljust(9, "0")))


def unix_ns(ns: int) -> int | None:
    """`ns` when int64 holds it (1677 to 2262), else None: a time the store cannot keep
    counts as no time, so the receive time is used, as for an unreadable one."""
    return ns if -(2**63) <= ns < 2**63 else None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")
