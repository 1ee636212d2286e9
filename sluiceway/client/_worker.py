"""One worker per sink: its own buffer and thread running the one delivery loop of
`sluiceway.ship`, with the sink as its deliverer.

A sink that raises or hangs only ever holds up its own thread; callers see nothing
but their buffer's policy (drop, block with timeout, or spill).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sluiceway.buffer import Buffer, BufferConfig, OrjsonCodec
from sluiceway.client._errors import SinkConfigError, SinkRejected, SinkRetryable, SinkTooLarge
from sluiceway.client._ledger import SinkLedger
from sluiceway.ship import DeliveryLoop, Part, RetryPolicy
from sluiceway.wire import PushAnswer

log = logging.getLogger("sluiceway.client")
Record = dict[str, Any]
# Backoff between attempts of a failing sink: 0.25 s doubling to 30 s (jittered).
MIN_BACKOFF, MAX_BACKOFF = 0.25, 30.0


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    s = sorted(samples)
    return {"p50": s[len(s) // 2], "p99": s[min(len(s) - 1, int(len(s) * 0.99))],
            "max": s[-1]}


class _RedactingCodec(OrjsonCodec):
    """Spill files must not hold what the sinks would never see: redact before disk."""

    def __init__(self, redact: Callable[[Record], Record]) -> None:
        self.redact = redact

    def encode(self, items: list[Any]) -> bytes:
        return super().encode([self.redact(r) for r in items])


def answer_of(exc: BaseException | None) -> PushAnswer:
    """What a sink's `write_batch` outcome means, in the loop's terms."""
    if exc is None:
        return PushAnswer("shipped", 0)
    detail = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, SinkTooLarge):
        return PushAnswer("too_large", 0, "too_large", detail)
    if isinstance(exc, SinkRejected):
        if exc.lost is not None:
            return PushAnswer("partial", 0, exc.reason, detail, ignored=sum(exc.lost.values()),
                              by_reason=exc.lost)
        return PushAnswer("rejected", 0, exc.reason, detail)
    if isinstance(exc, SinkConfigError):
        return PushAnswer("config_error", exc.status or 0, exc.reason, detail)
    if isinstance(exc, SinkRetryable):
        return PushAnswer("retry", exc.status or 0, exc.reason, detail, exc.retry_after)
    return PushAnswer("retry", 0, "sink_error", detail)


class SinkDeliverer:
    """A sink as the loop's deliverer: records (redacted first) in one part, counted by
    level; a part the sink finds too large is cut in halves.

    A sink that speaks the loop's terms itself (`send_records(records, part) ->
    PushAnswer`, as the LokiSink does) is called that way; any other through
    `write_batch` and the exceptions of `_errors.py`.
    """

    def __init__(self, sink: Any, redact: Callable[[Record], Record] | None) -> None:
        self.sink = sink
        self.redact = redact
        self._native = getattr(sink, "send_records", None)

    def parts(self, items: list[Record]) -> list[Part]:
        records = [self.redact(r) for r in items] if self.redact is not None else items
        cut = getattr(self.sink, "ledger_parts", None)
        if cut is not None:  # a sink whose pushes carry the numbers in a bounded header
            return [_part(rs) for rs in cut(records)]
        return [_part(records)]

    def send(self, part: Part) -> PushAnswer:
        if self._native is not None:
            ans: PushAnswer = self._native(part.payload, part)
            return ans
        try:
            self.sink.write_batch(part.payload)
        except Exception as exc:
            return answer_of(exc)
        return answer_of(None)

    def split(self, part: Part) -> list[Part] | None:
        records: list[Record] = part.payload
        if len(records) < 2:
            return None
        half = len(records) // 2
        return [_part(records[:half]), _part(records[half:])]


def _part(records: list[Record]) -> Part:
    return Part(records, len(records), [str(r.get("level")) for r in records])


class SinkWorker:
    def __init__(self, sink: Any, name: str, config: BufferConfig,
                 redact: Callable[[Record], Record] | None, *, batch_size: int = 512,
                 max_retries: int = 10) -> None:
        self.sink = sink
        self.name = name
        self.config = config
        self.ledger: SinkLedger | None = None  # set by the runtime before start()
        self._lineage = False
        self.buffer: Buffer[Record] = Buffer(config, name=name,
                                             codec=_RedactingCodec(redact) if redact else None,
                                             on_dropped=self._dropped)
        self.redact = redact
        self.batch_size = int(getattr(sink, "max_batch", batch_size) or batch_size)
        target = getattr(sink, "url", None)
        self.loop: DeliveryLoop[Record] = DeliveryLoop(
            self.buffer, SinkDeliverer(sink, redact), who=f"sluiceway sink {name}",
            target=str(target or name), logger=log,
            retry=RetryPolicy(min_backoff=MIN_BACKOFF, max_backoff=MAX_BACKOFF,
                              max_retries=max_retries),
            max_units=self.batch_size, max_bytes=1 << 62,
            linger=float(getattr(sink, "batch_wait", 0.0) or 0.0), on_lost=self._lost,
            on_done=self._done)
        self._hurry_lock = threading.Lock()
        self._thread = threading.Thread(target=self.loop.run, daemon=True,
                                        name=f"sluiceway-sink-{name}")

    def start(self, ledger: SinkLedger | None) -> None:
        self.ledger = ledger
        if ledger is not None and hasattr(self.sink, "ledger_source"):
            self.sink.ledger_source = ledger.source  # its pushes carry the numbers
            self.sink.ledger_epoch = ledger.numbering.epoch  # of records without `_ep`
        # a sink that hands its lines on (a file an agent tails) says how far it got
        self._lineage = ledger is not None and bool(getattr(self.sink, "lineage", False))
        self._thread.start()

    def _dropped(self, items: list[Record], reason: str) -> None:
        if self.ledger is not None:
            self.ledger.dropped(items, reason)

    def _done(self, items: list[Record]) -> None:
        if self._lineage and self.ledger is not None:
            self.ledger.handed(items)

    def _lost(self, part: Part, gone: dict[str, int]) -> None:
        if self.ledger is not None:
            self.ledger.lost(part, gone)

    # ---- lifecycle --------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        with self._hurry_lock:
            self.loop.hurry += 1
        try:
            return self.buffer.join(timeout)
        finally:
            with self._hurry_lock:
                self.loop.hurry -= 1

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread; in spill mode what is left goes to disk for the next start."""
        self.loop.stop.set()
        self._thread.join(timeout)
        self.buffer.close(persist=True, timeout=timeout)
        if not self._thread.is_alive():
            close = getattr(self.sink, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("sluiceway sink %s: close failed", self.name)

    def leftovers(self) -> tuple[int, int]:
        """After `stop`: (records lost now, records kept in the spill). What is still in
        memory is counted lost as `shutdown_timeout`."""
        b = self.buffer.stats()
        if self.config.when_full == "spill":
            on_disk = sum(x.count for x in self.loop.holding if x.source == "disk")
            lost = b["in_memory"] + b["in_flight"] - on_disk
            kept = b["depth"] + b["spill_pending"] - b["in_memory"] + on_disk
        else:
            lost, kept = b["depth"] + b["in_flight"] + b["spill_pending"], 0
        self.loop.stats.count_lost("shutdown_timeout", lost)
        if self.ledger is not None:
            self.ledger.unknown(lost)
        return lost, kept

    def stats(self) -> dict[str, Any]:
        b = self.buffer.stats()
        d = self.loop.snapshot()
        return {
            **b,
            "written": d["shipped"],
            "written_by_level": d["shipped_by_tag"],
            "lost_by_reason": d["lost_by_reason"],
            "lost_by_level": d["lost_by_tag"],
            "errors": d["errors"], "consecutive_failures": self.loop.stats.failed_attempts,
            "state": d["state"], "last_status": d["last_status"],
            "last_error": d["last_error"], "last_success_ts": d["last_success_ts"],
            "write_ms": percentiles(list(self.loop.stats.write_ms)),
            "stalled_s": d["stalled_s"],
        }
