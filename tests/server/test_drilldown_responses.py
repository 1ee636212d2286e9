"""Replay the "drilldown" group recorded against a real Loki (fixtures README, "Recorded
2026-12-04") against a real `sluiceway server` configured as that group's Loki was.

The group's data (dataset.json, then patterns_dataset.json) is pushed with its times
moved to our own base: hour-aligned and an hour or two ago, as Loki's was, so step
buckets fall at the same offsets. Every recorded request is rebuilt relative to that
base and its answer compared with Loki's: exactly where Loki's answer is deterministic,
as sets where Loki's order is Go map order, and by shape where its values are chunk
sizes or differ per run (what differed is said per file in the README).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.inproc import ThreadServer, wait_for
from tests.procs import FIXTURES, ServerProcess
from tests.replay import check_volume_bytes

RESP = FIXTURES / "responses"
HOUR = 3600 * 10**9
GROUP = ("detected_field_values_", "detected_fields_", "detected_labels", "drilldown_limits",
         "patterns_", "index_volume_range_aggregate_labels")
NAMES = sorted(p.name.removesuffix(".request.json") for p in RESP.glob("*.request.json")
               if p.name.startswith(GROUP))
# The group's Loki config, in our names (all three are our defaults as well).
CONFIG = """
limits:
  allow_structured_metadata: true
  discover_log_levels: true
  reject_old_samples: false
pattern_ingester:
  enabled: true
"""


def _request(name: str) -> dict[str, Any]:
    req: dict[str, Any] = json.loads((RESP / f"{name}.request.json").read_text())
    return req


def _loki_answer(req: dict[str, Any]) -> Any:
    text = (RESP / req["responseFile"]).read_text()
    return json.loads(text) if req["responseFile"].endswith(".json") else text


def _push(url: str, dataset: Path, base: int) -> None:
    data = json.loads(dataset.read_text())
    streams = [{"stream": s["stream"], "values": [[str(base + int(v[0])), *v[1:]]
                                                  for v in s["values"]]}
               for s in data["streams"]]
    r = httpx.post(f"{url}/loki/api/v1/push", content=orjson.dumps({"streams": streams}),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text


def _checkout_mined(url: str, base: int) -> bool:
    r = httpx.get(f"{url}/loki/api/v1/patterns", params={
        "query": '{app="checkout"}', "start": str(base), "end": str(base + HOUR),
        "step": "300"})
    totals = sorted(sum(n for _, n in p["samples"]) for p in r.json()["data"])
    return r.status_code == 200 and totals == [45, 60]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = (time.time_ns() // HOUR - 1) * HOUR  # the start of the previous hour
    tmp = tmp_path_factory.mktemp("drilldown")
    (tmp / "loki.yaml").write_text(CONFIG)
    srv = ThreadServer(tmp / "data", config=tmp / "loki.yaml").start()
    _push(srv.url, RESP / "dataset.json", base)
    _push(srv.url, RESP / "patterns_dataset.json", base)
    assert httpx.post(f"{srv.url}/flush").status_code == 204  # as in the recording
    # Mining runs in its own process, behind the pushes: once the second push's stream
    # has all its lines in patterns, the first push is mined too (one queue, in order).
    wait_for(lambda: _checkout_mined(srv.url, base), "the pushes to be mined", timeout=60)
    yield srv, base
    srv.stop()


def _replay(srv: ServerProcess, base: int, req: dict[str, Any],
            **overrides: str) -> httpx.Response:
    params = dict(req["params"])
    for k, rel in req.get("relativeParams", {}).items():
        params[k] = str(base + int(rel))
    params.update(overrides)
    return httpx.request(req["method"], f"{srv.url}{req['path']}", params=params,
                         headers=req.get("headers") or {})


def _relative_samples(data: list[dict[str, Any]], base_s: int) -> list[dict[str, Any]]:
    return [{**p, "samples": [[t - base_s, n] for t, n in p["samples"]]} for p in data]


def _by_label(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda f: str(f["label"]))


def _volume_shape(body: dict[str, Any], base_ns: int) -> Any:
    """Loki's bytes are chunk sizes (and differed per run): compare series and stamps."""
    return sorted((sorted(r["metric"].items()), [round(v[0] - base_ns / 1e9, 3)
                                                 for v in r["values"]])
                  for r in body["data"]["result"])


@pytest.mark.parametrize("name", NAMES)
def test_answer_matches_loki(loaded: Any, name: str) -> None:
    srv, base = loaded
    req = _request(name)
    loki_base = int(req["baseNs"])
    r = _replay(srv, base, req)
    assert r.status_code == req["status"], r.text
    loki = _loki_answer(req)
    if not isinstance(loki, (dict, list)):  # a text answer (an error)
        assert r.text.strip() == loki.strip()
        return
    ours = r.json()
    if name.startswith("patterns_"):
        assert ours["status"] == loki["status"]
        assert _relative_samples(ours["data"], base // 10**9) == \
            _relative_samples(loki["data"], loki_base // 10**9)
    elif name == "detected_fields_line_limit":
        _check_line_limit(srv, base, req, ours, loki)
    elif name.startswith("detected_fields_"):
        assert ours.keys() == loki.keys()
        assert ours.get("limit") == loki.get("limit")
        assert _by_label(ours.get("fields", [])) == _by_label(loki.get("fields", []))
    elif name.startswith("detected_field_values_"):
        assert ours.keys() == loki.keys()
        assert ours["limit"] == loki["limit"]
        assert sorted(ours["values"]) == sorted(loki["values"])
    elif name.startswith("detected_labels"):
        assert _by_label(ours["detectedLabels"]) == _by_label(loki["detectedLabels"])
    elif name == "drilldown_limits":
        _check_limits(ours, loki)
    elif name == "index_volume_range_aggregate_labels":
        assert ours["status"] == loki["status"]
        assert ours["data"]["resultType"] == loki["data"]["resultType"]
        assert _volume_shape(ours, base) == _volume_shape(loki, loki_base)
        check_volume_bytes(ours, dict(req["params"]), [json.loads(
            (RESP / f).read_text()) for f in ("dataset.json", "patterns_dataset.json")])
    else:
        raise AssertionError(f"no comparison for {name}")


def _check_line_limit(srv: ServerProcess, base: int, req: dict[str, Any],
                      ours: dict[str, Any], loki: dict[str, Any]) -> None:
    """Which 3 fields Loki picks is Go map order (two runs, two subsets): every field it
    named must be one of ours, alike, when we are asked for all of them."""
    assert ours["limit"] == loki["limit"] == 3
    assert len(ours["fields"]) == len(loki["fields"]) == 3
    every = _replay(srv, base, req, limit="1000").json()["fields"]
    by_label = {f["label"]: f for f in every}
    assert all(by_label[f["label"]] == f for f in ours["fields"])
    assert all(by_label.get(f["label"]) == f for f in loki["fields"])


def _check_limits(ours: dict[str, Any], loki: dict[str, Any]) -> None:
    assert ours.keys() == loki.keys()
    assert ours["pattern_ingester_enabled"] is loki["pattern_ingester_enabled"] is True
    assert isinstance(ours["version"], str) and ours["version"]
    assert ours["limits"].keys() == loki["limits"].keys()
    for key, value in loki["limits"].items():
        if key == "otlp_config":  # our list of indexed OTLP attributes is our own
            attrs = ours["limits"][key]["resource_attributes"]["attributes_config"]
            assert [a["action"] for a in attrs] == ["index_label"]
            assert "service.name" in attrs[0]["attributes"]
        else:
            assert ours["limits"][key] == value, key


def test_patterns_are_html_escaped_as_loki_writes_them(loaded: Any) -> None:
    srv, base = loaded
    r = _replay(srv, base, _request("patterns_checkout"))
    assert "\\u003c_\\u003e" in r.text and "<_>" not in r.text
