"""The recorded Loki responses for log queries, reproduced exactly (all but `stats`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluiceway.logql import QueryError, QueryParams, evaluate
from tests.logql.conftest import RESPONSES, TENANT, Dataset

NAMES = ["forward", "backward", "categorized", "logfmt_filter", "empty"]


def _load(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    req = json.loads((RESPONSES / f"query_range_log_{name}.request.json").read_text())
    resp = json.loads((RESPONSES / f"query_range_log_{name}.response.json").read_text())
    return req, resp


def _params(req: dict[str, Any], base: int) -> QueryParams:
    p, rel = req["params"], req["relativeParams"]
    categorize = "categorize-labels" in req["headers"].get(
        "X-Loki-Response-Encoding-Flags", "")
    return QueryParams([TENANT], base + int(rel["start"]), base + int(rel["end"]),
                       int(p.get("limit", 100)), p.get("direction", "backward"),
                       categorize_labels=categorize)


@pytest.mark.parametrize("name", NAMES)
def test_fixture_reproduced(dataset: Dataset, name: str) -> None:
    req, resp = _load(name)
    got = evaluate(dataset.source, req["params"]["query"], _params(req, dataset.base))
    data = got.to_loki_json()
    want = resp["data"]
    assert list(data) == list(want)  # key order: resultType, [encodingFlags], result, stats
    assert data["result"] == want["result"]
    if "encodingFlags" in want:
        assert data["encodingFlags"] == want["encodingFlags"]


@pytest.mark.parametrize("name", NAMES)
def test_stats_have_lokis_groups(dataset: Dataset, name: str) -> None:
    req, resp = _load(name)
    stats = evaluate(dataset.source, req["params"]["query"],
                     _params(req, dataset.base)).to_loki_json()["stats"]

    def shape(x: Any) -> Any:
        return {k: shape(v) for k, v in x.items()} if isinstance(x, dict) else type(x)

    def keys(x: Any, prefix: str = "") -> set[str]:
        if not isinstance(x, dict):
            return {prefix}
        return set().union(*(keys(v, f"{prefix}.{k}") for k, v in x.items()))

    # Same groups and keys as the richest recording (Loki omits a zero
    # estimatedQueryBytes in the empty one), and every key of this recording; ours are
    # the two block counts of the summary Loki has no key for.
    _, forward = _load("forward")
    ours = {".summary.totalBlocksSkippedByFilter", ".summary.totalBlocksFromMetadata"}
    assert keys(stats) == keys(forward["data"]["stats"]) | ours
    assert keys(resp["data"]["stats"]) <= keys(stats)
    assert shape(stats)["summary"]["execTime"] is float
    summary = stats["summary"]
    assert summary["totalEntriesReturned"] == sum(len(s["values"])
                                                  for s in resp["data"]["result"])
    if resp["data"]["result"]:
        assert summary["totalLinesProcessed"] > 0 and summary["totalBytesProcessed"] > 0
        assert summary["execTime"] > 0


def test_parse_error_fixture(dataset: Dataset) -> None:
    req = json.loads((RESPONSES / "error_parse_400.request.json").read_text())
    text = (RESPONSES / "error_parse_400.response.txt").read_text().strip()
    with pytest.raises(QueryError) as err:
        evaluate(dataset.source, req["params"]["query"],
                 QueryParams([TENANT], dataset.base, dataset.base + 1))
    assert str(err.value) == text


def test_instant_log_query_fixture(dataset: Dataset) -> None:
    req = json.loads((RESPONSES / "error_log_query_instant_400.request.json").read_text())
    text = (RESPONSES / "error_log_query_instant_400.response.txt").read_text().strip()
    t = dataset.base + int(req["relativeParams"]["time"])
    with pytest.raises(QueryError) as err:
        evaluate(dataset.source, req["params"]["query"],
                 QueryParams([TENANT], t, t + 1, instant=True))
    assert str(err.value) == text
