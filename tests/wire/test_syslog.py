"""Syslog parsing on the example messages of RFC 5424 §6.5 and RFC 3164 §5.4, and the
variants real senders (rsyslog, syslog-ng, Cisco, local /dev/log) produce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.wire import SyslogMessage, parse_syslog, parse_syslog_line

NOW = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def ns(*args: int, tz: timezone = UTC) -> int:
    whole = int(datetime(*args[:6], tzinfo=tz).timestamp()) * 1_000_000_000  # type: ignore[misc]
    return whole + (args[6] if len(args) > 6 else 0)


def one(line: bytes, **kw: object) -> SyslogMessage:
    return parse_syslog_line(line, now=NOW, **kw)  # type: ignore[arg-type]


def test_rfc5424_example_1_bom_and_nil_procid() -> None:
    m = one(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
            b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8")
    assert (m.format, m.facility, m.facility_name, m.severity) == ("rfc5424", 4, "auth",
                                                                    "critical")
    assert m.ts == ns(2003, 10, 11, 22, 14, 15, 3_000_000)
    assert (m.hostname, m.app_name, m.procid, m.msgid) == (
        "mymachine.example.com", "su", None, "ID47")
    assert m.structured_data == {}
    assert m.message == "'su root' failed for lonvick on /dev/pts/8"  # BOM removed


def test_rfc5424_example_2_offset_and_microseconds() -> None:
    m = one(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
            b"%% It's time to make the do-nuts.")
    assert m.ts == ns(2003, 8, 24, 12, 14, 15, 3_000)
    assert (m.facility_name, m.severity, m.procid, m.msgid) == ("local4", "notice", "8710",
                                                                 None)
    assert m.message == "%% It's time to make the do-nuts."


def test_rfc5424_examples_3_and_4_structured_data() -> None:
    sd = b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
    m = one(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 " + sd
            + b" \xef\xbb\xbfAn application event log entry...")
    assert m.structured_data == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}}
    assert m.message == "An application event log entry..."
    m = one(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 " + sd
            + b'[examplePriority@32473 class="high"]')
    assert m.structured_data["examplePriority@32473"] == {"class": "high"}
    assert m.message == ""


def test_rfc5424_sd_escapes_and_nil_timestamp() -> None:
    m = one(b'<14>1 - host app 1 - [x@1 q="say \\"hi\\"" b="a\\\\b" r="[1\\]" u="[2]"] m')
    assert m.ts is None
    assert m.structured_data == {"x@1": {"q": 'say "hi"', "b": "a\\b", "r": "[1]", "u": "[2]"}}
    assert m.message == "m"


@pytest.mark.parametrize("stamp", [b"2003-13-11T22:14:15Z", b"2003-02-30T00:00:00Z",
                                   b"2003-10-11T22:14:15", b"yesterday"])
def test_rfc5424_bad_timestamp_is_none(stamp: bytes) -> None:
    m = one(b"<14>1 " + stamp + b" host app - - - text")
    assert m.format == "rfc5424" and m.ts is None and m.message == "text"


def test_rfc3164_examples() -> None:
    m = one(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8")
    assert (m.format, m.facility_name, m.severity) == ("rfc3164", "auth", "critical")
    assert m.ts == ns(2026, 10, 11, 22, 14, 15)  # year from `now`
    assert (m.hostname, m.app_name, m.procid) == ("mymachine", "su", None)
    assert m.message == "'su root' failed for lonvick on /dev/pts/8"
    m = one(b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!")
    assert (m.ts, m.hostname, m.app_name, m.message) == (
        ns(2026, 2, 5, 17, 32, 18), "10.0.0.99", None, "Use the BFG!")


def test_rfc3164_nonconforming_date_is_kept_in_message() -> None:
    line = b"<0>1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: Folks!"
    m = one(line)
    assert (m.severity, m.ts) == ("emergency", None)
    assert m.message == line[3:].decode()


def test_rfc3164_variants() -> None:
    m = one(b"<30>Nov 23 17:59:01 cron[1234]: (root) CMD (run-parts /etc/cron.hourly)")
    assert (m.hostname, m.app_name, m.procid) == (None, "cron", "1234")  # local /dev/log
    m = one(b"<14>Dec 31 23:59:59 host app[42]: happy new year")
    assert m.ts == ns(2025, 12, 31, 23, 59, 59)  # in the future this year: last year's
    m = one(b"<134>2026-11-23T18:00:00.123456+01:00 web1 nginx[99]: GET /")
    assert (m.ts, m.hostname, m.app_name) == (ns(2026, 11, 23, 17, 0, 0, 123_456_000),
                                              "web1", "nginx")
    m = one(b"<189>Nov 23 2026 17:58:00.250 router1 %SYS-5-CONFIG_I: Configured")
    assert (m.ts, m.hostname, m.app_name) == (ns(2026, 11, 23, 17, 58, 0, 250_000_000),
                                              "router1", "%SYS-5-CONFIG_I")
    m = one(b"<13>Feb 30 10:00:00 host app: impossible date")
    assert m.ts is None


def test_rfc3164_dates_are_read_in_the_given_zone() -> None:
    cet = timezone(timedelta(hours=1))
    m = one(b"<13>Nov 23 10:00:00 host app: x", tz=cet)
    assert m.ts == ns(2026, 11, 23, 9, 0, 0)


@pytest.mark.parametrize("line", [b"plain text", b"<192>too big a priority", b"<x>", b""])
def test_without_a_valid_priority_the_line_is_raw(line: bytes) -> None:
    m = one(line)
    assert (m.format, m.facility, m.severity, m.ts) == ("raw", None, None, None)
    assert m.message == line.decode()


def test_batch_api_and_line_endings() -> None:
    out = parse_syslog([b"<13>Nov 23 10:00:00 h a: one\r\n", b"<14>1 - - - - - - two\n"],
                       now=NOW)
    assert [(m.format, m.message) for m in out] == [("rfc3164", "one"), ("rfc5424", "two")]


def test_invalid_utf8_is_replaced() -> None:
    assert one(b"<13>Nov 23 10:00:00 h a: caf\xe9").message == "caf\ufffd"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120) | st.builds(lambda b: b"<13>" + b, st.binary(max_size=80))
       | st.builds(lambda b: b"<165>1 " + b, st.binary(max_size=80)))
def test_never_raises(line: bytes) -> None:
    m = one(line)
    assert isinstance(m.message, str) and m.format in ("rfc5424", "rfc3164", "raw")


@pytest.mark.parametrize("line", [
    b"<13>Oct 11 9999 22:14:15 host app: year 9999",
    b"<13>Oct 11 0001 22:14:15 host app: year 1",
    b"<165>1 9999-12-31T23:59:59Z host app - - - year 9999",
    b"<165>1 0001-01-01T00:00:00Z host app - - - year 1",
    b"<165>1 2262-04-11T23:47:17Z host app - - - just past int64",
    b"<13>2262-04-12T00:00:00Z host app: RFC 3339 in a BSD message",
])
def test_times_past_int64_nanoseconds_are_no_time(line: bytes) -> None:
    """The agent ships Unix ns as int64: such a time becomes the receive time, like an
    unreadable one, and the message is kept."""
    m = one(line)
    assert m.ts is None and m.format != "raw"
    assert m.message.endswith(line.rsplit(b" ", 2)[-1].decode())


@pytest.mark.parametrize("now", [datetime(1, 1, 1, tzinfo=UTC),
                                 datetime(9999, 12, 31, 23, 59, tzinfo=UTC)])
def test_clock_at_the_ends_of_the_calendar_does_not_raise(now: datetime) -> None:
    for tz in (timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))):
        m = parse_syslog_line(b"<13>Jan  1 00:00:00 host app: x", now=now, tz=tz)
        assert m.format == "rfc3164" and m.message.endswith("x")
