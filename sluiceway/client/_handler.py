"""A stdlib `logging.Handler` feeding the same pipeline, so `logging` calls (and
third-party libraries') get the same buffer, policies and sinks."""

from __future__ import annotations

import logging
import sys
from typing import Any

from sluiceway.client._levels import level_name
from sluiceway.client._logger import format_exc
from sluiceway.client._runtime import runtime, state

_STD = frozenset(logging.LogRecord("x", 0, "x", 0, "x", None, None).__dict__) | {
    "message", "asctime", "taskName"}
# Our own diagnostics (and the HTTP library a LokiSink uses) must not loop back into
# the pipeline they describe: they go to stderr at WARNING and above, else nowhere.
_INTERNAL = ("sluiceway.client", "sluiceway.buffer", "httpx", "httpcore")


class SluicewayHandler(logging.Handler):
    """Routes stdlib records into sluiceway; `extra={...}` keys become record fields."""

    def handle(self, record: logging.LogRecord) -> Any:
        # Handler.handle takes a per-handler lock around emit; the buffer is already
        # thread-safe, so skip it and keep threads from serialising here.
        rv = self.filter(record)
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        rt = state.rt or runtime()
        try:
            name = record.name
            if name.startswith(_INTERNAL):
                if record.levelno >= logging.WARNING:
                    sys.stderr.write(f"{record.levelname} {name}: {record.getMessage()}\n")
                return
            if record.levelno < rt.min_level:
                return
            fields = {k: v for k, v in record.__dict__.items() if k not in _STD}
            exc = format_exc(record.exc_info) if record.exc_info else None
            if exc is None and record.exc_text:
                exc = record.exc_text
            rt.emit(level_name(record.levelno), name, record.getMessage(), None,
                    fields or None, exc)
        except Exception:
            rt.internal_errors += 1
