"""Wire formats: Loki push (JSON, protobuf + raw snappy, gzip/deflate) and syslog."""

from sluiceway.wire._errors import BodyTooLarge, WireError
from sluiceway.wire._framing import DEFAULT_MAX_FRAME, SyslogFramer
from sluiceway.wire._json import encode_push_json
from sluiceway.wire._proto import encode_push_protobuf
from sluiceway.wire._push import (
    DEFAULT_MAX_DECOMPRESSED,
    batches_to_blocks,
    decode_push,
    decode_push_blocks,
    is_json,
)
from sluiceway.wire._retry import parse_retry_after
from sluiceway.wire._syslog import parse_syslog, parse_syslog_line
from sluiceway.wire._syslog_types import (
    FACILITY_NAMES,
    SEVERITY_LEVELS,
    StructuredData,
    SyslogMessage,
)

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED",
    "DEFAULT_MAX_FRAME",
    "FACILITY_NAMES",
    "SEVERITY_LEVELS",
    "BodyTooLarge",
    "StructuredData",
    "SyslogFramer",
    "SyslogMessage",
    "WireError",
    "batches_to_blocks",
    "decode_push",
    "decode_push_blocks",
    "encode_push_json",
    "encode_push_protobuf",
    "is_json",
    "parse_retry_after",
    "parse_syslog",
    "parse_syslog_line",
]
