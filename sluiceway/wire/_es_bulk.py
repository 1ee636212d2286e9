"""Elasticsearch `_bulk` bodies (NDJSON: an action line, then a document line) as log
entries, so shippers with an Elasticsearch output (Filebeat, Logstash, Fluent Bit, Vector,
the `elasticsearch` client) can send to Sluiceway.

Each `index` / `create` document becomes one entry: its `@timestamp` (ISO 8601 or epoch
milliseconds, as Elasticsearch's default date format) is the entry time, the rest of the
document, as compact JSON, the line (so `| json` reads it back). Labels: `index` (the
target index) plus any `_stream_fields` the caller names. `delete` and `update` cannot
apply to an append-only log store and are answered per item.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from sluiceway.model import StreamBatch, parse_rfc3339
from sluiceway.wire._errors import WireError

_ACTIONS = ("create", "delete", "index", "update")
# What int64 Unix nanoseconds hold, as Elasticsearch's `date_nanos` says it.
_EARLIEST_NS, _LATEST_NS = -(2**63), 2**63 - 1
_EARLIEST_TEXT, _LATEST_TEXT = "1677-09-21T00:12:43.145224192", "2262-04-11T23:47:16.854775807"
_LABEL_BAD = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(slots=True)
class BulkItem:
    """One action of the request and, for a document, the entry it becomes."""

    action: str
    index: str
    doc_id: str | None
    labels: dict[str, str]
    ts: int = 0
    line: str = ""
    error: tuple[str, str] | None = None  # Elasticsearch error type and reason

    def fail(self, kind: str, reason: str) -> None:
        self.error = (kind, reason)


def decode_bulk(body: bytes, default_index: str | None, stream_fields: Sequence[str],
                now_ns: int) -> list[BulkItem]:
    """The items of a bulk body, in order. A malformed action line fails the whole request
    (WireError, HTTP 400) as in Elasticsearch; a bad document fails only its item."""
    lines = [ln for ln in body.split(b"\n") if ln.strip()]
    items: list[BulkItem] = []
    i = 0
    while i < len(lines):
        action, meta = _action(lines[i], i + 1)
        index = meta.get("_index") or default_index
        if not isinstance(index, str) or not index:
            raise WireError(f"Validation Failed: 1: index is missing for action [{action}] "
                            f"on line [{i + 1}];")
        doc_id = meta.get("_id")
        item = BulkItem(action, index, None if doc_id is None else str(doc_id), {"index": index})
        items.append(item)
        i += 1
        if action == "delete":
            item.fail("action_request_validation_exception",
                      "delete is not supported: Sluiceway stores logs append-only")
            continue
        if i >= len(lines):
            raise WireError(f"The bulk request must be terminated by a newline [\\n]; the "
                            f"{action} action on line [{i}] has no document")
        doc_line, i = lines[i], i + 1
        if action == "update":
            item.fail("action_request_validation_exception",
                      "update is not supported: Sluiceway stores logs append-only")
            continue
        _document(item, doc_line, stream_fields, now_ns)
    return items


def _action(raw: bytes, lineno: int) -> tuple[str, dict[str, Any]]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"Malformed action/metadata line [{lineno}]: {exc}") from None
    if not isinstance(obj, dict) or len(obj) != 1:
        raise WireError(f"Malformed action/metadata line [{lineno}], expected START_OBJECT "
                        "with exactly one action")
    action, meta = next(iter(obj.items()))
    if action not in _ACTIONS:
        raise WireError(f"Malformed action/metadata line [{lineno}], expected one of "
                        f"[create, delete, index, update] but found [{action}]")
    if not isinstance(meta, dict):
        raise WireError(f"Malformed action/metadata line [{lineno}], expected an object "
                        f"for [{action}]")
    return action, meta


def _document(item: BulkItem, raw: bytes, stream_fields: Sequence[str], now_ns: int) -> None:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        item.fail("document_parsing_exception", f"failed to parse the document: {exc}")
        return
    if not isinstance(doc, dict):
        item.fail("document_parsing_exception", "the document is not a JSON object")
        return
    stamp = doc.pop("@timestamp", None)
    ts = now_ns if stamp is None else parse_es_time(stamp)
    problem = _time_problem(stamp, ts)
    if problem:
        item.fail("document_parsing_exception",
                  f"failed to parse field [@timestamp] of type [date]: {problem}")
        return
    assert ts is not None
    try:
        # orjson reads documents up to 1024 levels deep but writes only 254.
        line = orjson.dumps(doc).decode()
    except orjson.JSONEncodeError as exc:
        item.fail("document_parsing_exception",
                  f"the document is nested too deeply to store as a log line: {exc}")
        return
    for field in stream_fields:
        value = _lookup(doc, field)
        if isinstance(value, str | int | float | bool):
            item.labels[_LABEL_BAD.sub("_", field)] = str(value)
    item.ts = ts
    item.line = line


def _time_problem(stamp: object, ts: int | None) -> str:
    """Why `ts` (from `stamp`) cannot be an entry's time, or "" when it can."""
    if ts is None:
        return repr(stamp)
    if ts < _EARLIEST_NS:
        return (f"date[{stamp}] is before {_EARLIEST_TEXT} and cannot be stored in "
                "nanosecond resolution")
    if ts > _LATEST_NS:
        return (f"date[{stamp}] is after {_LATEST_TEXT} and cannot be stored in "
                "nanosecond resolution")
    return ""


def parse_es_time(value: object) -> int | None:
    """Unix ns of an `@timestamp`: ISO 8601 text (nanosecond fractions kept) or epoch
    milliseconds as a number or digit string; None when it is neither. The result may lie
    outside int64 nanoseconds: see `_time_problem`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * 1_000_000
    if isinstance(value, float):
        ns = value * 1_000_000
        if not math.isfinite(ns):  # overflowed: a time far past int64 either way
            return 2**64 if value > 0 else -(2**64)
        return int(ns)
    if not isinstance(value, str):
        return None
    if value.isdigit():
        return int(value) * 1_000_000
    try:
        return parse_rfc3339(value)  # what shippers send: date, time, fraction, zone
    except ValueError:
        pass
    try:  # the shorter ISO 8601 forms Elasticsearch also takes, such as a date alone
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:  # Elasticsearch reads a zone-less date as UTC
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def _lookup(doc: dict[str, Any], field: str) -> object:
    """`a.b.c` as a dotted key or as nested objects (both are common in shipped logs)."""
    if field in doc:
        return doc[field]
    cur: object = doc
    for part in field.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def items_to_batches(items: list[BulkItem]) -> list[StreamBatch]:
    """The accepted items as one StreamBatch per label set, in request order."""
    out: dict[tuple[tuple[str, str], ...], StreamBatch] = {}
    for it in items:
        if it.error is None:
            key = tuple(sorted(it.labels.items()))
            out.setdefault(key, StreamBatch(it.labels)).append(it.ts, it.line)
    return list(out.values())
