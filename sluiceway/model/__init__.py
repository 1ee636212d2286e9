"""Core value types shared by every package: label sets, stream batches and push records;
entry blocks and the one merge of a stream's blocks, `SeriesRef`; the heartbeat model;
the ledger's number sets (`RangeSet`) and push header; config units, the config loaders'
messages, and Go's ways of reading and writing sizes, durations and times."""

from sluiceway.model._batch import Metadata, StreamBatch
from sluiceway.model._block import MEMO_BYTES, MEMO_KEYS, EntryBlock
from sluiceway.model._blockread import BlockSummary, ReadHints
from sluiceway.model._config_keys import (
    config_error_text,
    did_you_mean,
    known_keys,
    unknown_key,
    validation_messages,
)
from sluiceway.model._gofmt import (
    format_go_duration,
    format_go_time,
    format_humanize_ibytes,
    format_loki_size,
    format_prom_duration,
    parse_humanize_bytes,
    parse_loki_size,
)
from sluiceway.model._heartbeat import (
    HEARTBEAT_VERSION,
    Heartbeat,
    HeartbeatBackend,
    HeartbeatFile,
    HeartbeatLines,
    HeartbeatQueue,
    LedgerEntry,
    LedgerGroupReport,
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
from sluiceway.model._ledger import (
    LEDGER_HEADER,
    MAX_HEADER,
    LedgerGroup,
    LedgerHeaderError,
    decode_ledger,
    encode_ledger,
    group_sets,
    header_size,
    split_ledger_order,
)
from sluiceway.model._matcher import Matcher, matches_all
from sluiceway.model._merge import in_read_order, merge_blocks, merge_stream, sort_dedupe
from sluiceway.model._ranges import RangeSet, runs_of
from sluiceway.model._record import PushRecord, RecordError, looks_like_record
from sluiceway.model._reporters import (
    LOSS_WINDOWS,
    HeartbeatRefused,
    LossHistory,
    PipelineRegistry,
    parse_heartbeat,
)
from sluiceway.model._series import SeriesRef
from sluiceway.model._timefmt import (
    EARLIEST_NS,
    LATEST_NS,
    NAMED_LAYOUTS,
    go_layout_parser,
    make_parser,
    now_ns,
    parse_rfc3339,
    parse_time_param,
    rfc3339_micros,
)
from sluiceway.model._tokens import decode_escapes, is_word_byte, words
from sluiceway.model._units import Bytes, Duration, LokiBytes, parse_duration, parse_size

__all__ = [
    "LOSS_WINDOWS",
    "HeartbeatRefused",
    "LossHistory",
    "PipelineRegistry",
    "parse_heartbeat",
    "HEARTBEAT_VERSION",
    "Heartbeat",
    "HeartbeatBackend",
    "HeartbeatFile",
    "HeartbeatLines",
    "HeartbeatQueue",
    "LEDGER_HEADER",
    "MAX_HEADER",
    "LedgerEntry",
    "LedgerGroup",
    "LedgerGroupReport",
    "LedgerHeaderError",
    "RangeSet",
    "decode_ledger",
    "encode_ledger",
    "group_sets",
    "header_size",
    "runs_of",
    "split_ledger_order",
    "EARLIEST_NS",
    "LATEST_NS",
    "Bytes",
    "LokiBytes",
    "config_error_text",
    "did_you_mean",
    "format_go_duration",
    "format_go_time",
    "format_humanize_ibytes",
    "format_loki_size",
    "format_prom_duration",
    "known_keys",
    "parse_humanize_bytes",
    "parse_loki_size",
    "parse_time_param",
    "unknown_key",
    "validation_messages",
    "Duration",
    "parse_duration",
    "parse_size",
    "EntryBlock",
    "MEMO_BYTES",
    "MEMO_KEYS",
    "BlockSummary",
    "ReadHints",
    "decode_escapes",
    "is_word_byte",
    "words",
    "Matcher",
    "matches_all",
    "in_read_order",
    "merge_blocks",
    "merge_stream",
    "sort_dedupe",
    "SeriesRef",
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
    "NAMED_LAYOUTS",
    "go_layout_parser",
    "make_parser",
    "now_ns",
    "parse_rfc3339",
]
