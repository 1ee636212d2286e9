"""RFC 6587 TCP framing: octet counting and LF-terminated frames, mixed, split anywhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.wire import SyslogFramer

M5424 = b"<34>1 2003-10-11T22:14:15.003Z host su - ID47 - multi\nline message"
M3164 = b"<13>Oct 11 22:14:15 host app: plain"


def counted(msg: bytes) -> bytes:
    return b"%d %s" % (len(msg), msg)


def feed_all(chunks: list[bytes], max_frame: int = 4096) -> list[bytes]:
    framer = SyslogFramer(max_frame)
    out = [frame for chunk in chunks for frame in framer.feed(chunk)]
    return out + framer.flush()


def test_octet_counted_frame_may_hold_newlines() -> None:
    assert feed_all([counted(M5424) + counted(M3164)]) == [M5424, M3164]


def test_lf_frames_with_crlf_and_blank_lines() -> None:
    assert feed_all([M3164 + b"\r\n\n" + M3164 + b"\n"]) == [M3164, M3164]


def test_mixed_framing_on_one_connection() -> None:
    data = counted(M5424) + M3164 + b"\n" + counted(M3164)
    assert feed_all([data]) == [M5424, M3164, M3164]


def test_unterminated_last_frame_comes_out_on_flush() -> None:
    framer = SyslogFramer()
    assert framer.feed(M3164) == []
    assert framer.pending == len(M3164)
    assert framer.flush() == [M3164]


def test_incomplete_octet_count_waits() -> None:
    framer = SyslogFramer()
    data = counted(M5424)
    assert framer.feed(data[:1]) == [] and framer.feed(data[1:20]) == []
    assert framer.feed(data[20:]) == [M5424]


def test_overlong_frames_are_cut_not_buffered_forever() -> None:
    assert feed_all([b"x" * 25 + b"\n"], max_frame=10) == [b"x" * 10, b"x" * 10, b"x" * 5]
    # A count above the limit is not trusted: the frame runs to the LF instead.
    assert feed_all([b"99999 <13>x\n"], max_frame=100) == [b"99999 <13>x"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=60).map(
    lambda b: b"<" + b.replace(b"\n", b"_").replace(b"\r", b"_"))), max_size=8),
       st.lists(st.integers(1, 50), max_size=30))
def test_any_split_gives_the_same_frames(msgs: list[tuple[bool, bytes]],
                                         cuts: list[int]) -> None:
    data = b"".join(counted(m) if octets else m + b"\n" for octets, m in msgs)
    chunks, pos = [], 0
    for size in cuts:
        chunks.append(data[pos:pos + size])
        pos += size
    chunks.append(data[pos:])
    assert feed_all(chunks) == [m for _, m in msgs]
