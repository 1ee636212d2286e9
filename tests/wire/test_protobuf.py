"""Protobuf details: lines that are not UTF-8, missing timestamps, structured metadata."""

from __future__ import annotations

import gzip

import cramjam

from sluiceway.wire import decode_push
from sluiceway.wire._push_pb2 import (
    PushRequest,
    RawEntryAdapter,
    RawLabelPairAdapter,
    RawPushRequest,
    RawStreamAdapter,
    StreamAdapter,
)

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
