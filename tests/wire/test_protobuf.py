"""Protobuf details: lines that are not UTF-8, missing timestamps, structured metadata,
and the fast path (lean messages + numpy timestamps) agreeing with the exact one."""

from __future__ import annotations

import gzip

import cramjam
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.model import StreamBatch
from sluiceway.wire import decode_push, encode_push_protobuf
from sluiceway.wire._compress import snappy_decode
from sluiceway.wire._proto import decode_exact
from sluiceway.wire._proto_lean import decode_lean
from sluiceway.wire._push_pb2 import (
    PushRequest,
    RawEntryAdapter,
    RawLabelPairAdapter,
    RawPushRequest,
    RawStreamAdapter,
    StreamAdapter,
)
from sluiceway.wire._stamps import NS, decode_timestamps
from tests.wire._fixtures import PUSH_DIR, load
from tests.wire._strategies import BATCHES

PROTO = "application/x-protobuf"


def snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def test_line_not_utf8_is_kept_with_replacement_chars() -> None:
    # Go clients send file bytes as they are; Loki accepts them, so must we.
    entry = RawEntryAdapter(line=b"caf\xe9 ok", structuredMetadata=[
        RawLabelPairAdapter(name=b"k", value=b"\xff")])
    entry.timestamp.seconds, entry.timestamp.nanos = 12, 34
    req = RawPushRequest(streams=[RawStreamAdapter(labels=b'{job="x"}', entries=[entry])])
    [batch] = decode_push(snappy(req.SerializeToString()), PROTO, None)
    assert batch.labels == {"job": "x"}
    assert batch.lines == ["caf\ufffd ok"]
    assert batch.ts == [12_000_000_034]
    assert batch.metadata == [{"k": "\ufffd"}]


def test_missing_timestamp_is_zero_and_empty_stream_is_kept() -> None:
    req = PushRequest(streams=[StreamAdapter(labels='{a="1"}'), StreamAdapter(labels='{a="2"}')])
    req.streams[1].entries.add(line="no ts")
    batches = decode_push(snappy(req.SerializeToString()), None, None)
    assert [(b.labels, b.ts, b.lines) for b in batches] == [
        ({"a": "1"}, [], []), ({"a": "2"}, [0], ["no ts"])]


def test_snappy_content_encoding_is_ignored_and_gzip_applies_to_protobuf() -> None:
    req = PushRequest(streams=[StreamAdapter(labels='{a="1"}')])
    req.streams[0].entries.add(line="x").timestamp.seconds = 1
    body = snappy(req.SerializeToString())
    assert decode_push(body, PROTO, "snappy")[0].lines == ["x"]
    assert decode_push(gzip.compress(body), PROTO, "gzip")[0].ts == [1_000_000_000]


def test_labels_are_not_shared_between_results() -> None:
    req = PushRequest(streams=[StreamAdapter(labels='{a="1"}')])
    body = snappy(req.SerializeToString())
    first = decode_push(body, PROTO, None)[0]
    first.labels["mutated"] = "yes"
    assert decode_push(body, PROTO, None)[0].labels == {"a": "1"}


def raw_of(batches: list[StreamBatch]) -> bytes:
    return bytes(snappy_decode(encode_push_protobuf(batches), 1 << 24))


@settings(max_examples=100, deadline=None)
@given(BATCHES)
def test_fast_path_agrees_with_exact_path(batches: list[StreamBatch]) -> None:
    raw = raw_of(batches)
    fast = decode_lean(raw)
    assert fast == decode_exact(raw) == batches or (
        fast is None and any(abs(t) > 9 * 10**18 for b in batches for t in b.ts))


@pytest.mark.parametrize("metadata", [{"k": "v"}, {"": ""}, {"a": "1", "": ""}])
def test_fast_path_reads_any_structured_metadata(metadata: dict[str, str]) -> None:
    # {"": ""} serializes as an empty pair: the probe must still notice it.
    batches = [StreamBatch({"a": "1"}, [1, 2], ["x", "y"], [None, metadata]),
               StreamBatch({"a": "2"}, [3], ["z"])]
    raw = raw_of(batches)
    assert decode_lean(raw) == decode_exact(raw) == batches


def test_fast_path_handles_the_promtail_fixtures() -> None:
    for name in ("promtail-1", "promtail-2"):  # promtail-1 carries trace_id metadata
        raw = bytes(snappy_decode(load(PUSH_DIR / f"{name}.body").body, 1 << 20))
        fast = decode_lean(raw)
        assert fast is not None and fast == decode_exact(raw)


def test_metadata_that_is_not_utf8_goes_to_the_exact_path() -> None:
    entry = RawEntryAdapter(line=b"ok", structuredMetadata=[
        RawLabelPairAdapter(name=b"k", value=b"\xff")])
    raw = RawPushRequest(streams=[RawStreamAdapter(labels=b'{a="1"}', entries=[entry])])
    data = raw.SerializeToString()
    assert decode_lean(data) is None
    assert decode_exact(data)[0].metadata == [{"k": "\ufffd"}]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**40), 2**40), st.integers(0, NS - 1)), max_size=20))
def test_decode_timestamps_of_valid_messages(pairs: list[tuple[int, int]]) -> None:
    stamps = [Timestamp(seconds=s, nanos=n).SerializeToString() for s, n in pairs]
    want = [s * NS + n for s, n in pairs]
    if all(abs(s) <= 9_223_372_035 for s, _ in pairs):
        assert decode_timestamps(stamps) == want
    else:  # could overflow int64 ns: left to the exact path, which checks with Python ints
        assert decode_timestamps(stamps) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=14) | st.sampled_from([b"\x08\x01", b"\x10\x05", b""]),
                max_size=8))
def test_decode_timestamps_of_any_bytes_is_exact_or_declines(stamps: list[bytes]) -> None:
    got = decode_timestamps(stamps)
    if got is None:
        return
    for value, data in zip(got, stamps, strict=True):
        msg = Timestamp.FromString(data)  # what the exact path would read
        assert value == msg.seconds * NS + msg.nanos


def test_escaped_lone_surrogate_in_labels_becomes_replacement_char() -> None:
    req = PushRequest(streams=[StreamAdapter(labels='{a="x\\ud800y", b="\\U0001F600"}')])
    [batch] = decode_push(snappy(req.SerializeToString()), PROTO, None)
    assert batch.labels == {"a": "x\ufffdy", "b": "\U0001f600"}
