"""The configured pipeline: level filter, record building, one worker per sink.

`emit` is the only code that runs on the caller's thread: it builds a dict and does a
non-blocking put into each sink's buffer. Everything else runs on worker threads.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sluiceway.buffer import BufferConfig, SpillDirLocked
from sluiceway.client._context import RequestContext, context_var
from sluiceway.client._ledger import Numbering, SinkLedger, source_id
from sluiceway.client._levels import DEFAULT_PROTECTED, level_number
from sluiceway.client._otel import trace_ids
from sluiceway.client._redact import DEFAULT_REDACT, Redactor
from sluiceway.client._sinks import StdoutSink
from sluiceway.client._worker import SinkWorker, percentiles

log = logging.getLogger("sluiceway.client")
_RESERVED = frozenset({"ts", "level", "logger", "msg"})
_SAMPLE_EVERY = 64  # time one call in 64: enough for a p99 without taxing every call


@dataclass
class Settings:
    sinks: list[Any] = field(default_factory=list)
    level: str | int = "INFO"
    queue_size: int = 10_000
    queue_bytes: int = 64 << 20
    when_full: str = "drop"
    drop: str = "newest"
    wait_ms: float = 0.0
    timeout: float | None = None
    spill_dir: Path = Path(".sluiceway-spill")
    spill_max_bytes: int = 1 << 30
    when_spill_full: str = "drop"
    fsync: str = "always"
    protected_levels: frozenset[str] = DEFAULT_PROTECTED
    redact: tuple[str, ...] = DEFAULT_REDACT
    redact_patterns: tuple[str, ...] = ()
    batch_size: int = 512
    max_retries: int = 10
    shutdown_timeout: float = 5.0
    name: str = "python"
    report_url: str | None = "auto"
    report_interval: float = 10.0
    trace_ids: bool = True  # OpenTelemetry trace_id/span_id inside an active span


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "sink"


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.min_level = level_number(s.level)
        self.protected = frozenset(p.upper() for p in s.protected_levels)
        redactor = Redactor(s.redact, patterns=s.redact_patterns) \
            if (s.redact or s.redact_patterns) else None
        self.workers: list[SinkWorker] = []
        seen: set[str] = set()
        for i, sink in enumerate(s.sinks or [StdoutSink()]):
            name = str(getattr(sink, "name", "") or type(sink).__name__)
            if name in seen:
                name = f"{name}#{i}"
            seen.add(name)
            self.workers.append(self._worker(sink, name, redactor))
        spill = s.when_full == "spill" and self.workers
        self.numbering = Numbering(self.workers[0].config.spill_dir if spill else None)
        self.ledgers: list[SinkLedger] = []
        for w in self.workers:
            led = SinkLedger(source_id(s.name, w.name, w.config.spill_dir), self.numbering)
            self.ledgers.append(led)
            w.start(led)
        self._epoch, self._next = self.numbering.epoch, self.numbering.next
        self._keep_epoch = s.when_full == "spill"
        self._puts = tuple((w.buffer.put, led.refused)
                           for w, led in zip(self.workers, self.ledgers, strict=True))
        self._trace_ids = trace_ids() if s.trace_ids else None
        self.internal_errors = 0
        self.calls = 0
        self.latency_ns: deque[int] = deque(maxlen=4096)
        self.started = time.time()
        self.id = f"{os.uname().nodename}:{os.getpid()}:{int(self.started * 1000)}"
        self._closed = False
        self._shutdown_ok = True
        self._shutdown_lock = threading.Lock()
        self._shutdown_thread: int | None = None  # ident of the thread shutting down
        self.stopped_by_lifespan = False
        self._heartbeat: threading.Thread | None = None
        self._hb_stop = threading.Event()
        self.heartbeats: Any = None  # the HeartbeatSender, when reporting
        if s.report_url:
            from sluiceway.client._heartbeat import heartbeat_sender

            sender = heartbeat_sender(self)
            if sender is not None:
                self.heartbeats = sender
                self._heartbeat = sender.thread
                sender.thread.start()

    def _worker(self, sink: Any, name: str, redactor: Redactor | None) -> SinkWorker:
        s = self.settings
        try:
            cfg = self._buffer_config(name)
            return SinkWorker(sink, name, cfg, redactor, batch_size=s.batch_size,
                              max_retries=s.max_retries)
        except SpillDirLocked as exc:
            # Another live process of the same app holds the directory: spill beside it
            # rather than refuse to log. Its records replay when this pid's dir is reused.
            cfg = replace(cfg, spill_dir=Path(str(cfg.spill_dir) + f"-pid{os.getpid()}"))
            log.warning("sluiceway: %s; spilling to %s instead", exc, cfg.spill_dir)
            return SinkWorker(sink, name, cfg, redactor, batch_size=s.batch_size,
                              max_retries=s.max_retries)

    def _buffer_config(self, sink_name: str) -> BufferConfig:
        s = self.settings
        return BufferConfig(
            max_items=s.queue_size, max_bytes=s.queue_bytes,
            when_full=s.when_full,  # type: ignore[arg-type]
            drop=s.drop,  # type: ignore[arg-type]
            drop_wait=s.wait_ms / 1000.0, block_timeout=s.timeout,
            spill_dir=Path(s.spill_dir) / _safe(sink_name) if s.when_full == "spill" else None,
            spill_max_bytes=s.spill_max_bytes, segment_bytes=min(64 << 20, s.spill_max_bytes),
            record_items=s.batch_size,
            when_spill_full=s.when_spill_full,  # type: ignore[arg-type]
            fsync=s.fsync)  # type: ignore[arg-type]

    # ---- the caller's path ------------------------------------------------------------

    def emit(self, level: str, logger: str, msg: str, bound: dict[str, Any] | None,
             fields: dict[str, Any] | None, exc: str | None = None) -> None:
        self.calls += 1
        sample = self.calls % _SAMPLE_EVERY == 0
        if sample:
            t0 = time.perf_counter_ns()
        rec_ts = time.time_ns()
        rec: dict[str, Any] = {"ts": rec_ts, "level": level, "logger": logger, "msg": msg}
        ctx = context_var.get()
        if ctx:
            rec.update(ctx)
            if type(ctx) is RequestContext:
                route = ctx.route()
                if route is not None:
                    rec["route"] = route
        if bound:
            rec.update(bound)
        if fields:
            rec.update(fields)
            if not _RESERVED.isdisjoint(fields):  # the record's own keys win
                rec.update(ts=rec_ts, level=level, logger=logger, msg=msg)
        if exc is not None:
            rec["exc"] = exc
        if self._trace_ids is not None:
            self._trace_ids(rec)
        if self._keep_epoch:  # a record that may outlive the process says its epoch
            rec["_ep"] = self._epoch
        rec["_seq"] = self._next()
        size = len(msg) + 160  # an estimate is enough for the byte bound
        protected = level in self.protected
        for put, refused in self._puts:
            if not put(rec, size, protected=protected, tag=level):
                refused(rec)
        if sample:
            self.latency_ns.append(time.perf_counter_ns() - t0)

    # ---- lifecycle --------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        ok = True
        for w in self.workers:
            ok = w.flush(max(0.0, deadline - time.monotonic())) and ok
        return ok

    @property
    def closed(self) -> bool:
        return self._closed

    def shutting_down_here(self) -> bool:
        """True while this very thread is inside `shutdown` (a signal handler running on
        top of it must not start another, nor end the process under it)."""
        return self._shutdown_thread == threading.get_ident()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush within the deadline (`shutdown_timeout`), then stop the workers. What is
        not delivered by then stays in the spill (spill mode) or is counted lost as
        `shutdown_timeout`; either way one line on stderr says how many. Idempotent."""
        with self._shutdown_lock:
            if self._closed:
                return self._shutdown_ok
            self._shutdown_thread = threading.get_ident()
            try:
                self._shutdown_ok = self._shutdown(timeout)
            finally:
                self._shutdown_thread = None
            return self._shutdown_ok

    def _shutdown(self, timeout: float | None) -> bool:
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        ok = self.flush(timeout)
        self._closed = True
        self._hb_stop.set()
        for w in self.workers:
            w.stop(timeout=0.5)
        if ok:
            self._stopped()
            return True
        lost = kept = 0
        for w in self.workers:
            n_lost, n_kept = w.leftovers()
            lost, kept = lost + n_lost, kept + n_kept
        parts = ([f"{lost} lost (counted as shutdown_timeout)"] if lost else []) + (
            [f"{kept} kept in the spill for the next start"] if kept else [])
        if parts:
            # stderr itself, not logging: at exit the handlers may be gone already
            _stderr(f"sluiceway: {lost + kept} records not delivered at exit within "
                    f"shutdown_timeout={timeout:g}s: {', '.join(parts)}")
        self._stopped()
        return False

    def _stopped(self) -> None:
        """After a clean stop: numbering goes on in the next run of a spill directory,
        and the server gets the settled figures in one last heartbeat."""
        self.numbering.stop()
        if self.heartbeats is not None:
            self.heartbeats.final()

    def child_copy(self) -> Runtime:
        """A fresh runtime for a forked child: new threads, locks and buffers; sinks
        rebuild their sockets/files; spill goes to a per-child directory."""
        for w in self.workers:
            w.buffer.forget_in_child()
        for sink in self.settings.sinks:
            hook = getattr(sink, "after_fork", None)
            if callable(hook):
                hook()
        s = replace(self.settings, report_url=self.settings.report_url,
                    spill_dir=Path(self.settings.spill_dir) / f"child-{os.getpid()}")
        return Runtime(s)

    # ---- figures ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        sinks = {w.name: w.stats() for w in self.workers}
        out: dict[str, Any] = {
            "enqueued": 0, "written": 0, "dropped": 0, "spilled": 0, "queue_depth": 0,
            "queue_high_watermark": 0, "queue_capacity": self.settings.queue_size,
            "sink_errors": 0, "spill_bytes": 0, "in_flight": 0,
            "enqueued_by_level": {}, "written_by_level": {}, "dropped_by_level": {},
            "spilled_by_level": {}, "dropped_by_reason": {},
        }
        for st in sinks.values():
            for key, src in (("enqueued", "enqueued"), ("written", "written"),
                             ("spilled", "spilled"), ("queue_depth", "depth"),
                             ("sink_errors", "errors"), ("spill_bytes", "spill_bytes"),
                             ("in_flight", "in_flight")):
                out[key] += st[src]
            out["queue_high_watermark"] = max(out["queue_high_watermark"],
                                              st["high_watermark"])
            _merge(out["enqueued_by_level"], st["enqueued_by_tag"])
            _merge(out["written_by_level"], st["written_by_level"])
            _merge(out["spilled_by_level"], st["spilled_by_tag"])
            _merge(out["dropped_by_reason"], st["dropped_by_reason"])
            _merge(out["dropped_by_reason"], st["lost_by_reason"])
            for lvl, reasons in st["dropped_by_tag"].items():
                _merge(out["dropped_by_level"], {lvl: sum(reasons.values())})
        out["dropped"] = sum(out["dropped_by_reason"].values())
        lat = [n / 1000 for n in list(self.latency_ns)]
        out["enqueue_latency_us"] = percentiles(lat)
        out["internal_errors"] = self.internal_errors
        out["when_full"] = self.settings.when_full
        out["sinks"] = sinks
        return out


def _stderr(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # closed or missing stderr: nowhere to say it
        pass


def _merge(into: dict[str, int], add: dict[str, int]) -> None:
    for k, v in add.items():
        into[k] = into.get(k, 0) + v


# ---- process-wide state ------------------------------------------------------------------

class _State:
    rt: Runtime | None = None
    lock = threading.Lock()


state = _State()


def install(settings: Settings) -> Runtime:
    with state.lock:
        old = state.rt
        if old is not None:
            # before the new one opens the same spill directories
            old.shutdown(timeout=1.0)
        rt = state.rt = Runtime(settings)
    return rt


def runtime() -> Runtime:
    rt = state.rt
    if rt is None:
        with state.lock:
            if state.rt is None:
                state.rt = Runtime(Settings())
            rt = state.rt
    return rt


def _after_fork_in_child() -> None:
    state.lock = threading.Lock()
    rt = state.rt
    if rt is not None:
        state.rt = rt.child_copy()


os.register_at_fork(after_in_child=_after_fork_in_child)
