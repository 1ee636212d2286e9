"""Wire formats: Loki push (JSON, protobuf + raw snappy, gzip/deflate), syslog and
Prometheus remote write; what a push answer means (`classify_push_answer`) and where to
push (`push_url`); `PushBuilder` builds one push from pieces of streams whose lines are
UTF-8 bytes; OTLP logs (`decode_otlp`, `partial_success`) and Elasticsearch `_bulk`
(`decode_bulk`).

The OTLP names load the OpenTelemetry protobuf modules on first use, so the agent and
the in-app client, which never read OTLP, do not pay for them at import.
"""

import importlib
from typing import TYPE_CHECKING, Any

from sluiceway.wire._answer import (
    ANSWER_REASONS,
    PUSH_PATH,
    AnswerKind,
    PushAnswer,
    base_url,
    classify_push_answer,
    push_url,
)
from sluiceway.wire._builder import (
    CONTENT_TYPES,
    PushBuilder,
    PushFormat,
    cut_runs,
    split_push,
    split_streams,
    utf8_encode,
    utf8_lines,
)
from sluiceway.wire._compress import decode_content_encoding
from sluiceway.wire._errors import BodyTooLarge, WireError
from sluiceway.wire._es_bulk import BulkItem, decode_bulk, items_to_batches
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
from sluiceway.wire._remote_write import (
    REMOTE_WRITE_HEADERS,
    RemoteSeries,
    decode_write_request,
    encode_write_request,
)
from sluiceway.wire._retry import parse_retry_after
from sluiceway.wire._syslog import parse_syslog, parse_syslog_line
from sluiceway.wire._syslog_types import (
    FACILITY_NAMES,
    SEVERITY_LEVELS,
    StructuredData,
    SyslogMessage,
)

if TYPE_CHECKING:
    from sluiceway.wire._otlp import decode_otlp, partial_success

_LAZY = {"decode_otlp": "sluiceway.wire._otlp", "partial_success": "sluiceway.wire._otlp"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sluiceway.wire' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ANSWER_REASONS",
    "CONTENT_TYPES",
    "DEFAULT_MAX_DECOMPRESSED",
    "DEFAULT_MAX_FRAME",
    "FACILITY_NAMES",
    "OTLP_INDEX_ATTRIBUTES",
    "PUSH_PATH",
    "REMOTE_WRITE_HEADERS",
    "SEVERITY_LEVELS",
    "AnswerKind",
    "BodyTooLarge",
    "BulkItem",
    "PushAnswer",
    "PushBuilder",
    "PushFormat",
    "RemoteSeries",
    "StructuredData",
    "SyslogFramer",
    "SyslogMessage",
    "WireError",
    "base_url",
    "batches_to_blocks",
    "classify_push_answer",
    "cut_runs",
    "decode_bulk",
    "decode_content_encoding",
    "decode_otlp",
    "decode_push",
    "decode_push_blocks",
    "decode_write_request",
    "encode_push_json",
    "encode_push_protobuf",
    "encode_write_request",
    "is_json",
    "items_to_batches",
    "partial_success",
    "parse_retry_after",
    "parse_syslog",
    "parse_syslog_line",
    "push_url",
    "split_push",
    "split_streams",
    "utf8_encode",
    "utf8_lines",
]
