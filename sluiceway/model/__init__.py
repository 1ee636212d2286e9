"""Core value types shared by every package: label sets, stream batches, heartbeats."""

from sluiceway.model._batch import Metadata, StreamBatch
from sluiceway.model._block import EntryBlock
from sluiceway.model._heartbeat import (
    HEARTBEAT_VERSION,
    Heartbeat,
    HeartbeatBackend,
    HeartbeatFile,
    HeartbeatLines,
    HeartbeatQueue,
)
from sluiceway.model._labels import (
    LABEL_NAME_RE,
    LabelError,
    fingerprint,
    format_labels,
    go_unquote,
    parse_labels,
    quote,
    validate_label_names,
)
from sluiceway.model._matcher import Matcher, matches_all
from sluiceway.model._units import Bytes, Duration, parse_duration, parse_size

__all__ = [
    "HEARTBEAT_VERSION",
    "Heartbeat",
    "HeartbeatBackend",
    "HeartbeatFile",
    "HeartbeatLines",
    "HeartbeatQueue",
    "Bytes",
    "Duration",
    "parse_duration",
    "parse_size",
    "EntryBlock",
    "Matcher",
    "matches_all",
    "LABEL_NAME_RE",
    "LabelError",
    "Metadata",
    "StreamBatch",
    "fingerprint",
    "format_labels",
    "go_unquote",
    "parse_labels",
    "quote",
    "validate_label_names",
]
