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
    current = _fast_current_span() or trace.get_current_span
    invalid = trace.INVALID_SPAN

    def add(rec: dict[str, Any]) -> None:
        span = current()
        if span is None or span is invalid:
            return
        ctx = span.get_span_context()
        if ctx.is_valid and "trace_id" not in rec:
            rec["trace_id"] = format(ctx.trace_id, "032x")
            rec["span_id"] = format(ctx.span_id, "016x")

    return add


def _fast_current_span() -> Callable[[], Any] | None:
    """The current span in two C calls instead of four Python ones: the API's own
    context variable and span key, read directly when this API version has them (a
    log call pays for this on every record). None: use the public API."""
    try:
        from opentelemetry import context as otel_context
        from opentelemetry.trace import propagation

        var = otel_context._RUNTIME_CONTEXT._current_context  # type: ignore[attr-defined]
        key = propagation._SPAN_KEY
        if not hasattr(var, "get") or not isinstance(key, str):
            return None
    except (ImportError, AttributeError):
        return None

    def current() -> Any:
        return var.get().get(key)

    return current
