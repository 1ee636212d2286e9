"""Promtail's metric names, served beside the agent's own on /metrics (by the agent's one
collector), so dashboards and alerts made for Promtail keep working:

- `promtail_sent_entries_total{host}`, `promtail_sent_bytes_total{host}`: lines and body
  bytes each client's backend acknowledged (`host` is the URL's host:port);
- `promtail_dropped_entries_total{host,reason,tenant}`: lines given up, with Promtail's
  reasons (`rate_limited`, `stream_limited`, `line_too_long`, else `ingester_error`);
- `promtail_request_duration_seconds{host,status_code}`: the push latency histogram of
  `sluiceway.ship` (the one its loops keep for `sluiceway_agent_push_duration_seconds`),
  summed over a host's lanes;
- `promtail_read_bytes_total{path}` (read offset) and `promtail_file_bytes_total{path}`
  (file size), gauges as Promtail has them; `promtail_files_active_total`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from sluiceway.ship import LatencySnapshot, latency_family, merge_latency

REASONS = {"rate_limited": "rate_limited", "per_stream_rate_limit": "stream_limited",
           "stream_limited": "stream_limited", "line_too_long": "line_too_long",
           "too_large": "line_too_long"}
# Shown at 0 for each client and tenant from the start.
DROP_REASONS = ("ingester_error", "line_too_long", "rate_limited", "stream_limited")
Latency = tuple[str, LatencySnapshot]  # a lane's URL, its `LatencyHistogram.snapshot()`


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def promtail_metrics(doc: dict[str, Any], latency: list[Latency]) -> Iterator[Any]:
    """The Promtail-named metric families of a status document and the lanes' latency."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    sent: dict[str, float] = defaultdict(float)
    sent_bytes: dict[str, float] = defaultdict(float)
    dropped: dict[tuple[str, str, str], float] = defaultdict(float)
    for c in doc.get("clients") or []:
        host, tenant = host_of(c["url"]), c.get("tenant") or ""
        sent[host] += c["shipped"]
        sent_bytes[host] += c.get("bytes_shipped", 0)
        for reason in DROP_REASONS:
            dropped[(host, reason, tenant)] += 0
        for reason, n in c["lost_by_reason"].items():
            dropped[(host, REASONS.get(reason, "ingester_error"), tenant)] += n
    m = CounterMetricFamily("promtail_sent_entries_total",
                            "Number of log entries sent to the ingester.", labels=["host"])
    for h, v in sent.items():
        m.add_metric([h], v)
    yield m
    m = CounterMetricFamily("promtail_sent_bytes_total", "Number of bytes sent.",
                            labels=["host"])
    for h, v in sent_bytes.items():
        m.add_metric([h], v)
    yield m
    m = CounterMetricFamily("promtail_dropped_entries_total",
                            "Number of log entries dropped because failed to be sent to the "
                            "ingester after all retries.", labels=["host", "reason", "tenant"])
    for (h, r, t), v in sorted(dropped.items()):
        m.add_metric([h, r, t], v)
    yield m
    # The ship's push latency histogram, by host: a host's lanes (tenants) summed.
    by_host: dict[str, list[LatencySnapshot]] = defaultdict(list)
    for url, snap in latency:
        by_host[host_of(url)].append(snap)
    yield latency_family("promtail_request_duration_seconds", "Duration of send requests.",
                         ["host"], [([h], merge_latency(snaps))
                                    for h, snaps in sorted(by_host.items())])
    files = doc.get("files") or []
    g = GaugeMetricFamily("promtail_read_bytes_total", "Number of bytes read.",
                          labels=["path"])
    for f in files:
        g.add_metric([f["path"]], float(f["read_offset"]))
    yield g
    g = GaugeMetricFamily("promtail_file_bytes_total", "Number of bytes total.",
                          labels=["path"])
    for f in files:
        g.add_metric([f["path"]], float(f["size"]))
    yield g
    g = GaugeMetricFamily("promtail_files_active_total", "Number of active files.")
    g.add_metric([], float(sum(1 for f in files if not f.get("released"))))
    yield g
