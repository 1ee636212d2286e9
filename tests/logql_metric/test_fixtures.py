"""The five metric responses recorded from a real Loki, reproduced exactly (minus stats)."""

from __future__ import annotations

import pytest

from sluiceway.logql import QueryParams
from sluiceway.logql._metric import evaluate_metric
from tests.logql_metric.helpers import TENANT, dataset_source, load_json

NAMES = ["query_range_metric_matrix", "query_range_metric_unwrap", "query_instant_vector",
         "query_instant_vector1plus1", "query_instant_scalar"]
# Rebuild on a different base to prove nothing depends on the recording time; it must
# be a multiple of the steps used (600 s) minus the same sub-step phase as the original.
ORIG_BASE = int(load_json("dataset.json")["baseNs"])
SHIFT = 7 * 24 * 3600 * 10**9  # one week: keeps the phase against 300 s / 600 s steps


def _params(req: dict, base: int) -> QueryParams:
    rel = req["relativeParams"]
    p = req["params"]
    if "time" in rel:
        t = base + int(rel["time"])
        return QueryParams([TENANT], t, t, instant=True)
    return QueryParams([TENANT], base + int(rel["start"]), base + int(rel["end"]),
                       step_ns=int(float(p["step"]) * 1e9))


def _shift_times(data: dict, shift_s: int, name: str) -> dict:
    """The recorded response with every timestamp moved by `shift_s` seconds."""
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return {"resultType": kind, "result": [result[0] + shift_s * 1000, result[1]]}
    out = []
    for s in result:
        if kind == "matrix":
            out.append({"metric": s["metric"],
                        "values": [[t + shift_s, v] for t, v in s["values"]]})
        else:
            out.append({"metric": s["metric"], "value": [s["value"][0] + shift_s,
                                                          s["value"][1]]})
    return {"resultType": kind, "result": out}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shift", [0, SHIFT])
def test_fixture_reproduced(name: str, shift: int) -> None:
    base = ORIG_BASE + shift
    src = dataset_source(base)
    req = load_json(f"{name}.request.json")
    want = load_json(f"{name}.response.json")["data"]
    want.pop("stats")
    got = evaluate_metric(src, req["params"]["query"], _params(req, base)).to_loki_json()
    stats = got.pop("stats")
    assert got == _shift_times(want, shift // 10**9, name)
    assert set(stats) >= {"summary", "querier", "ingester", "cache", "index"}


def test_stats_counted() -> None:
    src = dataset_source(ORIG_BASE)
    req = load_json("query_instant_vector.request.json")
    res = evaluate_metric(src, req["params"]["query"], _params(req, ORIG_BASE))
    summary = res.to_loki_json()["stats"]["summary"]
    assert summary["totalLinesProcessed"] == 160  # the prod streams over the hour
    assert summary["totalEntriesReturned"] == 3
    assert summary["totalBytesProcessed"] > 0


def test_public_evaluate_dispatches_metric_queries() -> None:
    from sluiceway.logql import evaluate

    src = dataset_source(ORIG_BASE)
    req = load_json("query_instant_vector.request.json")
    got = evaluate(src, req["params"]["query"], _params(req, ORIG_BASE)).to_loki_json()
    got.pop("stats")
    want = load_json("query_instant_vector.response.json")["data"]
    want.pop("stats")
    assert got == want
