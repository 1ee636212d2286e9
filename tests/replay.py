"""Helpers shared by the tests that replay recorded Loki answers."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

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


HOUR_NS = 3600 * 10**9


def base_near_now(loki_base: int) -> int:
    """A base time in the same phase as Loki's within the hour (so step alignments to
    multiples of 300, 600 or 900 s from the epoch fall at the same offsets), an hour or two
    in the past."""
    return loki_base + (time.time_ns() - HOUR_NS - loki_base) // HOUR_NS * HOUR_NS


def push_dataset(url: str, dataset: dict[str, Any], base: int) -> None:
    """Push a recorded data set (times relative to its base) with its times at `base`."""
    streams = [{"stream": s["stream"], "values": [[str(base + int(v[0])), *v[1:]]
                                                  for v in s["values"]]}
               for s in dataset["streams"]]
    r = httpx.post(f"{url}/loki/api/v1/push", content=orjson.dumps({"streams": streams}),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text
