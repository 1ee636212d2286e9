"""What the agent shows about itself: the /status document, /metrics and heartbeats."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sluiceway.agent._promtail_metrics import promtail_metrics
from sluiceway.agent._queue import REASONS, renamed
from sluiceway.agent._tail import FileTailer
from sluiceway.buffer import DROP_REASONS as BUFFER_DROP_REASONS
from sluiceway.ship import LOSS_REASONS, Figures, QueueCollector

if TYPE_CHECKING:
    from sluiceway.agent._agent import Agent

# Shown at 0 from the first scrape (others appear when they happen).
DROP_REASONS = tuple(dict.fromkeys(REASONS.get(r, r) for r in BUFFER_DROP_REASONS))
LOST_REASONS = tuple(dict.fromkeys((*DROP_REASONS, "truncated", *LOSS_REASONS)))
# A reader blocked on the queue for longer than this is shown as waiting.
WAITING_AFTER_S = 0.25
# Heartbeats carry the files furthest behind, at most this many (they are for a page).
HEARTBEAT_FILES = 50


def status(agent: Agent) -> dict[str, Any]:
    """The figures behind /status, /metrics and the heartbeat (one snapshot)."""
    s, cfg = agent.stats, agent.cfg
    q = agent.queue.snapshot()
    d = agent.delivery.snapshot()
    waiting: dict[str, float] = {}
    pending: dict[str, int] = {}
    for inp in agent.inputs:
        if isinstance(inp, FileTailer):
            held = inp.pending()
            pending.update(held)
            waiting.update(dict.fromkeys(held, inp.waiting()))
    files = []
    for key, f in sorted(agent.positions.snapshot().items(), key=lambda kv: kv[1].path):
        files.append({"key": key, "path": f.path, "offset": f.committed,
                      "read_offset": f.read_pos, "size": f.size,
                      "lag_bytes": max(0, f.size - f.committed), "lag_lines": f.lag_lines,
                      "pending_lines": pending.get(key, 0), "released": f.released,
                      "waiting": waiting.get(key, 0.0) > WAITING_AFTER_S})
    lost: dict[str, int] = {}
    for table in (renamed(q["dropped_by_reason"]), d["lost_by_reason"], s.lost_by_reason):
        for r, n in table.items():
            lost[r] = lost.get(r, 0) + n
    with s.lock:
        read, bytes_read = s.lines_read, s.bytes_read
        counters = {"bytes_read": bytes_read, "file_rotations": s.file_rotations,
                    "file_truncations": s.file_truncations,
                    "truncated_bytes_lost": s.truncated_bytes_lost}
    counters.update(bytes_shipped=d["bytes_shipped"], batches_shipped=d["pushes"],
                    send_failures=d["send_failures"], retries=d["retries"])
    return {
        "id": agent.id, "kind": "agent", "name": cfg.name, "host": socket.gethostname(),
        "pid": os.getpid(), "ts": time.time(), "uptime_s": time.time() - s.started,
        "interval_s": cfg.heartbeat_interval,
        "queue": {"unit": "lines", "depth": q["depth"], "capacity": q["capacity"],
                  "high_watermark": q["high_watermark"], "in_flight": q["in_flight"],
                  "bytes": q["bytes"], "max_bytes": q["max_bytes"],
                  "when_full": cfg.queue.when_full, "drop": cfg.queue.drop,
                  "batch_max_lines": agent.batcher.max_lines,
                  "spill_pending": q["spill_pending"], "spill_full": q["spill_full"],
                  "spill_max_bytes": cfg.queue.spill_max_bytes,
                  "when_spill_full": cfg.queue.when_spill_full,
                  "spill_full_events": q["spill_full_events"], "waiting_s": q["waiting_s"]},
        "lines": {"read": read, "enqueued": q["enqueued"], "shipped": d["shipped"],
                  "dropped": q["dropped"], "spilled": q["spilled"],
                  "lost": sum(lost.values()), "filtered": agent.filtered()},
        "lost_by_reason": lost, "spill_bytes": q["spill_bytes"],
        "backend": {"ok": d["ok"], "state": d["state"], "status": d["last_status"],
                    "last_error": d["last_error"], "url": cfg.url,
                    "last_error_ts": d["last_error_ts"],
                    "last_success_ts": d["last_success_ts"]},
        "counters": counters, "files": files,
        "ledger": [agent.ledger.group({
            "reader": sum(i.emitting_lines for i in agent.inputs if isinstance(i, FileTailer)),
            "queue": agent.batcher.lines + q["depth"], "sending": q["in_flight"],
            "disk": q["spill_pending"], "file": agent.ledger.reread_backlog()})],
        # Every client's lanes (the figures above are the first one's).
        "clients": [lane.summary() for lane in agent.lanes.all()],
        "filtered_by_reason": agent.filtered_by_reason(),
    }


def heartbeat(doc: dict[str, Any]) -> dict[str, Any]:
    """The heartbeat's fields (`sluiceway.model.Heartbeat`, token aside) from a status
    document: the queue in lines, what waits on disk, the files furthest behind."""
    q, b = doc["queue"], doc["backend"]
    files = sorted(doc["files"], key=lambda f: (-f["lag_bytes"], f["path"]))[:HEARTBEAT_FILES]
    return {
        **{k: doc[k] for k in ("id", "kind", "name", "host", "pid", "ts", "interval_s",
                               "lines", "lost_by_reason", "spill_bytes", "ledger")},
        "queue": {**{k: q[k] for k in ("unit", "depth", "capacity", "high_watermark",
                                       "in_flight", "bytes", "max_bytes", "when_full",
                                       "spill_full", "spill_max_bytes", "waiting_s")},
                  "spill_lines": q["spill_pending"], "spill_bytes": doc["spill_bytes"]},
        "backend": {"ok": b["ok"], "state": b["state"], "url": b["url"],
                    "last_error": b["last_error"], "last_status": b["status"],
                    "last_success_ts": b["last_success_ts"]},
        "files": [{"path": f["path"], "lag_bytes": f["lag_bytes"],
                   "lag_lines": _behind(f), "waiting": f["waiting"]} for f in files],
    }


def _behind(f: dict[str, Any]) -> int | None:
    """Lines of a file not in the queue yet: read and waiting in the reader, plus those
    counted past its read offset (None when neither is known)."""
    if f["lag_lines"] is None:
        return f["pending_lines"] or None
    return int(f["pending_lines"] + f["lag_lines"])


def collector(agent: Agent) -> QueueCollector:
    """The agent's /metrics: the shared queue collector (one queue per lane: labelled
    `client` and `tenant` when there can be more than one), plus its inputs and files,
    and Promtail's names for them."""

    def figures() -> list[Figures]:
        lanes = agent.lanes
        out = []
        for lane in lanes.all():
            labels = {"client": lane.cfg.url, "tenant": lane.cfg.tenant or ""} \
                if lanes.labelled else {}
            # What inputs lost (a truncation) is the agent's, shown with the first lane.
            extra = dict(agent.stats.lost_by_reason) if lane.first else {}
            out.append(Figures(lane.queue.snapshot(), lane.delivery.snapshot(),
                               lane.delivery.latency.snapshot(), url=lane.cfg.url,
                               labels=labels, rename=REASONS, extra_lost=extra,
                               reasons=LOST_REASONS, drop_reasons=DROP_REASONS))
        return out

    return QueueCollector("sluiceway_agent", figures, lambda: _inputs(agent))


def _inputs(agent: Agent) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    doc = status(agent)
    yield from promtail_metrics(doc, [(lane.cfg.url, lane.delivery.latency.snapshot())
                                      for lane in agent.lanes.all()])
    c, ln = doc["counters"], doc["lines"]
    for key, help_ in (("read", "lines read from inputs"),
                       ("filtered", "lines removed on purpose by drop stages")):
        m = CounterMetricFamily(f"sluiceway_agent_lines_{key}", help_)
        m.add_metric([], float(ln[key]))
        yield m
    for key, help_ in (("bytes_read", "bytes read from files"),
                       ("file_rotations", "files rotated away or deleted"),
                       ("file_truncations", "files truncated in place"),
                       ("truncated_bytes_lost", "bytes a truncation took before they were read")):
        m = CounterMetricFamily(f"sluiceway_agent_{key}", help_)
        m.add_metric([], float(c[key]))
        yield m
    for key, name, help_ in (("offset", "offset_bytes", "bytes durable downstream"),
                             ("size", "size_bytes", "file size"),
                             ("lag_bytes", "lag_bytes", "bytes not yet durable downstream"),
                             ("lag_lines", "lag_lines",
                              "whole lines past the read offset (counted while waiting)"),
                             ("pending_lines", "pending_lines",
                              "lines read and waiting in the reader for room in the queue"),
                             ("waiting", "waiting", "1 while the file's reader waits for room")):
        g = GaugeMetricFamily(f"sluiceway_agent_file_{name}", help_, labels=["path"])
        for f in doc["files"]:
            if f[key] is not None:
                g.add_metric([f["path"]], float(f[key]))
        yield g
