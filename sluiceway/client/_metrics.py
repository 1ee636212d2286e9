"""Prometheus view of the client, computed at scrape time so log calls pay nothing: the
shared queue collector of `sluiceway.ship` (one queue per sink, label `sink`; counts by
`level` and `protected`), plus the sampled p99 of a log call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sluiceway.buffer import DROP_REASONS
from sluiceway.client._levels import LEVELS
from sluiceway.client._runtime import Runtime, state
from sluiceway.ship import LOSS_REASONS, Figures, QueueCollector

# Loss reasons shown at 0 from the first scrape (others appear when they happen).
LOST_REASONS = tuple(dict.fromkeys((*DROP_REASONS, *LOSS_REASONS, "shutdown_timeout")))


def _figures(rt: Runtime) -> list[Figures]:
    protected = rt.protected
    levels = [name for name, n in LEVELS.items() if n >= rt.min_level]

    def tag_labels(tag: str) -> dict[str, str]:
        return {"level": tag, "protected": "true" if tag in protected else "false"}

    out = []
    for w in rt.workers:
        out.append(Figures(w.buffer.stats(), w.loop.snapshot(),
                           w.loop.stats.latency.snapshot(),
                           url=str(getattr(w.sink, "base_url", "")), labels={"sink": w.name},
                           reasons=LOST_REASONS, drop_reasons=DROP_REASONS, tags=levels,
                           tag_labels=tag_labels))
    return out


def _extra(rt: Runtime) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    s = rt.stats()
    lat = GaugeMetricFamily("sluiceway_client_enqueue_p99_seconds",
                            "p99 time of a log call (sampled)")
    lat.add_metric([], s["enqueue_latency_us"]["p99"] / 1e6)
    yield lat
    p99 = GaugeMetricFamily("sluiceway_client_write_p99_seconds",
                            "p99 sink write time, recent batches", labels=["sink"])
    for sink, st in s["sinks"].items():
        p99.add_metric([sink], st["write_ms"]["p99"] / 1000)
    yield p99


class ClientCollector(QueueCollector):
    """Reads whichever pipeline is configured when scraped (none: no metrics)."""

    def __init__(self) -> None:
        super().__init__("sluiceway_client", self._current_figures, self._current_extra)

    @staticmethod
    def _current_figures() -> list[Figures]:
        rt = state.rt
        return _figures(rt) if rt is not None else []

    @staticmethod
    def _current_extra() -> Iterator[Any]:
        rt = state.rt
        if rt is not None:
            yield from _extra(rt)


