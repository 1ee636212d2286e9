"""Wire formats: Loki push (JSON, protobuf + raw snappy, gzip/deflate) and syslog; what a
push answer means (`classify_push_answer`) and where to push (`push_url`)."""

from sluiceway.wire._answer import (
    PUSH_PATH,
    AnswerKind,
    PushAnswer,
    base_url,
    classify_push_answer,
    push_url,
)
from sluiceway.wire._errors import BodyTooLarge, WireError
from sluiceway.wire._framing import DEFAULT_MAX_FRAME, SyslogFramer
from sluiceway.wire._json import encode_push_json
from sluiceway.wire._otlp_names import INDEX_ATTRIBUTES as OTLP_INDEX_ATTRIBUTES
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
    "OTLP_INDEX_ATTRIBUTES",
    "PUSH_PATH",
    "SEVERITY_LEVELS",
    "AnswerKind",
    "BodyTooLarge",
    "PushAnswer",
    "StructuredData",
    "SyslogFramer",
    "SyslogMessage",
    "WireError",
    "base_url",
    "batches_to_blocks",
    "classify_push_answer",
    "decode_push",
    "decode_push_blocks",
    "encode_push_json",
    "encode_push_protobuf",
    "is_json",
    "parse_retry_after",
    "parse_syslog",
    "parse_syslog_line",
    "push_url",
]
