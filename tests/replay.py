"""Helpers shared by the tests that replay recorded Loki answers."""

from __future__ import annotations

from typing import Any

from sluiceway.logql import parse_selector
from sluiceway.model import matches_all


def check_volume_bytes(ours: dict[str, Any], params: dict[str, str],
                       datasets: list[dict[str, Any]]) -> None:
    """Loki's volumes are chunk sizes (and differ per run); ours are the exact bytes of
    the lines pushed. Every series of our `index/volume(_range)` answer must hold the bytes
    of the data sets' lines it stands for: streams matching the query (with
    `aggregateBy=labels`: those that have the label; else those with the series' label
    values), summed over every bucket of a range."""
    matchers = parse_selector(params["query"])
    by_labels = params.get("aggregateBy") == "labels"
    assert ours["data"]["result"]
    for res in ours["data"]["result"]:
        metric = res["metric"]
        want = sum(len(v[1].encode()) for data in datasets for s in data["streams"]
                   if matches_all(matchers, s["stream"])
                   and all((k in s["stream"]) if by_labels else s["stream"].get(k) == v
                           for k, v in metric.items())
                   for v in s["values"])
        got = [res["value"]] if "value" in res else res["values"]
        assert want and sum(int(v[1]) for v in got) == want, (metric, got, want)
