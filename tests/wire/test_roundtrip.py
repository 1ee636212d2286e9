"""encode_push_protobuf / encode_push_json round-trip through decode_push."""

from __future__ import annotations

import gzip

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings

from sluiceway.model import StreamBatch, format_labels, parse_labels
from sluiceway.wire import decode_push, encode_push_json, encode_push_protobuf
from sluiceway.wire._compress import snappy_decode
from sluiceway.wire._push_pb2 import EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter
from tests.wire._strategies import BATCHES


@settings(max_examples=100, deadline=None)
@given(BATCHES)
def test_protobuf_round_trip(bs: list[StreamBatch]) -> None:
    body = encode_push_protobuf(bs)
    assert decode_push(body, "application/x-protobuf", None) == bs
    assert decode_push(body, None, "snappy") == bs


@settings(max_examples=100, deadline=None)
@given(BATCHES)
def test_json_round_trip(bs: list[StreamBatch]) -> None:
    body = encode_push_json(bs)
    assert decode_push(body, "application/json", None) == bs
    assert decode_push(gzip.compress(body), "application/json; charset=utf-8", "gzip") == bs


@settings(max_examples=30, deadline=None)
@given(BATCHES)
def test_protobuf_labels_are_canonical(bs: list[StreamBatch]) -> None:
    raw = bytes(snappy_decode(encode_push_protobuf(bs), 1 << 24))
    sent = [s.labels for s in PushRequest.FromString(raw).streams]
    assert [parse_labels(s) for s in sent] == [b.labels for b in bs]
    assert sent == [format_labels(b.labels) for b in bs]  # sorted names, Loki quoting


def test_json_omits_metadata_on_entries_without() -> None:
    b = StreamBatch({"a": "1"}, [1, 2], ["x", "y"], [None, {"k": "v"}])
    assert encode_push_json([b]) == (
        b'{"streams":[{"stream":{"a":"1"},"values":[["1","x"],["2","y",{"k":"v"}]]}]}')


def upb_serialized(batches: list[StreamBatch]) -> bytes:
    """The same PushRequest built from protobuf's own objects."""
    ns = 1_000_000_000
    return PushRequest(streams=[StreamAdapter(labels=format_labels(b.labels), entries=[
        EntryAdapter(timestamp=Timestamp(seconds=t // ns, nanos=t % ns), line=line,
                     structuredMetadata=[LabelPairAdapter(name=k, value=v)
                                         for k, v in (m or {}).items()])
        for t, line, m in zip(b.ts, b.lines, b.metadata or [None] * len(b), strict=True)])
        for b in batches]).SerializeToString()


@settings(max_examples=100, deadline=None)
@given(BATCHES)
def test_protobuf_bytes_equal_protobufs_own_serializer(bs: list[StreamBatch]) -> None:
    # The column-wise encoder must write exactly what protobuf would (any Loki decodes it).
    assert bytes(snappy_decode(encode_push_protobuf(bs), 1 << 24)) == upb_serialized(bs)


def test_encoders_replace_lone_surrogates() -> None:
    # Lines read with surrogateescape carry lone surrogates; ship U+FFFD, never fail.
    plain = StreamBatch({"a": "x\udc80"}, [5], ["bad \udcff byte"])
    meta = StreamBatch({"a": "1"}, [5], ["bad \udcff"], [{"k\ud800": "v"}])
    want = [StreamBatch({"a": "x\ufffd"}, [5], ["bad \ufffd byte"]),
            StreamBatch({"a": "1"}, [5], ["bad \ufffd"], [{"k\ufffd": "v"}])]
    assert decode_push(encode_push_protobuf([plain, meta]), None, None) == want
    assert decode_push(encode_push_json([plain, meta]), "application/json", None) == want
