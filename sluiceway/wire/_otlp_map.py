"""An OTLP `ExportLogsServiceRequest` in Loki's model, with Loki 3's default OTLP config:

- index labels: the resource attributes Loki indexes by default (`INDEX_ATTRIBUTES`),
  as label names (`service.name` → `service_name`); `service_name` is always set, from
  another indexed attribute naming the service or else `unknown_service`;
- structured metadata, per entry in this order: the log record's attributes, then
  `observed_timestamp` (when it differs in kind from the entry time), `severity_number`,
  `severity_text`, `dropped_attributes_count`, `flags`, `trace_id`, `span_id`, then the
  other resource attributes, then scope attributes, `scope_name`, `scope_version`;
  map values are flattened into `parent_child` keys;
- the line: the body's text (`as_string`); the time: `time_unix_nano`, else
  `observed_time_unix_nano`, else the time of the request.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from sluiceway.model import Metadata, StreamBatch
from sluiceway.wire._errors import WireError
from sluiceway.wire._otlp_names import INDEX_ATTRIBUTES, SERVICE_NAME_SOURCES
from sluiceway.wire._otlp_values import as_string, label_name

UNKNOWN_SERVICE = "unknown_service"


def request_to_batches(req: ExportLogsServiceRequest, now_ns: int) -> list[StreamBatch]:
    """One StreamBatch per distinct label set, entries in request order."""
    streams: dict[tuple[tuple[str, str], ...], StreamBatch] = {}
    for rl in req.resource_logs:
        labels, resource_md = _resource(rl.resource.attributes)
        batch = streams.setdefault(tuple(sorted(labels.items())), StreamBatch(labels))
        for sl in rl.scope_logs:
            scope_md = _scope(sl.scope)
            for record in sl.log_records:
                md = _record_metadata(record)
                md.update(resource_md)
                md.update(scope_md)
                batch.append(_timestamp(record, now_ns), as_string(record.body), md)
    return [b for b in streams.values() if len(b)]


def _resource(attrs: Iterable[KeyValue]) -> tuple[dict[str, str], Metadata]:
    labels: dict[str, str] = {}
    md: Metadata = {}
    for kv in attrs:
        target = labels if kv.key in INDEX_ATTRIBUTES else md
        target.update(flatten(kv.key, kv.value))
    # An empty label value means "no such label" in Loki's stream selectors.
    labels = {k: v for k, v in labels.items() if v}
    if "service_name" not in labels:
        # Loki looks for a stand-in among the labels before giving up.
        labels["service_name"] = next((labels[n] for n in SERVICE_NAME_SOURCES
                                       if n in labels), UNKNOWN_SERVICE)
    return labels, md


def _scope(scope: InstrumentationScope) -> Metadata:
    md: Metadata = {}
    for kv in scope.attributes:
        md.update(flatten(kv.key, kv.value))
    if scope.name:
        md["scope_name"] = scope.name
    if scope.version:
        md["scope_version"] = scope.version
    if scope.dropped_attributes_count:
        md["scope_dropped_attributes_count"] = str(scope.dropped_attributes_count)
    return md


def _record_metadata(r: LogRecord) -> Metadata:
    md: Metadata = {}
    for kv in r.attributes:
        md.update(flatten(kv.key, kv.value))
    if r.time_unix_nano and r.observed_time_unix_nano:
        # With no time_unix_nano the observed time is the entry's time already.
        md["observed_timestamp"] = str(r.observed_time_unix_nano)
    if r.severity_number:
        md["severity_number"] = str(r.severity_number)
    if r.severity_text:
        md["severity_text"] = r.severity_text
    if r.dropped_attributes_count:
        md["dropped_attributes_count"] = str(r.dropped_attributes_count)
    if r.flags:
        md["flags"] = str(r.flags)
    if any(r.trace_id):
        md["trace_id"] = _id(r.trace_id, 16, "trace_id")
    if any(r.span_id):
        md["span_id"] = _id(r.span_id, 8, "span_id")
    return md


def _id(raw: bytes, size: int, name: str) -> str:
    # OTLP receivers refuse ids of the wrong length rather than store a malformed one.
    if len(raw) != size:
        raise WireError(f"error parsing OTLP request: {name} must be {size} bytes, "
                        f"got {len(raw)}")
    return raw.hex()


def flatten(key: str, value: AnyValue, prefix: str = "") -> Metadata:
    """An attribute as label pairs: a map value gives one pair per leaf, named by its
    path (`http` → `{"request": {"method": …}}` gives `http_request_method`)."""
    name = label_name(f"{prefix}_{key}" if prefix else key)
    if value.WhichOneof("value") != "kvlist_value":
        return {name: as_string(value)}
    out: Metadata = {}
    for kv in value.kvlist_value.values:
        out.update(flatten(kv.key, kv.value, name))
    return out


# OTLP times are unsigned 64-bit; Unix nanoseconds past this (the year 2262) do not fit
# the store's signed ones. Such an entry keeps this time, so validation rejects it as too
# new (Go's int64 conversion in Loki would wrap it to a time before 1970 instead).
LATEST_NS = 2**63 - 1


def _timestamp(r: LogRecord, now_ns: int) -> int:
    return min(r.time_unix_nano or r.observed_time_unix_nano or now_ns, LATEST_NS)
