"""Syslog message parsing for the agent's syslog input: RFC 5424 and RFC 3164."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo

from sluiceway.wire._syslog_3164 import parse_3164
from sluiceway.wire._syslog_5424 import parse_5424
from sluiceway.wire._syslog_types import SEVERITY_LEVELS, SyslogMessage

_PRI = re.compile(rb"<([0-9]{1,3})>")
_MAX_PRI = 191  # facility 23 (local7) * 8 + severity 7


def parse_syslog(lines: list[bytes], *, now: datetime | None = None,
                 tz: tzinfo = UTC) -> list[SyslogMessage]:
    """Parse one message per item (a UDP datagram or a frame from SyslogFramer).

    `now` (default: the current time) supplies the year RFC 3164 dates lack; `tz` is
    the zone RFC 3164 dates are read in, since they carry none. Never raises: what
    cannot be parsed comes back as format "raw" with the whole text as message.
    """
    at = now or datetime.now(UTC)
    return [parse_syslog_line(line, now=at, tz=tz) for line in lines]


def parse_syslog_line(line: bytes, *, now: datetime | None = None,
                      tz: tzinfo = UTC) -> SyslogMessage:
    line = line.rstrip(b"\r\n\x00")
    pri = _PRI.match(line)
    if pri is None or int(pri.group(1)) > _MAX_PRI:
        return SyslogMessage(line.decode("utf-8", "replace"), "raw")
    code = int(pri.group(1))
    facility, severity = code >> 3, SEVERITY_LEVELS[code & 7]
    rest = line[pri.end():]
    parsed = parse_5424(rest)
    if parsed is not None:
        (host, app, procid, msgid), ts, sd, msg = parsed
        return SyslogMessage(msg, "rfc5424", facility, severity, ts, host, app, procid, msgid,
                             sd)
    ts, host, app, procid, msg = parse_3164(rest, now or datetime.now(UTC), tz)
    return SyslogMessage(msg, "rfc3164", facility, severity, ts, host, app, procid)
