"""Report this process's pipeline figures to a Sluiceway server (ARCHITECTURE.md §heartbeats)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Any

import httpx

from sluiceway.client._loki import LokiSink

if TYPE_CHECKING:
    from sluiceway.client._runtime import Runtime

log = logging.getLogger("sluiceway.client")
PATH = "/sluiceway/api/v1/heartbeat"


def heartbeat_payload(rt: Runtime) -> dict[str, Any]:
    s = rt.stats()
    put_drops: dict[str, int] = {}  # refused by a full queue, not lost on delivery
    for st in s["sinks"].values():
        for r, n in st["dropped_by_reason"].items():
            put_drops[r] = put_drops.get(r, 0) + n
    backend = next((w for w in rt.workers if hasattr(w.sink, "base_url")),
                   rt.workers[0] if rt.workers else None)
    return {
        "id": rt.id, "kind": "client", "name": rt.settings.name,
        "host": socket.gethostname(), "pid": os.getpid(), "ts": time.time(),
        "interval_s": rt.settings.report_interval,
        "queue": {"depth": s["queue_depth"], "capacity": s["queue_capacity"],
                  "bytes": sum(w["bytes"] for w in s["sinks"].values()),
                  "max_bytes": rt.settings.queue_bytes, "when_full": rt.settings.when_full,
                  "high_watermark": s["queue_high_watermark"]},
        "lines": {"read": s["enqueued"] + sum(put_drops.values()), "enqueued": s["enqueued"],
                  "shipped": s["written"], "dropped": sum(put_drops.values()),
                  "spilled": s["spilled"], "lost": s["dropped"]},
        "lost_by_reason": s["dropped_by_reason"], "spill_bytes": s["spill_bytes"],
        "backend": {"ok": backend is None or backend.state == "ok",
                    "last_error": backend.last_error if backend else None,
                    "url": str(getattr(backend.sink, "base_url", backend.name))
                    if backend else ""},
        "latency_us": {"enqueue_p99": s["enqueue_latency_us"]["p99"]},
    }


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


def run_heartbeat(rt: Runtime) -> None:
    base, auto = report_target(rt)
    if base is None:
        return
    url = base.rstrip("/") + PATH
    # Made once per process: the server keeps this process's card against other callers.
    token = secrets.token_hex(16)
    failing = False
    with report_client(rt, base) as http:
        while not rt._hb_stop.is_set():
            try:
                resp = http.post(url, json={**heartbeat_payload(rt), "token": token})
                ok = resp.status_code < 300
                err = f"HTTP {resp.status_code}: {resp.text.strip()[:300]}"
            except Exception as exc:  # the next beat tries again
                ok, err, resp = False, f"{type(exc).__name__}: {exc}", None
            if auto and resp is not None and resp.status_code in (404, 405):
                # a plain Loki has no pipeline page: say so once and stop
                log.info("sluiceway: %s has no heartbeat endpoint; heartbeats off", base)
                return
            if not ok and not failing:
                log.warning("sluiceway heartbeat to %s failed: %s", url, err)
            failing = not ok
            rt._hb_stop.wait(rt.settings.report_interval)
