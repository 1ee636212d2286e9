"""What the agent shows about itself: the /status document, /metrics text and heartbeats."""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

from sluiceway.model import quote

if TYPE_CHECKING:
    from sluiceway.agent._agent import Agent


def status(agent: Agent) -> dict[str, Any]:
    """The figures behind /status, /metrics and the heartbeat (one snapshot)."""
    s, cfg = agent.stats, agent.cfg
    q = agent.queue.snapshot()
    files = []
    for key, f in sorted(agent.positions.snapshot().items(), key=lambda kv: kv[1].path):
        files.append({"key": key, "path": f.path, "offset": f.committed,
                      "read_offset": f.read_pos, "size": f.size,
                      "lag_bytes": max(0, f.size - f.committed), "lag_lines": f.lag_lines,
                      "released": f.released})
    with s.lock:
        lines = {"read": s.lines_read, "enqueued": s.lines_enqueued,
                 "shipped": s.lines_shipped, "dropped": s.lines_dropped,
                 "spilled": s.lines_spilled, "lost": s.lines_lost,
                 "filtered": agent.filtered()}
        lost = dict(s.lost_by_reason)
        backend = {"ok": s.backend_ok, "state": s.backend_state,
                   "status": s.backend_status, "last_error": s.last_error, "url": cfg.url,
                   "last_error_ts": s.last_error_ts}
        counters = {"bytes_read": s.bytes_read, "bytes_shipped": s.bytes_shipped,
                    "batches_shipped": s.batches_shipped, "send_failures": s.send_failures,
                    "retries": s.retries, "file_rotations": s.file_rotations,
                    "file_truncations": s.file_truncations,
                    "truncated_bytes_lost": s.truncated_bytes_lost}
    return {
        "id": agent.id, "kind": "agent", "name": cfg.name, "host": socket.gethostname(),
        "pid": os.getpid(), "ts": time.time(), "uptime_s": time.time() - s.started,
        "interval_s": cfg.heartbeat_interval,
        "queue": {"depth": q["depth"], "capacity": q["capacity"], "bytes": q["bytes"],
                  "max_bytes": q["max_bytes"], "when_full": cfg.queue.when_full,
                  "high_watermark": q["high_watermark"], "in_flight": q["in_flight"],
                  "unit": "batches", "batch_max_lines": cfg.batch.max_lines,
                  "capacity_lines": cfg.queue.capacity, "drop": cfg.queue.drop,
                  "spill_pending": q["spill_pending"], "spill_full": q["spill_full"],
                  "spill_max_bytes": cfg.queue.spill_max_bytes,
                  "when_spill_full": cfg.queue.when_spill_full,
                  "spill_full_events": q["spill_full_events"]},
        "lines": lines, "lost_by_reason": lost, "spill_bytes": q["spill_bytes"],
        "backend": backend, "counters": counters, "files": files,
        # Every client's lanes (the top-level figures are the first one's), and Promtail's
        # request histogram: what /metrics serves under Promtail's names.
        "clients": [lane.summary() for lane in agent.lanes.all()],
        "request_durations": agent.lanes.durations.snapshot(),
        "filtered_by_reason": agent.filtered_by_reason(),
    }


def heartbeat(doc: dict[str, Any]) -> dict[str, Any]:
    """The ARCHITECTURE.md heartbeat: the status document minus the per-file detail."""
    keep = ("id", "kind", "name", "host", "pid", "ts", "interval_s", "lines",
            "lost_by_reason", "spill_bytes")
    out = {k: doc[k] for k in keep}
    q = doc["queue"]
    out["queue"] = {k: q[k] for k in ("depth", "capacity", "bytes", "max_bytes", "when_full",
                                      "high_watermark")}
    # The pipeline page draws depth/capacity as memory fill; batches waiting on disk are
    # reported as spill_bytes instead, or a draining spill would look like a full queue.
    out["queue"]["depth"] = max(0, q["depth"] - q["spill_pending"])
    out["backend"] = {k: doc["backend"][k] for k in ("ok", "last_error", "url")}
    return out


def _metric(out: list[str], name: str, kind: str, help_: str,
            samples: list[tuple[dict[str, str], float]]) -> None:
    full = f"sluiceway_agent_{name}"
    out.append(f"# HELP {full} {help_}")
    out.append(f"# TYPE {full} {kind}")
    for labels, value in samples:
        lab = ",".join(f"{k}={quote(v)}" for k, v in labels.items())
        out.append(f"{full}{{{lab}}} {value}" if lab else f"{full} {value}")


def metrics_text(doc: dict[str, Any]) -> str:
    """Prometheus text exposition of a status document."""
    out: list[str] = []
    ln, q, c = doc["lines"], doc["queue"], doc["counters"]
    for key, help_ in (("read", "lines read from inputs"),
                       ("enqueued", "lines accepted by the queue"),
                       ("shipped", "lines acknowledged by the backend"),
                       ("dropped", "lines dropped by the queue policy"),
                       ("spilled", "lines written to the disk spill"),
                       ("filtered", "lines removed on purpose by drop stages")):
        _metric(out, f"lines_{key}_total", "counter", help_, [({}, ln[key])])
    _metric(out, "lines_lost_total", "counter", "lines that will never arrive, by reason",
            [({"reason": r}, n) for r, n in sorted(doc["lost_by_reason"].items())]
            or [({"reason": "none"}, 0)])
    for key, help_ in (("bytes_read", "bytes read from files"),
                       ("bytes_shipped", "request body bytes acknowledged"),
                       ("batches_shipped", "push requests acknowledged"),
                       ("send_failures", "failed push attempts"),
                       ("retries", "push retries"),
                       ("file_rotations", "files rotated away or deleted"),
                       ("file_truncations", "files truncated in place"),
                       ("truncated_bytes_lost", "bytes a truncation took before they were read")):
        _metric(out, f"{key}_total", "counter", help_, [({}, c[key])])
    for key, help_ in (("depth", "batches queued (memory and disk)"),
                       ("capacity", "in-memory queue capacity in batches"),
                       ("bytes", "bytes queued in memory"), ("max_bytes", "in-memory byte cap"),
                       ("high_watermark", "highest queue depth seen"),
                       ("spill_pending", "batches on disk waiting to be sent")):
        _metric(out, f"queue_{key}", "gauge", help_, [({}, q[key])])
    _metric(out, "queue_capacity_lines", "gauge", "configured queue capacity in lines",
            [({}, q["capacity_lines"])])
    _metric(out, "queue_policy", "gauge", "the when_full policy in force (value 1)",
            [({"when_full": q["when_full"], "when_spill_full": q["when_spill_full"]}, 1)])
    _metric(out, "spill_bytes", "gauge", "bytes of spill segments on disk",
            [({}, doc["spill_bytes"])])
    _metric(out, "spill_max_bytes", "gauge", "disk cap of the spill",
            [({}, q["spill_max_bytes"])])
    _metric(out, "spill_full", "gauge", "1 while the spill is at its cap (fallback policy on)",
            [({}, int(q["spill_full"]))])
    _metric(out, "spill_full_events_total", "counter", "times the spill cap was reached",
            [({}, q["spill_full_events"])])
    _metric(out, "backend_up", "gauge", "1 when the last push succeeded",
            [({"url": doc["backend"]["url"]}, int(doc["backend"]["ok"]))])
    files = doc["files"]
    for key, name, help_ in (("offset", "offset_bytes", "bytes durable downstream"),
                             ("size", "size_bytes", "file size"),
                             ("lag_bytes", "lag_bytes", "bytes not yet durable downstream")):
        _metric(out, f"file_{name}", "gauge", help_,
                [({"path": f["path"]}, f[key]) for f in files])
    return "\n".join(out) + "\n"
