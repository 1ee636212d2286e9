"""The in-app logger: returns in microseconds whatever the sinks are doing.

Public API::

    from sluiceway import client
    client.configure(sinks=[client.LokiSink("http://127.0.0.1:3100", labels={"app": "orders"})],
                     queue_size=10_000, when_full="drop")      # or "block" / "spill"
    log = client.get_logger("orders")
    log.info("Fetching order", order_id=42)
    log.bind(user="ann").audit("refund", amount=3)
    client.stats(); client.flush(timeout=5)

- `get_logger(name, **bound)` → `Logger` (`bind`, `unbind`, `trace`..`critical`, `audit`,
  `security`, `exception`, `log(level, ...)`, custom levels from `add_level`);
  `get_async_logger` → `AsyncLogger` (`await log.info(...)`).
- `configure(...)` builds the pipeline and installs `SluicewayHandler` on the root
  stdlib logger; `stats()`, `flush(timeout)`, `shutdown(timeout)`, `register_metrics()`.
- Sinks: `StdoutSink`, `RotatingFileSink`, `LokiSink`, or any object with
  `write_batch(records: list[dict]) -> None` (raise `SinkRetryable`, `SinkRejected`,
  `SinkConfigError` or `SinkTooLarge` to steer retries). Each sink has its own queue
  (`sluiceway.buffer`), worker thread and counters.
- `RequestContextMiddleware` for ASGI/FastAPI; `bind_contextvars` and friends for
  request-scoped context of your own.
"""

from sluiceway.client._asgi import RequestContextMiddleware
from sluiceway.client._configure import configure, flush, register_metrics, shutdown, stats
from sluiceway.client._context import (
    bind_contextvars,
    clear_contextvars,
    get_contextvars,
    reset_contextvars,
    unbind_contextvars,
)
from sluiceway.client._errors import SinkConfigError, SinkRejected, SinkRetryable, SinkTooLarge
from sluiceway.client._handler import SluicewayHandler
from sluiceway.client._heartbeat import heartbeat_payload
from sluiceway.client._levels import DEFAULT_PROTECTED, LEVELS, add_level
from sluiceway.client._logger import AsyncLogger, Logger, get_async_logger, get_logger
from sluiceway.client._loki import LokiSink
from sluiceway.client._redact import DEFAULT_REDACT, Redactor
from sluiceway.client._sinks import RotatingFileSink, Sink, StdoutSink, json_lines

__all__ = [
    "DEFAULT_PROTECTED",
    "DEFAULT_REDACT",
    "LEVELS",
    "AsyncLogger",
    "Logger",
    "LokiSink",
    "Redactor",
    "RequestContextMiddleware",
    "RotatingFileSink",
    "Sink",
    "SinkConfigError",
    "SinkRejected",
    "SinkRetryable",
    "SinkTooLarge",
    "SluicewayHandler",
    "StdoutSink",
    "add_level",
    "bind_contextvars",
    "clear_contextvars",
    "configure",
    "flush",
    "get_async_logger",
    "get_contextvars",
    "get_logger",
    "heartbeat_payload",
    "json_lines",
    "register_metrics",
    "reset_contextvars",
    "shutdown",
    "stats",
    "unbind_contextvars",
]
