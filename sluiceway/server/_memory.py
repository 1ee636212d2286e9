"""What the server holds in memory, part by part (`GET /sluiceway/api/v1/memory` and the
`sluiceway_memory_*` metrics), and the resident memory of its processes.

Each part is counted where it is held, with its peak since start and its configured bound:
the store's (heads, chunks being written, chunk cache, WAL queue), pushes in flight
(bodies read and their records, until answered), the pattern ingester's queue, live tail
buffers and the results cache. A push's bytes can be in more than one part at once (its
record is in flight and queued for the WAL), so parts need not add up to the RSS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sluiceway.store import MemoryPart

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def memory_parts(ctx: Any) -> dict[str, MemoryPart]:
    """Every part of `ctx` (a `ServerContext`) now."""
    parts: dict[str, MemoryPart] = {}
    if ctx.opened_store is not None:
        parts.update(ctx.opened_store.memory.parts())
    parts["pushes_in_flight"] = ctx.inflight.held.view()
    patterns = ctx.patterns
    if patterns is not None:
        parts["pattern_queue"] = MemoryPart(patterns.queued_bytes, patterns.peak_queued_bytes,
                                            patterns.max_queued_bytes)
    tail = ctx.hub.buffered_bytes()
    parts["tail"] = MemoryPart(tail, tail, 0)  # bounded per session: max_tail_buffer_size
    cache = ctx.results_cache
    if cache is not None:
        parts["results_cache"] = MemoryPart(cache.nbytes, cache.nbytes, cache.max_bytes)
    return parts


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def _role(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    if b"resource_tracker" in cmd:
        return "resource_tracker"
    if b"spawn_main" in cmd or b"sluiceway.patterns" in cmd:
        return "pattern_miner"
    return "ingest_worker"  # forked from the server: its command line


def processes() -> list[dict[str, Any]]:
    """This process and its children (Linux's /proc; empty elsewhere): role, pid, RSS and
    its high-water mark."""
    me = os.getpid()
    pids = [me]
    for task in Path(f"/proc/{me}/task").glob("*/children"):
        try:
            pids += [int(x) for x in task.read_text().split()]
        except (OSError, ValueError):
            continue
    out = []
    for pid in pids:
        st = _status(pid)
        if st:
            out.append({"role": "server" if pid == me else _role(pid), "pid": pid,
                        "rss": st.get("VmRSS", 0), "peak_rss": st.get("VmHWM", 0)})
    return out


def memory_report(ctx: Any) -> dict[str, Any]:
    procs = processes()
    return {"parts": {k: v.to_json() for k, v in memory_parts(ctx).items()},
            "processes": procs, "rss": sum(p["rss"] for p in procs)}


class MemoryCollector(Collector):
    """`sluiceway_memory_bytes{part}` (now), `_peak_bytes{part}` and `_limit_bytes{part}`
    (parts with a bound of their own), `sluiceway_process_tree_resident_memory_bytes{role}`."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def collect(self):  # type: ignore[no-untyped-def]
        parts = memory_parts(self.ctx)
        now = GaugeMetricFamily("sluiceway_memory_bytes", "Bytes a part of the server holds",
                                labels=["part"])
        peak = GaugeMetricFamily("sluiceway_memory_peak_bytes",
                                 "The most a part of the server held since start",
                                 labels=["part"])
        limit = GaugeMetricFamily("sluiceway_memory_limit_bytes",
                                  "The configured bound of a part", labels=["part"])
        for name, p in parts.items():
            now.add_metric([name], p.bytes)
            peak.add_metric([name], p.peak)
            if p.limit:
                limit.add_metric([name], p.limit)
        yield from (now, peak, limit)
        rss = GaugeMetricFamily("sluiceway_process_tree_resident_memory_bytes",
                                "RSS of the server and its child processes, by role",
                                labels=["role"])
        by_role: dict[str, int] = {}
        for proc in processes():
            by_role[proc["role"]] = by_role.get(proc["role"], 0) + proc["rss"]
        for role, v in sorted(by_role.items()):
            rss.add_metric([role], v)
        yield rss
