"""Core value types shared by every package: label sets, stream batches, push records."""

from sluiceway.model._batch import Metadata, StreamBatch
from sluiceway.model._block import EntryBlock
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
from sluiceway.model._record import PushRecord, RecordError, looks_like_record
from sluiceway.model._timefmt import rfc3339_micros
from sluiceway.model._units import Bytes, Duration, parse_duration, parse_size

__all__ = [
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
    "PushRecord",
    "RecordError",
    "StreamBatch",
    "fingerprint",
    "format_labels",
    "go_unquote",
    "looks_like_record",
    "parse_labels",
    "quote",
    "rfc3339_micros",
    "validate_label_names",
]
