"""`decode_push`: pick the decoder from the request headers, as Loki's push handler does."""

from __future__ import annotations

from sluiceway.model import StreamBatch
from sluiceway.wire._compress import decode_content_encoding, snappy_decode
from sluiceway.wire._json import decode_json
from sluiceway.wire._proto import decode_protobuf

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


def is_json(content_type: str | None) -> bool:
    # Media type only: parameters such as `; charset=utf-8` do not matter.
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"
