"""Loki's JSON push body: `{"streams":[{"stream":{..},"values":[["<ns>","line",{..}?]]}]}`."""

from __future__ import annotations

from typing import Any

import orjson

from sluiceway.model import Metadata, StreamBatch
from sluiceway.wire._checks import (
    check_label_names,
    check_metadata,
    fail,
    parse_ts_strings,
)
from sluiceway.wire._errors import WireError
from sluiceway.wire._json_columns import decode_columns
from sluiceway.wire._text import scrub_batch


def decode_json(data: bytes | memoryview) -> list[StreamBatch]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"error parsing push request: invalid JSON: {exc}") from None
    if type(doc) is not dict:
        raise fail("body", 'must be a JSON object with a "streams" array')
    streams = doc.get("streams")
    if streams is None:  # Loki accepts a push without streams and stores nothing
        return []
    if type(streams) is not list:
        raise fail("streams", "must be an array")
    fast = decode_columns(streams)
    return fast if fast is not None else decode_streams(streams)


def decode_streams(streams: list[Any]) -> list[StreamBatch]:
    """Stream by stream: slower, and names the exact place of any error."""
    return [_stream(f"streams[{i}]", s) for i, s in enumerate(streams)]


def _stream(where: str, obj: object) -> StreamBatch:
    if type(obj) is not dict:
        raise fail(where, "must be an object")
    labels = obj.get("stream")
    if type(labels) is not dict:
        raise fail(f"{where}.stream", "must be an object of label names to string values")
    check_label_names(f"{where}.stream", labels)
    values = obj.get("values")
    if values is None:
        return StreamBatch(labels)
    if type(values) is not list:
        raise fail(f"{where}.values", "must be an array")
    return _entries(f"{where}.values", labels, values)


def _entries(where: str, labels: dict[str, str], values: list[Any]) -> StreamBatch:
    kinds = set(map(type, values))
    if kinds != {list}:
        if type(None) in kinds:  # Loki skips null entries (error indices then skip them too)
            values = [v for v in values if v is not None]
            kinds.discard(type(None))
        if kinds - {list}:
            i = next(i for i, v in enumerate(values) if type(v) is not list)
            raise fail(f"{where}[{i}]", 'entry must be an array ["<ns>", "<line>"{, {..}}]')
    sizes = set(map(len, values))
    if min(sizes, default=2) < 2:
        i = next(i for i, v in enumerate(values) if len(v) < 2)
        raise fail(f"{where}[{i}]", f"entry must have 2 or 3 elements, got {len(values[i])}")
    if max(sizes, default=2) > 3:  # Loki ignores elements after the third
        values = [v[:3] for v in values]
        sizes = set(map(len, values))
    if not values:
        return StreamBatch(labels)
    if sizes == {2}:
        stamps, lines = zip(*values, strict=True)
        metadata = None
    else:  # some entries carry structured metadata
        stamps = tuple(v[0] for v in values)
        lines = tuple(v[1] for v in values)
        metadata = _metadata(where, values)
    ts = parse_ts_strings(where, stamps)
    if set(map(type, lines)) != {str}:
        i = next(i for i, line in enumerate(lines) if type(line) is not str)
        raise fail(f"{where}[{i}][1]", "log line must be a string")
    return StreamBatch(labels, ts, list(lines), metadata)


def _metadata(where: str, values: list[list[Any]]) -> list[Metadata | None] | None:
    md = [check_metadata(f"{where}[{i}][2]", v[2]) if len(v) == 3 else None
          for i, v in enumerate(values)]
    return md if any(md) else None


def encode_push_json(batches: list[StreamBatch]) -> bytes:
    """A Loki JSON push body (uncompressed); metadata only on entries that have some."""
    try:
        return _dumps(batches)
    except orjson.JSONEncodeError:  # lone surrogates: not UTF-8 encodable
        return _dumps([scrub_batch(b) for b in batches])


def _dumps(batches: list[StreamBatch]) -> bytes:
    return orjson.dumps({"streams": [
        {"stream": b.labels, "values": _values(b)} for b in batches
    ]})


def _values(b: StreamBatch) -> list[tuple[str, ...] | tuple[str, str, Metadata]]:
    if b.metadata is None:
        return list(zip(map(str, b.ts), b.lines, strict=True))
    return [(str(t), line, m) if m else (str(t), line)
            for t, line, m in zip(b.ts, b.lines, b.metadata, strict=True)]
