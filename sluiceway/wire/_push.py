"""`decode_push`: pick the decoder from the request headers, as Loki's push handler does."""

from __future__ import annotations

import numpy as np

from sluiceway.model import EntryBlock, StreamBatch
from sluiceway.wire._compress import decode_content_encoding, snappy_decode
from sluiceway.wire._json import decode_json
from sluiceway.wire._proto import decode_protobuf
from sluiceway.wire._proto_columns import decode_columns

DEFAULT_MAX_DECOMPRESSED = 100 * 2**20


def decode_push(body: bytes, content_type: str | None, content_encoding: str | None, *,
                max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED) -> list[StreamBatch]:
    """Decode a Loki push body into one StreamBatch per stream object, in body order.

    Content-Encoding (gzip, deflate; `snappy` is ignored) is undone first, for both
    formats; then `application/json` is JSON and any other or no Content-Type is
    raw-snappy protobuf. Raises WireError (HTTP 400) or BodyTooLarge (HTTP 413).
    """
    data = decode_content_encoding(body, content_encoding, max_decompressed_bytes)
    if is_json(content_type):
        return decode_json(data)
    return decode_protobuf(snappy_decode(data, max_decompressed_bytes))


def decode_push_blocks(body: bytes, content_type: str | None, content_encoding: str | None,
                       *, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED
                       ) -> list[EntryBlock]:
    """The same body as `decode_push` reads it, as the ingest path wants it: one
    EntryBlock per label set (stream objects with the same labels joined in body order,
    as Fluent Bit sends one per line), lines as UTF-8 bytes. Protobuf from ordinary
    clients takes the columnar decoder, which makes no Python object per line."""
    data = decode_content_encoding(body, content_encoding, max_decompressed_bytes)
    if not is_json(content_type):
        raw = snappy_decode(data, max_decompressed_bytes)
        blocks = decode_columns(raw)
        if blocks is not None:
            return blocks
        batches = decode_protobuf(raw)
    else:
        batches = decode_json(data)
    return batches_to_blocks(batches)


def batches_to_blocks(batches: list[StreamBatch]) -> list[EntryBlock]:
    """StreamBatches as the ingest path wants them: one EntryBlock per label set."""
    return [_to_block(b) for b in _merge_batches(batches)]


def _merge_batches(batches: list[StreamBatch]) -> list[StreamBatch]:
    merged: dict[tuple[tuple[str, str], ...], StreamBatch] = {}
    for b in batches:
        key = tuple(sorted(b.labels.items()))
        m = merged.get(key)
        if m is None:
            merged[key] = StreamBatch(b.labels, list(b.ts), list(b.lines),
                                      None if b.metadata is None else list(b.metadata))
            continue
        if b.metadata is not None or m.metadata is not None:
            m.metadata = (m.metadata or [None] * len(m.ts)) + \
                         (b.metadata or [None] * len(b.ts))
        m.ts.extend(b.ts)
        m.lines.extend(b.lines)
    return list(merged.values())


def _to_block(b: StreamBatch) -> EntryBlock:
    # surrogatepass: JSON may carry lone surrogates (\ud800), which are kept as sent.
    lines = [s.encode("utf-8", "surrogatepass") for s in b.lines]
    return EntryBlock.from_lines(b.labels, np.asarray(b.ts, dtype=np.int64), lines,
                                 b.metadata)


def is_json(content_type: str | None) -> bool:
    # Media type only: parameters such as `; charset=utf-8` do not matter.
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"
