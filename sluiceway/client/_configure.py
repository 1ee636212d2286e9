"""`configure(...)`: one call that builds the pipeline and installs the stdlib handler."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sluiceway.client._exit import install_signal_handlers
from sluiceway.client._handler import SluicewayHandler
from sluiceway.client._levels import DEFAULT_PROTECTED, level_number
from sluiceway.client._redact import DEFAULT_REDACT
from sluiceway.client._runtime import Runtime, Settings, install, runtime, state


def configure(sinks: Iterable[Any] | None = None, *, level: str | int = "INFO",
              queue_size: int = 10_000, queue_bytes: int = 64 << 20,
              when_full: str = "drop", drop: str = "newest", wait_ms: float = 0.0,
              timeout: float | None = None, spill_dir: str | Path = ".sluiceway-spill",
              spill_max_bytes: int = 1 << 30, when_spill_full: str = "drop",
              fsync: str = "always", protected_levels: Iterable[str] = DEFAULT_PROTECTED,
              redact: Iterable[str] = DEFAULT_REDACT, redact_patterns: Iterable[str] = (),
              batch_size: int = 512, max_retries: int = 10, shutdown_timeout: float = 5.0,
              capture_stdlib: bool = True, name: str = "python",
              report_url: str | None = "auto", report_interval: float = 10.0,
              metrics: bool = False, handle_signals: bool = True,
              flush_timeout: float | None = None, trace_ids: bool = True) -> Runtime:
    """Build the pipeline (replacing any previous one, which is flushed for up to 1 s).

    Raises ValueError for a bad option: configuration errors surface at startup, log
    calls never raise. `report_url="auto"` sends heartbeats to the first LokiSink's
    server and stops quietly if that is a plain Loki (404); None turns them off.

    At exit — interpreter exit, SIGTERM/SIGINT (`handle_signals`, see `_exit.py`) or an
    ASGI lifespan shutdown seen by `RequestContextMiddleware`, whichever comes first —
    records are flushed for up to `shutdown_timeout` seconds; what is left is kept in
    the spill or counted lost as `shutdown_timeout`, with one line on stderr.
    `flush_timeout` is the old name of `shutdown_timeout`.

    `trace_ids`: a record logged inside an active OpenTelemetry span gets `trace_id`
    and `span_id` fields (when `opentelemetry-api` is installed).
    """
    if when_full not in ("drop", "block", "spill"):
        raise ValueError(f"when_full must be drop, block or spill, not {when_full!r}")
    if flush_timeout is not None:
        warnings.warn("configure(flush_timeout=) is now shutdown_timeout=",
                      DeprecationWarning, stacklevel=2)
        shutdown_timeout = flush_timeout
    if shutdown_timeout < 0:
        raise ValueError(f"shutdown_timeout must be >= 0, not {shutdown_timeout!r}")
    settings = Settings(
        sinks=list(sinks) if sinks is not None else [], level=level,
        queue_size=queue_size, queue_bytes=queue_bytes, when_full=when_full, drop=drop,
        wait_ms=wait_ms, timeout=timeout, spill_dir=Path(spill_dir),
        spill_max_bytes=spill_max_bytes, when_spill_full=when_spill_full, fsync=fsync,
        protected_levels=frozenset(protected_levels), redact=tuple(redact),
        redact_patterns=tuple(redact_patterns), batch_size=batch_size,
        max_retries=max_retries, shutdown_timeout=shutdown_timeout, name=name,
        report_url=report_url, report_interval=report_interval, trace_ids=trace_ids)
    level_number(level)  # validate before anything starts
    rt = install(settings)
    if capture_stdlib:
        _install_handler(rt.min_level)
    if metrics:
        register_metrics()
    if handle_signals:
        install_signal_handlers()
    return rt


def _install_handler(min_level: int) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, SluicewayHandler):
            root.removeHandler(h)
    root.addHandler(SluicewayHandler())
    root.setLevel(min_level)


def stats() -> dict[str, Any]:
    """enqueued, written, dropped, spilled (totals over sinks, and by level), queue depth
    and high watermark, sink errors, enqueue latency, and a `sinks` breakdown."""
    return runtime().stats()


def flush(timeout: float = 5.0) -> bool:
    """Wait until every record was written (or dropped); True if so within `timeout`."""
    return runtime().flush(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Flush within the deadline and stop the workers (also run at interpreter exit)."""
    rt = state.rt
    if rt is None:
        return True
    ok = rt.shutdown(timeout)
    state.rt = None
    return ok


_registered: list[Any] = []


def register_metrics(registry: Any = None) -> Any:
    """Expose the client's figures as Prometheus metrics (`sluiceway_client_*`)."""
    from prometheus_client import REGISTRY

    from sluiceway.client._metrics import ClientCollector

    reg = registry or REGISTRY
    if registry is None and _registered:
        return _registered[0]
    collector = ClientCollector()
    reg.register(collector)
    if registry is None:
        _registered.append(collector)
    return collector
