"""Core value types shared by every package: label sets and stream batches."""

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
from sluiceway.model._timefmt import (
    NAMED_LAYOUTS,
    go_layout_parser,
    make_parser,
    now_ns,
    parse_rfc3339,
)
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
    "StreamBatch",
    "fingerprint",
    "format_labels",
    "go_unquote",
    "parse_labels",
    "quote",
    "validate_label_names",
    "NAMED_LAYOUTS",
    "go_layout_parser",
    "make_parser",
    "now_ns",
    "parse_rfc3339",
]
