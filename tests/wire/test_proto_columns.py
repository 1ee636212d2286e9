"""The columnar protobuf decoder: it must agree with the exact decoder on everything it
accepts, take the common case itself, and decline (None) whatever it cannot read."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.model import EntryBlock, StreamBatch
from sluiceway.wire import decode_push_blocks
from sluiceway.wire._compress import snappy_decode
from sluiceway.wire._proto import decode_exact
from sluiceway.wire._proto_columns import decode_columns
from sluiceway.wire._push_pb2 import (
    PushRequest,
    RawEntryAdapter,
    RawPushRequest,
    RawStreamAdapter,
    StreamAdapter,
)
from tests.wire._fixtures import PUSH_DIR, load
from tests.wire._strategies import BATCHES
from tests.wire.test_protobuf import PROTO, raw_of, snappy


def rows(blocks: list[EntryBlock]) -> list[tuple[Any, ...]]:
    return [(b.labels, b.ts.tolist(), b.lines(), b.metadata) for b in blocks]


def exact_rows(raw: bytes) -> list[tuple[Any, ...]]:
    """The exact decoder's stream objects, joined by label set as the ingest path does."""
    merged: dict[Any, tuple[Any, ...]] = {}
    for b in decode_exact(raw):
        key = tuple(sorted(b.labels.items()))
        md = b.metadata or [None] * len(b)
        if key not in merged:
            merged[key] = (b.labels, list(b.ts), [s.encode() for s in b.lines], list(md))
        else:
            merged[key][1].extend(b.ts)
            merged[key][2].extend(s.encode() for s in b.lines)
            merged[key][3].extend(md)
    return [(lb, ts, lines, md if any(md) else None) for lb, ts, lines, md in merged.values()]


def canonical(batches: list[StreamBatch]) -> bool:
    """What the columnar decoder is built to take: no metadata, times from 1970 until
    int64 nanoseconds run out (year 2262)."""
    return all(b.metadata is None and all(0 <= t < 9_223_372_035 * 10**9 for t in b.ts)
               for b in batches)


@settings(max_examples=100, deadline=None)
@given(BATCHES)
def test_agrees_with_the_exact_decoder(batches: list[StreamBatch]) -> None:
    raw = raw_of(batches)
    got = decode_columns(raw)
    if got is not None:
        assert rows(got) == exact_rows(raw)
    elif canonical(batches):
        pytest.fail("the columnar decoder declined an ordinary request")
    assert rows(decode_push_blocks(snappy(raw), PROTO, None)) == exact_rows(raw)


def test_takes_the_captured_promtail_push_without_metadata() -> None:
    raw = bytes(snappy_decode(load(PUSH_DIR / "promtail-2.body").body, 1 << 20))
    got = decode_columns(raw)
    assert got is not None and rows(got) == exact_rows(raw)


def test_structured_metadata_goes_to_the_per_entry_decoders() -> None:
    batches = [StreamBatch({"a": "1"}, [1, 2], ["x", "y"], [None, {"trace_id": "abc"}])]
    raw = raw_of(batches)
    assert decode_columns(raw) is None
    [block] = decode_push_blocks(snappy(raw), PROTO, None)
    assert block.metadata == [None, {"trace_id": "abc"}]


def test_missing_timestamp_empty_line_and_empty_entry() -> None:
    req = PushRequest(streams=[StreamAdapter(labels='{a="1"}'), StreamAdapter(labels='{a="2"}')])
    req.streams[1].entries.add(line="no ts")
    req.streams[1].entries.add().timestamp.seconds = 7  # no line
    req.streams[1].entries.add()  # nothing at all: zero bytes
    e = req.streams[1].entries.add(line="nanos only")
    e.timestamp.nanos = 5
    raw = req.SerializeToString()
    got = decode_columns(raw)
    assert got is not None
    assert rows(got) == [({"a": "1"}, [], [], None),
                         ({"a": "2"}, [0, 7_000_000_000, 0, 5], [b"no ts", b"", b"", b"nanos only"],
                          None)]


def test_fields_out_of_order_are_read_by_the_exact_decoder() -> None:
    # line (field 2) before timestamp (field 1): valid protobuf, unusual encoder.
    entry = b"\x12\x02hi" + b"\x0a\x02\x08\x03"
    stream = b"\x0a\x09" + b'{a="1"}'.ljust(9) + b"\x12" + bytes([len(entry)]) + entry
    raw = b"\x0a" + bytes([len(stream)]) + stream
    assert decode_columns(raw) is None
    [block] = decode_push_blocks(snappy(raw), PROTO, None)
    assert (block.ts.tolist(), block.lines()) == ([3_000_000_000], [b"hi"])


@pytest.mark.parametrize("lines", [
    [b"caf\xe9"],  # Latin-1, not UTF-8
    [b"\xc3", b"\xa9"],  # valid only when joined: a line must not start inside a character
    [b"\xed\xa0\x80"],  # an encoded surrogate
])
def test_lines_that_are_not_utf8_are_repaired_by_the_exact_decoder(lines: list[bytes]) -> None:
    entries = [RawEntryAdapter(line=line) for line in lines]
    raw = RawPushRequest(streams=[RawStreamAdapter(labels=b'{a="1"}', entries=entries)])
    data = raw.SerializeToString()
    assert decode_columns(data) is None
    [block] = decode_push_blocks(snappy(data), PROTO, None)
    assert all("\ufffd" in line.decode() for line in block.lines())


def test_multibyte_utf8_lines_take_the_fast_path() -> None:
    batches = [StreamBatch({"a": "1"}, [1, 2, 3], ["café", "", "日本語 ✓"])]
    got = decode_columns(raw_of(batches))
    assert got is not None
    assert got[0].lines() == [b"caf\xc3\xa9", b"", "日本語 ✓".encode()]


@pytest.mark.parametrize("second_a", ['{a="1"}', '{ a = "1" }'])
def test_stream_objects_with_the_same_labels_become_one_block(second_a: str) -> None:
    req = PushRequest(streams=[StreamAdapter(labels='{a="1"}'), StreamAdapter(labels='{b="2"}'),
                               StreamAdapter(labels=second_a)])
    for i, (stream, line) in enumerate([(0, "a1"), (1, "b1"), (2, "a2"), (0, "a3")]):
        e = req.streams[stream].entries.add(line=line)
        e.timestamp.seconds = i + 1
    raw = req.SerializeToString()
    got = decode_columns(raw)
    assert got is not None
    want = [({"a": "1"}, [1_000_000_000, 4_000_000_000, 3_000_000_000], [b"a1", b"a3", b"a2"],
             None),
            ({"b": "2"}, [2_000_000_000], [b"b1"], None)]
    assert rows(got) == want
    # The per-entry path (here: forced by structured metadata on one entry) merges alike.
    req.streams[1].entries[0].structuredMetadata.add(name="k", value="v")
    merged = decode_push_blocks(snappy(req.SerializeToString()), PROTO, None)
    assert [r[:3] for r in rows(merged)] == [w[:3] for w in want]
    assert merged[0].metadata is None and merged[1].metadata == [{"k": "v"}]


def test_seconds_past_int64_nanoseconds_are_not_wrapped() -> None:
    req = PushRequest(streams=[StreamAdapter(labels='{a="1"}')])
    e = req.streams[0].entries.add(line="far")
    e.timestamp.seconds, e.timestamp.nanos = 9_223_372_036, 999_999_999  # > 2**63 - 1 ns
    assert decode_columns(req.SerializeToString()) is None


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8, 9])
def test_only_empty_entries_read_nothing_past_the_body(count: int) -> None:
    """Empty entries at the end made the look-ahead read past the padding (a 500 for a
    21-byte push); they decode as Loki decodes them: time 0, empty line."""
    req = PushRequest(streams=[StreamAdapter(labels='{a="1"}')])
    for _ in range(count):
        req.streams[0].entries.add()
    raw = req.SerializeToString()
    got = decode_columns(raw)
    assert got is not None
    assert rows(got) == [({"a": "1"}, [0] * count, [b""] * count, None)] == exact_rows(raw)


ENTRY_PARTS = st.lists(st.sampled_from([
    b"", b"\x0a\x00", b"\x0a\x02\x08\x01", b"\x0a\x02\x10\x05", b"\x0a\x04\x08\x01\x10\x02",
    b"\x0a\x02\x08\x7f", b"\x12\x00", b"\x12\x01x", b"\x0a\x00\x12\x00",
    b"\x0a\x02\x08\x01\x12\x03abc", b"\x0a\x0b\x08\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x10\x01",
]), max_size=12)


@settings(max_examples=200, deadline=None)
@given(ENTRY_PARTS)
def test_any_mix_of_short_entries_agrees_with_the_exact_decoder(entries: list[bytes]) -> None:
    def field(tag: int, data: bytes) -> bytes:  # length-delimited: tag, varint length
        n, size = len(data), b""
        while n >= 0x80:
            size, n = size + bytes([n & 0x7F | 0x80]), n >> 7
        return bytes([tag]) + size + bytes([n]) + data

    stream = field(0x0A, b'{a="1"}') + b"".join(field(0x12, e) for e in entries)
    raw = field(0x0A, stream)
    got = decode_columns(raw)
    if got is not None:
        assert rows(got) == exact_rows(raw)
