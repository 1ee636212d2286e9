"""The parsers called directly: the agent's syslog path (TCP framing, RFC 5424 / 3164
parsing, the fields it hands the pipeline) and the LogQL parser and formatter. Nothing
but their documented errors may come out, and what they return must be usable."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from sluiceway.agent._syslog import _fields
from sluiceway.logql import QueryError, format_query, parse, parse_selector
from sluiceway.wire import SyslogFramer, parse_syslog
from tests.fuzz._support import BYTE_EDITS, any_query, fuzz, mutate_bytes

INT64 = (-(2**63), 2**63 - 1)

# --- syslog ---------------------------------------------------------------------------

PRI = st.sampled_from([b"<0>", b"<13>", b"<34>", b"<165>", b"<191>", b"<192>", b"<999>",
                       b"<>", b"<1", b"13>", b"<-1>", b"<013>", b""])
STAMP_5424 = st.sampled_from([
    b"2003-10-11T22:14:15.003Z", b"2003-08-24T05:14:15.000003-07:00", b"-",
    b"9999-12-31T23:59:59.999999999Z", b"0001-01-01T00:00:00Z", b"2262-04-11T23:47:17Z",
    b"1677-09-21T00:12:43Z", b"2003-02-30T00:00:00Z", b"2003-10-11T25:14:15Z",
    b"2003-10-11T22:14:15+99:99", b"2003-10-11T22:14:15.1234567890123Z", b"2003-10-11",
])
STAMP_3164 = st.sampled_from([
    b"Oct 11 22:14:15", b"Feb 29 00:00:00", b"Feb 30 00:00:00", b"Jan  1 00:00:00",
    b"Dec 31 23:59:59", b"Oct 11 22:14:15.123456", b"Oct 11 2003 22:14:15",
    b"Oct 11 9999 22:14:15", b"Oct 11 0001 22:14:15", b"Foo 11 22:14:15", b"Oct 99 99:99:99",
])
SD = st.sampled_from([b"-", b'[exampleSDID@32473 iut="3" eventSource="App"]',
                      b'[a b="\\"]\\\\"][c d="e"]', b"[", b"[x", b'[x a="', b"[x a=b]",
                      b'[x a="\xff"]', b"[]"])
WORD = st.sampled_from([b"-", b"host", b"app", b"1234", b"ID47", b"\xff\xfe", b"a" * 300,
                        b"", b"h\x00"])


@st.composite
def syslog_line(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        parts = [draw(PRI) + b"1", draw(STAMP_5424), draw(WORD), draw(WORD), draw(WORD),
                 draw(WORD), draw(SD)]
        line = b" ".join(parts) + draw(st.sampled_from([b"", b" msg", b" \xef\xbb\xbfbom",
                                                         b" \xff bad utf8"]))
    else:
        line = draw(PRI) + draw(STAMP_3164) + b" " + draw(WORD) + b" " + \
            draw(st.sampled_from([b"su[123]: ", b"tag: ", b"tag[: ", b"", b": "])) + \
            draw(st.binary(max_size=20))
    return mutate_bytes(line, draw(BYTE_EDITS)) if draw(st.booleans()) else line


ZONES = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
NOWS = st.sampled_from([datetime.now(UTC), datetime(1, 1, 1, tzinfo=UTC),
                        datetime(9999, 12, 31, 23, 0, tzinfo=UTC),
                        datetime(2024, 2, 29, 12, tzinfo=UTC),
                        datetime(2024, 12, 31, 23, 59, tzinfo=UTC)])


@fuzz(250)
@given(st.lists(syslog_line() | st.binary(max_size=60), min_size=1, max_size=4), NOWS, ZONES)
def test_syslog_messages(lines: list[bytes], now: datetime, tz: timezone) -> None:
    for m in parse_syslog(lines, now=now, tz=tz):
        # The agent ships `ts` as int64 Unix ns: a time it cannot hold must not come out.
        assert m.ts is None or INT64[0] <= m.ts <= INT64[1], m
        assert m.format in ("rfc5424", "rfc3164", "raw")
        fields = _fields(m)  # what the agent hands its pipeline stages
        for text in (m.message, *(str(v) for v in fields.values()), *map(str, fields)):
            text.encode()  # shippable as UTF-8


@fuzz(100)
@given(st.lists(syslog_line(), min_size=1, max_size=4), st.lists(st.integers(1, 40),
                                                                  max_size=6),
       st.sampled_from([b"\n", b"\r\n", b"octets"]))
def test_syslog_tcp_framing(lines: list[bytes], cuts: list[int], style: bytes) -> None:
    """Any way the stream is cut into reads gives the same frames."""
    if style == b"octets":
        stream = b"".join(b"%d %s" % (len(x), x) for x in lines)
    else:
        stream = b"".join(x.replace(b"\n", b" ") + style for x in lines)
    framer = SyslogFramer(max_frame=64)
    got: list[bytes] = []
    pos = 0
    for n in [*cuts, len(stream)]:
        got += framer.feed(stream[pos:pos + n])
        pos += n
    got += framer.flush()
    assert b"".join(got).replace(b"\r", b"") in stream.replace(b"\r", b"") or \
        all(len(f) <= 64 for f in got)
    for f in got:
        assert len(f) <= 64
    parse_syslog(got)


# --- LogQL ----------------------------------------------------------------------------

@fuzz(250)
@given(any_query() | st.text(max_size=80))
def test_logql_parser(text: str) -> None:
    try:
        expr = parse(text)
    except QueryError:
        return
    again = format_query(expr)
    assert format_query(parse(again)) == again


@fuzz(100)
@given(any_query() | st.text(max_size=40))
def test_logql_selector_parser(text: str) -> None:
    with contextlib.suppress(QueryError):
        parse_selector(text)
