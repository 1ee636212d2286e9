"""The one Prometheus collector of a queue and its delivery, for the agent and the client.

Read at scrape time from `Buffer.stats()` and `DeliveryLoop.snapshot()`, so producers
pay nothing per line. Every counter is there from the first scrape, at 0: each reason
in `reasons` (and, for the client, each level in `tags`, with `protected`), so a rate
or an alert on it never starts from a missing series.

Names, for a prefix `p` (`sluiceway_agent`, `sluiceway_client`) and the owner's labels
(`sink` for the client):
- counters `p_lines_{enqueued,shipped,spilled}_total`, `p_lines_dropped_total{reason}`
  (refused or discarded by the queue's policy), `p_lines_lost_total{reason}` (every
  line that will never arrive: the drops, what the backend refused, retries given up,
  and what the owner adds), by `level` and `protected` where the owner counts by tag;
  `p_send_failures_total`, `p_retries_total`, `p_batches_shipped_total`,
  `p_bytes_shipped_total`, `p_spill_full_events_total`;
- gauges `p_queue_{depth,capacity,high_watermark,in_flight,bytes,max_bytes,
  spill_pending,waiting_seconds}` (in lines), `p_queue_policy{when_full}` (1),
  `p_spill_{bytes,max_bytes,full}`, `p_backend_up{url}`,
  `p_last_successful_push_timestamp_seconds`;
- histogram `p_push_duration_seconds{status_code}`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

TagLabels = Callable[[str], dict[str, str]]
# `LatencyHistogram.snapshot()`: status -> ([(upper bound, cumulative count), …], sum)
LatencySnapshot = dict[str, tuple[list[tuple[str, int]], float]]


@dataclass
class Figures:
    """One queue and its delivery, as the collector reads them."""

    buffer: dict[str, Any]  # Buffer.stats()
    delivery: dict[str, Any]  # DeliveryLoop.snapshot()
    latency: LatencySnapshot  # LatencyHistogram.snapshot()
    url: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # The buffer's drop reasons as the owner names them (the agent's `queue_full`).
    rename: Mapping[str, str] = field(default_factory=dict)
    # Losses the owner counts itself (the agent's `truncated`), by reason.
    extra_lost: Mapping[str, int] = field(default_factory=dict)
    reasons: Iterable[str] = ()  # loss reasons shown at 0 from the start
    drop_reasons: Iterable[str] = ()  # drop reasons (after `rename`) shown at 0
    tags: Iterable[str] = ()  # tags (levels) shown at 0 from the start
    tag_labels: TagLabels | None = None  # tag -> its labels; None: counts are not by tag


def queue_metrics(prefix: str, figures: list[Figures]) -> Iterator[Any]:
    """The metric families of `figures` (one per queue), for a collector's `collect`."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    if not figures:
        return
    base = list(figures[0].labels)
    by_tag = figures[0].tag_labels is not None
    tag_names = ["level", "protected"] if by_tag else []

    def counter(name: str, help_: str, extra: list[str] | None = None) -> Any:
        return CounterMetricFamily(f"{prefix}_{name}", help_, labels=[*base, *(extra or [])])

    def gauge(name: str, help_: str, extra: list[str] | None = None) -> Any:
        return GaugeMetricFamily(f"{prefix}_{name}", help_, labels=[*base, *(extra or [])])

    enq = counter("lines_enqueued", "lines accepted by the queue", tag_names)
    shipped = counter("lines_shipped", "lines the backend accepted", tag_names)
    spilled = counter("lines_spilled", "lines written to the disk spill", tag_names)
    dropped = counter("lines_dropped", "lines refused or discarded by the queue's policy",
                      [*tag_names, "reason"])
    lost = counter("lines_lost", "lines that will never arrive, by reason",
                   [*tag_names, "reason"])
    plain = {key: counter(key, help_) for key, help_ in (
        ("send_failures", "failed push attempts"), ("retries", "push retries"),
        ("batches_shipped", "pushes the backend accepted"),
        ("bytes_shipped", "request body bytes the backend accepted"),
        ("spill_full_events", "times the spill reached its disk cap"))}
    gauges = {key: gauge(name, help_) for key, name, help_ in (
        ("depth", "queue_depth", "lines waiting in memory"),
        ("capacity", "queue_capacity", "lines the queue holds in memory at most"),
        ("high_watermark", "queue_high_watermark", "highest queue depth seen"),
        ("in_flight", "queue_in_flight", "lines handed to the sender, not yet answered"),
        ("bytes", "queue_bytes", "bytes waiting in memory"),
        ("max_bytes", "queue_max_bytes", "bytes the queue holds in memory at most"),
        ("spill_pending", "queue_spill_pending", "lines waiting on disk or on their way"),
        ("waiting_s", "queue_waiting_seconds",
         "how long a file reader has been waiting for room (0: none waits)"),
        ("spill_bytes", "spill_bytes", "bytes of spill segments on disk"),
        ("spill_max_bytes", "spill_max_bytes", "disk cap of the spill"))}
    spill_full = gauge("spill_full", "1 while the spill is at its disk cap")
    policy = gauge("queue_policy", "the when_full policy in force (value 1)", ["when_full"])
    up = gauge("backend_up", "1 while pushes are accepted", ["url"])
    last_ok = gauge("last_successful_push_timestamp_seconds",
                    "Unix time of the last push the backend accepted (0: none yet)")
    series: list[tuple[list[str], LatencySnapshot]] = []
    for f in figures:
        vals = [f.labels[n] for n in base]
        b, d = f.buffer, f.delivery
        drops = _by_tag(b["dropped_by_tag"], f.rename, by_tag)
        losses = _by_tag(d["lost_by_tag"], {}, by_tag)
        for table in (drops, {"None": dict(f.extra_lost)}):
            for tag, rs in table.items():
                row = losses.setdefault(tag, {})
                for r, n in rs.items():
                    row[r] = row.get(r, 0) + n
        if by_tag:
            tags = sorted({*map(str, f.tags), *b["enqueued_by_tag"], *d["shipped_by_tag"],
                           *b["spilled_by_tag"], *drops, *losses} - {"None"})
            # lines no tag can be given for (which of a partial 400's lines) come last
            if any(losses.get("None", {}).values()) or any(drops.get("None", {}).values()):
                tags.append("None")
        else:
            tags = ["None"]

        def tv(tag: str, f: Figures = f) -> list[str]:
            if f.tag_labels is None:
                return []
            if tag == "None":
                return ["unknown", "false"]
            lab = f.tag_labels(tag)
            return [lab["level"], lab["protected"]]

        for fam, src in ((enq, b["enqueued_by_tag"]), (shipped, d["shipped_by_tag"]),
                         (spilled, b["spilled_by_tag"])):
            if by_tag:
                for tag in tags:
                    fam.add_metric([*vals, *tv(tag)], float(src.get(tag, 0)))
            else:
                fam.add_metric(vals, float(sum(src.values())))
        for fam, table, known in ((dropped, drops, f.drop_reasons),
                                  (lost, losses, f.reasons)):
            reasons = sorted({*known, *(r for rs in table.values() for r in rs)})
            for tag in tags:
                for r in reasons:
                    fam.add_metric([*vals, *tv(tag), r], float(table.get(tag, {}).get(r, 0)))
        for key, src_key in (("send_failures", "send_failures"), ("retries", "retries"),
                             ("batches_shipped", "pushes"),
                             ("bytes_shipped", "bytes_shipped")):
            plain[key].add_metric(vals, float(d[src_key]))
        plain["spill_full_events"].add_metric(vals, float(b["spill_full_events"]))
        for key, g in gauges.items():
            g.add_metric(vals, float(b.get(key, 0)))
        spill_full.add_metric(vals, float(bool(b["spill_full"])))
        policy.add_metric([*vals, str(b["when_full"])], 1.0)
        up.add_metric([*vals, f.url], float(d["ok"]))
        last_ok.add_metric(vals, float(d["last_success_ts"] or 0))
        series.append((vals, f.latency))
    hist = latency_family(f"{prefix}_push_duration_seconds",
                          "push latency by HTTP status (none: no answer)", base, series)
    yield from (enq, shipped, spilled, dropped, lost, *plain.values(), *gauges.values(),
                spill_full, policy, up, last_ok, hist)


def latency_family(name: str, help_: str, labels: list[str],
                   series: Iterable[tuple[list[str], LatencySnapshot]]) -> Any:
    """The push latency histogram (`status_code` after `labels`) of each series (label
    values, snapshot): `queue_metrics`' own, and an owner's alias of it (the agent's
    `promtail_request_duration_seconds`)."""
    from prometheus_client.core import HistogramMetricFamily

    hist = HistogramMetricFamily(name, help_, labels=[*labels, "status_code"])
    for vals, snap in series:
        for status, (rows, total) in sorted(snap.items()):
            hist.add_metric([*vals, status], [(bound, float(n)) for bound, n in rows], total)
    return hist


def merge_latency(snaps: Iterable[LatencySnapshot]) -> LatencySnapshot:
    """Snapshots of several histograms summed, status by status (one destination's
    loops behind several queues)."""
    out: LatencySnapshot = {}
    for snap in snaps:
        for status, (rows, total) in snap.items():
            have = out.get(status)
            out[status] = (list(rows), total) if have is None else (
                [(b, n + m) for (b, n), (_, m) in zip(have[0], rows, strict=True)],
                have[1] + total)
    return out


def _by_tag(table: dict[str, dict[str, int]], rename: Mapping[str, str],
            by_tag: bool) -> dict[str, dict[str, int]]:
    """tag -> reason -> count, reasons renamed; all under "None" when not by tag."""
    out: dict[str, dict[str, int]] = {}
    for tag, reasons in table.items():
        key = tag if by_tag else "None"
        row = out.setdefault(key, {})
        for r, n in reasons.items():
            name = rename.get(r, r)
            row[name] = row.get(name, 0) + n
    return out


class QueueCollector:
    """A `prometheus_client` collector over `figures()`, plus whatever `extra()` yields
    (the owner's own metrics: the agent's inputs, the client's call latency)."""

    def __init__(self, prefix: str, figures: Callable[[], list[Figures]],
                 extra: Callable[[], Iterable[Any]] | None = None) -> None:
        self.prefix, self.figures, self.extra = prefix, figures, extra

    def collect(self) -> Iterator[Any]:
        yield from queue_metrics(self.prefix, self.figures())
        if self.extra is not None:
            yield from self.extra()

    def describe(self) -> list[Any]:
        return []
