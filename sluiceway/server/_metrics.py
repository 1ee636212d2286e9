"""Prometheus metrics of the server (its own registry, so several apps can share a process)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluiceway.cluster import ClusterNode
from sluiceway.server._ledger import Ledger
from sluiceway.server._tail import TailHub
from sluiceway.store import Store


class ServerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.lines_received = Counter("sluiceway_distributor_lines_received_total",
                                      "Lines accepted by the distributor", ["tenant"], registry=r)
        self.bytes_received = Counter("sluiceway_distributor_bytes_received_total",
                                      "Line bytes accepted by the distributor", ["tenant"],
                                      registry=r)
        self.lines_rejected = Counter("sluiceway_discarded_samples_total",
                                      "Lines rejected, by reason (Loki's discarded_samples)",
                                      ["tenant", "reason"], registry=r)
        self.query_blocks = Counter("sluiceway_query_blocks_read_total",
                                    "Blocks of log lines read by queries", registry=r)
        self.queries_cancelled = Counter("sluiceway_queries_cancelled_total",
                                         "Queries stopped because their client disconnected",
                                         registry=r)
        self.requests = Histogram("sluiceway_request_duration_seconds",
                                  "HTTP request latency", ["route", "status"], registry=r,
                                  buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                           2.5, 5, 10, 30, 60))

    def bind_store(self, store: Store) -> None:
        self.registry.register(_StoreCollector(store))

    def bind_ledger(self, ledger: Ledger) -> None:
        if getattr(self, "_ledger_bound", False):
            return
        self._ledger_bound = True
        self.registry.register(_LedgerCollector(ledger))

    def bind_cluster(self, node: ClusterNode) -> None:
        self.registry.register(_ClusterCollector(node))

    def bind_tail(self, hub: TailHub) -> None:
        self.registry.register(_TailCollector(hub))

    def bind_patterns(self, ctx: Any) -> None:
        """`ctx.patterns` (a `PatternService` or None) as it is when scraped."""
        self.registry.register(_PatternCollector(ctx))


class _ClusterCollector(Collector):
    """Cluster mode: what this process's distributor published and its ingester
    applied, the partitions it owns, and the lines its heads refused after the push was
    acked (too far behind their stream: counted here, never answered to the client)."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def collect(self):  # type: ignore[no-untyped-def]
        n = self.node
        ing = n.ingester
        for name, doc, value in (
                ("sluiceway_cluster_published_total", "Push parts acked by JetStream.",
                 n.publisher.published),
                ("sluiceway_cluster_publish_failures_total",
                 "Push parts JetStream did not ack (the push was answered 503).",
                 n.publisher.failed),
                ("sluiceway_cluster_records_applied_total",
                 "Partition messages applied to this process's heads.",
                 ing.records if ing else 0),
                ("sluiceway_cluster_refused_lines_total",
                 "Lines of acked pushes the heads refused (entry too far behind).",
                 ing.refused_lines if ing else 0),
                ("sluiceway_cluster_partition_takeovers_total",
                 "Partitions this process took (start, rebalancing, failover).",
                 ing.takeovers if ing else 0)):
            c = CounterMetricFamily(name.removesuffix("_total"), doc)
            c.add_metric([], value)
            yield c
        g = GaugeMetricFamily("sluiceway_cluster_partitions_owned",
                              "Partitions this process consumes now.")
        g.add_metric([], len(ing.owned()) if ing else 0)
        yield g


class _PatternCollector(Collector):
    """Lines of stored pushes that the pattern ingester did not mine (the lines are
    stored all the same: only their share in `/patterns` is missing)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def collect(self):  # type: ignore[no-untyped-def]
        skipped = CounterMetricFamily(
            "sluiceway_pattern_lines_skipped", "Lines of stored pushes not mined for "
            "patterns: queue_full (the miner fell behind), miner_down", labels=["reason"])
        service = self.ctx.patterns
        for reason, n in sorted((service.skipped if service else {}).items()):
            skipped.add_metric([reason], n)
        yield skipped


class _LedgerCollector(Collector):
    """The ledger per tenant and source (epochs summed), computed at scrape time."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def collect(self):  # type: ignore[no-untyped-def]
        fams = {name: GaugeMetricFamily(f"sluiceway_ledger_{name}_lines", help_,
                                        labels=["tenant", "source"])
                for name, help_ in (
                    ("unexplained", "numbered lines neither stored, nor counted lost, nor "
                                    "held by a producer (0 in a healthy stack)"),
                    ("emitted", "lines the source numbered (as of its last report)"),
                    ("stored", "distinct numbered lines the server stored"),
                    ("in_flight", "lines the producers hold (queues, spill, files)"))}
        lost = GaugeMetricFamily("sluiceway_ledger_lost_lines",
                                 "numbered lines counted lost, by the hop and reason",
                                 labels=["tenant", "source", "hop", "reason"])
        unattributed = GaugeMetricFamily("sluiceway_ledger_unattributed_lines",
                                         "lines stored without numbers", labels=["tenant"])
        for tenant in self.ledger.tenant_names():
            ans = self.ledger.answer([tenant])
            per: dict[str, dict[str, int]] = {}
            per_lost: dict[tuple[str, str, str], int] = {}
            for r in ans["sources"]:
                row = per.setdefault(r["source"], dict.fromkeys(fams, 0))
                for name in fams:
                    row[name] += r[name]
                for x in r["lost_by"]:
                    k = (r["source"], x["hop"], x["reason"])
                    per_lost[k] = per_lost.get(k, 0) + x["lines"]
            for src, row in per.items():
                for name, fam in fams.items():
                    fam.add_metric([tenant, src], row[name])
            for (src, hop, reason), n in per_lost.items():
                lost.add_metric([tenant, src, hop, reason], n)
            unattributed.add_metric([tenant], ans["unattributed"])
        yield from fams.values()
        yield lost
        yield unattributed
        yield CounterMetricFamily("sluiceway_ledger_bad_headers",
                                  "pushes whose X-Sluiceway-Ledger header could not be used",
                                  value=self.ledger.bad_headers)


class _TailCollector(Collector):
    """Live tail sessions, what they hold, and what slow clients lost."""

    def __init__(self, hub: TailHub) -> None:
        self.hub = hub

    def collect(self):  # type: ignore[no-untyped-def]
        hub = self.hub
        tenants = sorted({t for s in list(hub.sessions) for t in s.tenants})
        sessions = GaugeMetricFamily("sluiceway_tail_sessions", "Open live tail sessions",
                                     labels=["tenant"])
        for t in tenants:
            sessions.add_metric([t], hub.count(t))
        yield sessions
        yield GaugeMetricFamily("sluiceway_tail_buffered_bytes",
                                "Bytes of lines held for live tail clients (all sessions)",
                                value=hub.buffered_bytes())
        dropped = CounterMetricFamily(
            "sluiceway_tail_dropped_entries", "Entries not sent to a live tail client that "
            "did not keep up (listed to it in dropped_entries)", labels=["tenant"])
        for t, n in sorted(hub.dropped.items()):
            dropped.add_metric([t], n)
        yield dropped
        refused = CounterMetricFamily(
            "sluiceway_tail_refused", "Live tails refused by max_concurrent_tail_requests",
            labels=["tenant"])
        for t, n in sorted(hub.refused.items()):
            refused.add_metric([t], n)
        yield refused


class _StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self):  # type: ignore[no-untyped-def]
        s = self.store
        values = {
            "sluiceway_wal_records_logged_total": ("WAL records written", s.wal.records),
            "sluiceway_wal_logged_bytes_total": ("WAL bytes written", s.wal.bytes),
            "sluiceway_wal_fsyncs_total": ("WAL fsync calls", s.wal.syncs),
            "sluiceway_wal_write_failures_total": ("WAL writes that failed (503)",
                                                   s.wal.failures),
            "sluiceway_chunks_flushed_total": ("Chunks written", s.chunks_flushed),
            "sluiceway_chunk_flush_failures_total": ("Chunk writes that failed",
                                                     s.flush_failures),
            "sluiceway_retention_chunks_deleted_total": ("Chunks deleted by retention",
                                                         s.retention_deleted),
            "sluiceway_delete_lines_removed_total": (
                "Lines the compactor removed from chunks for delete requests (Loki's delete "
                "API)", s.lines_deleted),
            "sluiceway_index_garbage_deleted_total": (
                "Chunks and index objects deleted for good, retention_delete_delay after "
                "they were taken out of service", s.garbage_deleted),
            "sluiceway_compactor_orphan_chunks_deleted_total": (
                "Chunk objects no index object named (a crash between a chunk and its index "
                "object), deleted by the compactor retention_delete_delay after they were "
                "written", s.orphans_deleted),
            "sluiceway_compactor_orphan_bytes_deleted_total": (
                "Bytes of the orphan chunk objects the compactor deleted",
                s.orphan_bytes_deleted),
            "sluiceway_chunk_cache_hits_total": ("Chunk cache hits", s.cache.hits),
            "sluiceway_chunk_cache_misses_total": ("Chunk cache misses", s.cache.misses),
            "sluiceway_wal_records_lost_total": (
                "Damaged WAL records skipped at replay (torn, never acknowledged tails not "
                "counted)", s.wal_records_lost),
            "sluiceway_wal_lines_lost_total": (
                "Lines in damaged WAL records, as far as their bytes still tell",
                s.wal_lines_lost),
        }
        for name, (doc, v) in values.items():
            yield CounterMetricFamily(name.removesuffix("_total"), doc, value=v)
        yield from _tenant_counters(s)
        streams = GaugeMetricFamily("sluiceway_streams", "Streams known", labels=["tenant"])
        objects = GaugeMetricFamily("sluiceway_index_objects", "Index objects in service (not "
                                    "superseded)", labels=["tenant"])
        unnamed = GaugeMetricFamily(
            "sluiceway_store_unnamed_chunks", "Chunk objects no index object names whose "
            "lines are served nowhere else (an index object lost?), kept by the orphan "
            "sweep at its last pass; `sluiceway server --recover-chunks` takes them back",
            labels=["tenant"])
        for t, ts in list(s.tenants.items()):
            streams.add_metric([t], len(ts.streams))
            objects.add_metric([t], ts.index.object_count())
        for t, (n, _bytes) in sorted(list(s.unnamed_kept.items())):
            unnamed.add_metric([t], n)
        yield streams
        yield objects
        yield unnamed
        wal = GaugeMetricFamily("sluiceway_wal_bytes", "Bytes in WAL segments on disk",
                                value=s.wal.size_bytes())
        yield wal
        yield GaugeMetricFamily("sluiceway_chunk_flush_failing",
                                "1 while chunks cannot be written (the flusher backs off)",
                                value=int(s.flush_failing))


def _tenant_counters(s: Store) -> Iterator[CounterMetricFamily]:
    lost = CounterMetricFamily(
        "sluiceway_index_records_lost", "Index records lost: damaged records of index "
        "objects (and of a migrated version-1 index log, whose torn tail is not counted), "
        "and the records of an index object gone while in service", labels=["tenant"])
    readded = CounterMetricFamily(
        "sluiceway_index_chunks_readded", "Chunk files a damaged index no longer named, "
        "taken back (their stream's labels were known)", labels=["tenant"])
    out = CounterMetricFamily(
        "sluiceway_chunks_quarantined", "Chunks taken out of service: corrupt (moved to "
        "quarantine/corrupt), unindexed (labels unknown, moved to quarantine/unindexed), "
        "missing (named by the index, not on disk), unreadable (not named by a damaged "
        "index and its bytes cannot be read: left in place)", labels=["tenant", "reason"])
    for t, ts in list(s.tenants.items()):
        lost.add_metric([t], ts.index_records_lost)
        readded.add_metric([t], ts.chunks_readded)
        for reason, n in list(ts.chunks_quarantined.items()):
            out.add_metric([t, reason], n)
    yield from (lost, readded, out)


class RequestMetricsMiddleware:
    """Latency by route and status; plain ASGI, cheaper than BaseHTTPMiddleware per request."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "other")
            self.metrics.requests.labels(path, str(status[0])).observe(time.perf_counter() - t0)
