"""Export `Buffer.stats()` to Prometheus at scrape time (no per-put metric cost)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def prometheus_collector(stats: Callable[[], dict[str, Any]], prefix: str = "sluiceway_buffer",
                         labels: dict[str, str] | None = None) -> Any:
    """A `prometheus_client` collector reading `stats()` (e.g. `buffer.stats`) on scrape.

    Register it with `prometheus_client.REGISTRY.register(...)` or your own registry.
    prometheus_client is imported here only, so the buffer itself needs only stdlib.
    """
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    const = dict(labels or {})
    names = list(const)

    class _Collector:
        def collect(self) -> Iterator[Any]:
            s = stats()
            vals = [const[n] for n in names]
            for key, help_ in (("depth", "items queued (memory and disk)"),
                               ("capacity", "in-memory capacity in items"),
                               ("bytes", "bytes queued in memory"),
                               ("high_watermark", "highest depth seen"),
                               ("in_flight", "items handed out, not yet acked"),
                               ("spill_bytes", "bytes of spill segments on disk"),
                               ("spill_pending", "items on disk not yet replayed")):
                g = GaugeMetricFamily(f"{prefix}_{key}", help_, labels=names)
                g.add_metric(vals, float(s.get(key, 0)))
                yield g
            for key, help_ in (("enqueued", "items accepted"), ("acked", "items acked"),
                               ("spilled", "items written to disk"),
                               ("replayed", "items read back from disk"),
                               ("spill_full_events", "times the spill cap was reached")):
                c = CounterMetricFamily(f"{prefix}_{key}", help_, labels=names)
                c.add_metric(vals, float(s.get(key, 0)))
                yield c
            d = CounterMetricFamily(f"{prefix}_dropped", "items dropped, by reason",
                                    labels=[*names, "reason"])
            for reason, n in sorted(s.get("dropped_by_reason", {}).items()):
                d.add_metric([*vals, reason], float(n))
            yield d

        def describe(self) -> list[Any]:
            return []

    return _Collector()
