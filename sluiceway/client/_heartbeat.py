"""Report this process's pipeline to a Sluiceway server: a `sluiceway.model.Heartbeat`
sent by `sluiceway.ship.HeartbeatSender` (ARCHITECTURE.md §heartbeats).

The card shows the queue and the counters of the sink that ships to the reported
server (the first LokiSink; else the first sink), in records; `lines.read` is every
record handed to that sink (accepted, or refused by its queue).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import httpx

from sluiceway.client._loki import LokiSink
from sluiceway.client._sinks import RotatingFileSink
from sluiceway.ship import HeartbeatSender

if TYPE_CHECKING:
    from sluiceway.client._runtime import Runtime
    from sluiceway.client._worker import SinkWorker

log = logging.getLogger("sluiceway.client")
# Queue drop reasons of records refused at the door (the others were accepted first).
REFUSED = frozenset({"full", "timeout", "spill_full", "spill_backlog", "closed"})


def primary(rt: Runtime) -> SinkWorker | None:
    """The sink the card is about: the first LokiSink, else the first sink."""
    return next((w for w in rt.workers if isinstance(w.sink, LokiSink)),
                rt.workers[0] if rt.workers else None)


def heartbeat_payload(rt: Runtime) -> dict[str, Any]:
    """The heartbeat's fields (token aside)."""
    s = rt.stats()
    w = primary(rt)
    st = s["sinks"][w.name] if w is not None else None
    queue: dict[str, Any] = {"capacity": rt.settings.queue_size, "depth": 0,
                             "max_bytes": rt.settings.queue_bytes,
                             "when_full": rt.settings.when_full}
    lines: dict[str, int] = {}
    lost: dict[str, int] = {}
    backend: dict[str, Any] | None = None
    if w is not None and st is not None:
        queue.update(depth=st["depth"], capacity=st["capacity"],
                     high_watermark=st["high_watermark"], in_flight=st["in_flight"],
                     bytes=st["bytes"], max_bytes=st["max_bytes"],
                     spill_lines=st["spill_pending"], spill_bytes=st["spill_bytes"],
                     spill_max_bytes=st["spill_max_bytes"], spill_full=st["spill_full"])
        lost = {**st["dropped_by_reason"]}
        for r, n in st["lost_by_reason"].items():
            lost[r] = lost.get(r, 0) + n
        refused = sum(n for r, n in st["dropped_by_reason"].items() if r in REFUSED)
        lines.update(read=st["enqueued"] + refused, enqueued=st["enqueued"],
                     shipped=st["written"], dropped=st["dropped"], spilled=st["spilled"],
                     lost=sum(lost.values()))
        backend = {"ok": st["state"] == "ok", "state": st["state"],
                   "url": str(getattr(w.sink, "base_url", w.name)),
                   "last_error": st["last_error"], "last_status": st["last_status"],
                   "last_success_ts": st["last_success_ts"]}
    return {
        "ledger": ledger_groups(rt, s),
        "id": rt.id, "kind": "client", "name": rt.settings.name,
        "host": socket.gethostname(), "pid": os.getpid(), "ts": time.time(),
        "interval_s": rt.settings.report_interval, "queue": queue, "lines": lines,
        "lost_by_reason": lost, "spill_bytes": queue.get("spill_bytes", 0),
        "backend": backend,
        "latency_us": {"enqueue_p99": s["enqueue_latency_us"]["p99"]},
    }


def ledger_groups(rt: Runtime, s: dict[str, Any]) -> list[dict[str, Any]]:
    """One ledger group per Loki sink that pushes to the server the heartbeats go to
    (a sink pushing elsewhere would read there as all unexplained), and per file sink
    whose lines carry their numbers (an agent ships them on: lineage)."""
    base, _ = report_target(rt)
    out = []
    for w, led in zip(rt.workers, rt.ledgers, strict=True):
        sink = w.sink
        if isinstance(sink, LokiSink) and sink.ledger_source and base is not None \
                and sink.base_url == base.rstrip("/"):
            out.append(led.report(s["sinks"][w.name]))
        elif isinstance(sink, RotatingFileSink) and sink.lineage and sink.ledger_source:
            out.append(led.report(s["sinks"][w.name], lineage=True))
    return out


def report_target(rt: Runtime) -> tuple[str | None, bool]:
    """(base URL, auto): `report_url="auto"` means the first Loki sink's server."""
    url = rt.settings.report_url
    if url != "auto":
        return url, False
    for w in rt.workers:
        base = getattr(w.sink, "base_url", None)
        if isinstance(base, str):
            return base, True
    return None, True


def report_client(rt: Runtime, base: str) -> httpx.Client:
    """Heartbeats to a Loki sink's own server carry its tenant and credentials."""
    for w in rt.workers:
        if isinstance(w.sink, LokiSink) and w.sink.base_url == base.rstrip("/"):
            return w.sink.report_client(2.0)
    return httpx.Client(timeout=2.0)


def heartbeat_sender(rt: Runtime) -> HeartbeatSender | None:
    base, auto = report_target(rt)
    if base is None:
        return None
    return HeartbeatSender(base, lambda: heartbeat_payload(rt), lambda: report_client(rt, base),
                           rt.settings.report_interval, rt._hb_stop, auto=auto, log=log)
