"""Prometheus view of `stats()`, computed at scrape time so log calls pay nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sluiceway.client._runtime import state


class ClientCollector:
    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        rt = state.rt
        if rt is None:
            return
        s = rt.stats()
        by_level = (("enqueued", "records accepted into a sink queue"),
                    ("written", "records written by a sink"),
                    ("spilled", "records spilled to disk"))
        for key, help_ in by_level:
            c = CounterMetricFamily(f"sluiceway_client_{key}", help_, labels=["sink", "level"])
            for sink, st in s["sinks"].items():
                src = st.get(f"{key}_by_level") or st.get(f"{key}_by_tag") or {}
                for level, n in src.items():
                    c.add_metric([sink, level], float(n))
            yield c
        d = CounterMetricFamily("sluiceway_client_dropped", "records dropped or lost",
                                labels=["sink", "reason"])
        e = CounterMetricFamily("sluiceway_client_sink_errors", "failed sink writes",
                                labels=["sink"])
        g_depth = GaugeMetricFamily("sluiceway_client_queue_depth", "queued records",
                                    labels=["sink"])
        g_hw = GaugeMetricFamily("sluiceway_client_queue_high_watermark",
                                 "highest queue depth seen", labels=["sink"])
        g_spill = GaugeMetricFamily("sluiceway_client_spill_bytes", "spill bytes on disk",
                                    labels=["sink"])
        g_p99 = GaugeMetricFamily("sluiceway_client_write_p99_seconds",
                                  "p99 sink write time, recent batches", labels=["sink"])
        for sink, st in s["sinks"].items():
            for reason, n in {**st["dropped_by_reason"], **st["lost_by_reason"]}.items():
                d.add_metric([sink, reason], float(n))
            e.add_metric([sink], float(st["errors"]))
            g_depth.add_metric([sink], float(st["depth"]))
            g_hw.add_metric([sink], float(st["high_watermark"]))
            g_spill.add_metric([sink], float(st["spill_bytes"]))
            g_p99.add_metric([sink], st["write_ms"]["p99"] / 1000)
        yield from (d, e, g_depth, g_hw, g_spill, g_p99)
        lat = GaugeMetricFamily("sluiceway_client_enqueue_p99_seconds",
                                "p99 time of a log call (sampled)")
        lat.add_metric([], s["enqueue_latency_us"]["p99"] / 1e6)
        yield lat

    def describe(self) -> list[Any]:
        return []
