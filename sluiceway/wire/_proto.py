"""Loki's protobuf push body: `logproto.PushRequest`, raw-snappy compressed."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import cramjam
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from sluiceway.model import Metadata, StreamBatch, format_labels
from sluiceway.wire import _push_pb2 as pb
from sluiceway.wire._checks import check_ts_range, fail
from sluiceway.wire._encode_proto import encode_entries
from sluiceway.wire._errors import WireError
from sluiceway.wire._labels import labels_from_string
from sluiceway.wire._proto_lean import decode_lean
from sluiceway.wire._text import scrub, scrub_batch

NS = 1_000_000_000
# One C-level attribute walk per entry; everything after works on whole columns.
_ENTRY_FIELDS = attrgetter("timestamp.seconds", "timestamp.nanos", "line", "structuredMetadata")


def decode_protobuf(data: bytes | memoryview) -> list[StreamBatch]:
    """Decode an already snappy-decoded PushRequest."""
    fast = decode_lean(data)
    return fast if fast is not None else decode_exact(data)


def decode_exact(data: bytes | memoryview) -> list[StreamBatch]:
    """Full PushRequest objects: structured metadata, any valid encoding, repairs."""
    try:
        req: Any = pb.PushRequest.FromString(data)
        repair = False
    except DecodeError:
        # Most often a line that is not UTF-8 (Go clients send raw file bytes, Loki keeps
        # them); re-read as bytes and repair. Truly corrupt bodies fail here as well.
        req = _parse_raw(data)
        repair = True
    return [_stream(f"streams[{i}]", s, repair) for i, s in enumerate(req.streams)]


def _parse_raw(data: bytes | memoryview) -> Any:
    try:
        return pb.RawPushRequest.FromString(data)
    except DecodeError as exc:
        raise WireError(f"error parsing push request: invalid protobuf: {exc}") from None


def _stream(where: str, st: Any, repair: bool) -> StreamBatch:
    text = st.labels.decode("utf-8", "replace") if repair else st.labels
    labels = labels_from_string(text)
    rows = list(map(_ENTRY_FIELDS, st.entries))
    if not rows:
        return StreamBatch(labels)
    secs, nanos, lines, mds = zip(*rows, strict=True)
    if min(nanos) < 0 or max(nanos) >= NS:  # Go's timestamp validation rejects these too
        raise fail(where, "timestamp nanos not in range [0, 1e9)")
    ts = [s * NS + n for s, n in zip(secs, nanos, strict=True)]
    check_ts_range(where, ts)
    if repair:
        lines = tuple(line.decode("utf-8", "replace") for line in lines)
    metadata = _metadata(mds, repair) if any(mds) else None
    return StreamBatch(labels, ts, list(lines), metadata)


def _metadata(mds: tuple[Any, ...], repair: bool) -> list[Metadata | None]:
    if repair:
        return [{p.name.decode("utf-8", "replace"): p.value.decode("utf-8", "replace")
                 for p in md} or None for md in mds]
    return [{p.name: p.value for p in md} or None for md in mds]


def encode_push_protobuf(batches: list[StreamBatch]) -> bytes:
    """A snappy-compressed PushRequest, labels in canonical `format_labels` form."""
    raw = b"".join(_field(0x0A, _encode_stream(b)) for b in batches)  # PushRequest.streams
    return bytes(cramjam.snappy.compress_raw(raw))


def _encode_stream(b: StreamBatch) -> bytes:
    if b.metadata is None or not any(b.metadata):
        labels = scrub(format_labels(b.labels)).encode()
        return _field(0x0A, labels) + encode_entries(b.ts, b.lines)  # labels = 1
    try:
        return _encode_with_metadata(b)
    except ValueError:  # a string protobuf cannot encode as UTF-8
        return _encode_with_metadata(scrub_batch(b))


def _encode_with_metadata(b: StreamBatch, labels: bool = True) -> bytes:
    """Protobuf's own objects: slower, only for batches that carry structured metadata.
    Without `labels` the stream's labels are left out: its entries alone."""
    entry, stamp, pair = pb.EntryAdapter, Timestamp, pb.LabelPairAdapter
    entries = [entry(timestamp=stamp(seconds=t // NS, nanos=t % NS), line=line,
                     structuredMetadata=[pair(name=k, value=v) for k, v in (m or {}).items()])
               for t, line, m in zip(b.ts, b.lines, b.metadata or [None] * len(b), strict=True)]
    msg = pb.StreamAdapter(labels=format_labels(b.labels) if labels else "", entries=entries)
    data: bytes = msg.SerializeToString()
    return data


def encode_entries_with_metadata(ts: Sequence[int], lines: list[str],
                                 metadata: Sequence[Metadata | None]) -> bytes:
    """The `entries` fields of one StreamAdapter whose entries carry structured metadata
    (an empty `labels` is not written, so this is the entries alone)."""
    b = StreamBatch({}, list(ts), lines, list(metadata))
    try:
        return _encode_with_metadata(b, labels=False)
    except ValueError:  # a string protobuf cannot encode as UTF-8
        return _encode_with_metadata(scrub_batch(b), labels=False)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    size, head = len(payload), bytearray([tag])
    while size >= 0x80:
        head.append(size & 0x7F | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head) + payload
