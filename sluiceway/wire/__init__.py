"""Loki push wire formats (JSON, protobuf + raw snappy, gzip/deflate) and syslog parsing."""

from sluiceway.wire._errors import BodyTooLarge, WireError
from sluiceway.wire._json import encode_push_json
from sluiceway.wire._proto import encode_push_protobuf
from sluiceway.wire._push import DEFAULT_MAX_DECOMPRESSED, decode_push, is_json

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED",
    "BodyTooLarge",
    "WireError",
    "decode_push",
    "encode_push_json",
    "encode_push_protobuf",
    "is_json",
]
