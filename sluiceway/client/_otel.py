"""OpenTelemetry trace context on records: a record logged inside an active span gets
its `trace_id` (32 hex digits) and `span_id` (16), the names the OTLP ingest uses.
Only when `opentelemetry-api` is installed; without it this costs nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TraceIds = Callable[[dict[str, Any]], None]


def trace_ids() -> TraceIds | None:
    """A function that adds the current span's ids to a record, or None (no API)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    current = trace.get_current_span
    invalid = trace.INVALID_SPAN

    def add(rec: dict[str, Any]) -> None:
        span = current()
        if span is invalid:
            return
        ctx = span.get_span_context()
        if ctx.is_valid and "trace_id" not in rec:
            rec["trace_id"] = format(ctx.trace_id, "032x")
            rec["span_id"] = format(ctx.span_id, "016x")

    return add
