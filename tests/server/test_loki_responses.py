"""Replay the requests recorded against a real Loki and compare our answers to its answers.

The recorded data set is pushed into a real server with its timestamps moved to our own
base (an hour or two ago, in the same phase as Loki's); every recorded request is rebuilt
relative to that base, and every timestamp in both answers is compared relative to its base.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import orjson
import pytest
from websockets.sync.client import connect

from tests.inproc import ThreadServer
from tests.procs import FIXTURES, ServerProcess
from tests.replay import base_near_now, check_volume_bytes, push_dataset

RESP = FIXTURES / "responses"
DATASET = json.loads((RESP / "dataset.json").read_text())
LOKI_BASE = int(DATASET["baseNs"])
REQUESTS = sorted(p.name.removesuffix(".request.json") for p in RESP.glob("*.request.json"))
# The ruler's recordings need their own servers and order: test_ruler_fixtures.py.
RULER_RECORDINGS = ("rules_", "rulesapi_", "prometheus_")
# The "drilldown" group (2026-12-04) needs its own data set, config and an hour-aligned
# base: test_drilldown_responses.py replays it. The instant index/volume recordings of
# that group ask only for what dataset.json holds, so they replay here.
DRILLDOWN_GROUP = ("detected_", "drilldown_", "patterns_",
                   "index_volume_range_aggregate_labels")
HTTP_JSON = [n for n in REQUESTS
             if json.loads((RESP / f"{n}.request.json").read_text()).get("responseFile", "")
             .endswith(".json")
             # limits_*: their own Loki config and pushes (tests/server/test_loki_limits.py)
             and not n.startswith(("tail_", "index_stats_unflushed", "limits_",
                                   *RULER_RECORDINGS, *DRILLDOWN_GROUP))]
# The deletion group's flow (requests, processing, queries after it) replays in
# test_delete_responses.py; its queries made before the request are plain queries over
# dataset.json, which replay here (with their own recorded base).
BEFORE_DELETION = ("delete_query_range_before", "delete_query_range_filtered_before",
                   "delete_query_range_pending")
# These recordings were made with Loki's discover_log_levels off (its default is on):
# no `detected_level` in their answers.
CONFIG = "limits:\n  discover_log_levels: false\n"
HTTP_JSON_PARAMS = [n for n in HTTP_JSON
                    if not n.startswith("delete_") or n in BEFORE_DELETION]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = base_near_now(LOKI_BASE)
    tmp = tmp_path_factory.mktemp("loki")
    (tmp / "loki.yaml").write_text(CONFIG)
    srv = ThreadServer(tmp / "data", config=tmp / "loki.yaml").start()
    push_dataset(srv.url, DATASET, base)
    yield srv, base
    srv.stop()


def _request(name: str, base: int) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    req = json.loads((RESP / f"{name}.request.json").read_text())
    params = dict(req["params"])
    for k, rel in req.get("relativeParams", {}).items():
        params[k] = str(base + int(rel))
    return req, params, dict(req.get("headers") or {})


def _relative(data: Any, base_ns: int) -> Any:
    """Every timestamp as an offset from its base: ns strings in streams, seconds in metrics."""
    if isinstance(data, dict):
        out = {k: _relative(v, base_ns) for k, v in data.items() if k != "stats"}
        if "values" in out and "stream" in data:
            out["values"] = [[str(int(v[0]) - base_ns), *v[1:]] for v in data["values"]]
        if "values" in out and "metric" in data:
            out["values"] = [[round(v[0] - base_ns / 1e9, 3), v[1]] for v in data["values"]]
        if "value" in out and "metric" in data:
            out["value"] = [round(data["value"][0] - base_ns / 1e9, 3), data["value"][1]]
        return out
    if isinstance(data, list):
        return [_relative(x, base_ns) for x in data]
    return data


def _canonical(name: str, data: Any) -> Any:
    data = _relative(data, 0) if not isinstance(data, dict) else data
    if name == "series":  # Loki gives no order for series
        return sorted(data["data"], key=lambda d: sorted(d.items()))
    if isinstance(data.get("data"), dict) and data["data"].get("resultType") in ("matrix",
                                                                                  "vector"):
        data["data"]["result"].sort(key=lambda r: sorted(r["metric"].items()))
    return data


@pytest.mark.parametrize("name", HTTP_JSON_PARAMS)
def test_answer_matches_loki(loaded: Any, name: str) -> None:
    srv, base = loaded
    req, params, headers = _request(name, base)
    r = httpx.request("GET", f"{srv.url}{req['path']}", params=params, headers=headers)
    assert r.status_code == req["status"], r.text
    ours = r.json()
    loki = json.loads((RESP / req["responseFile"]).read_text())
    loki_base = int(req.get("baseNs", LOKI_BASE))  # later recordings say their own base
    if name == "index_stats":
        # Loki counts compressed chunk blocks; we count the lines and bytes themselves.
        assert (ours["streams"], ours["entries"]) == (loki["streams"], loki["entries"])
        return
    if name.startswith("index_volume"):
        # Loki's volume is chunk-based (rounded to KiB); ours is exact line bytes: checked
        # against the data set, then only the shapes are compared with Loki's.
        check_volume_bytes(ours, params, [DATASET])
        for x in (ours, loki):
            for res in x["data"]["result"]:
                if "value" in res:
                    res["value"] = [res["value"][0], "bytes"]
                else:
                    res["values"] = [[v[0], "bytes"] for v in res["values"]]
    if name == "query_instant_scalar":
        # Loki sends a scalar's time in ms, clients accept s too (REFERENCE §9)
        t_ours, t_loki = ours["data"]["result"][0], loki["data"]["result"][0]
        assert t_ours - base / 1e9 in (3600, 3600_000) or t_ours - base / 1e6 == 3600_000
        assert t_loki - LOKI_BASE / 1e6 == 3600_000
        assert ours["data"]["result"][1] == loki["data"]["result"][1]
        return
    assert _canonical(name, _relative(ours, base)) == _canonical(name, _relative(loki, loki_base))


@pytest.mark.parametrize("name", ["error_parse_400", "error_log_query_instant_400"])
def test_errors_match_loki(loaded: Any, name: str) -> None:
    srv, base = loaded
    req, params, headers = _request(name, base)
    r = httpx.get(f"{srv.url}{req['path']}", params=params, headers=headers)
    assert r.status_code == 400
    assert r.text.strip() == (RESP / f"{name}.response.txt").read_text().strip()


def _ws_url(srv: ServerProcess, params: dict[str, str]) -> str:
    return f"ws://127.0.0.1:{srv.port}/loki/api/v1/tail?" + str(httpx.QueryParams(params))


def test_tail_history_frame_matches_loki(loaded: Any) -> None:
    srv, base = loaded
    _, params, _ = _request("tail_history", base)
    with connect(_ws_url(srv, params), open_timeout=5) as ws:
        ours = json.loads(ws.recv(timeout=5))
    loki = json.loads((RESP / "tail_history.response.json").read_text())
    assert _relative(ours, base) == _relative(loki, LOKI_BASE)


def test_tail_live_frame_matches_loki(loaded: Any) -> None:
    srv, base = loaded
    req, params, _ = _request("tail_live", base)
    pushed = req["pushedAfterConnectRelative"]
    for s in pushed["streams"]:
        s["values"] = [[str(base + int(v[0])), v[1]] for v in s["values"]]
    with connect(_ws_url(srv, params), open_timeout=5) as ws:
        time.sleep(0.2)
        r = httpx.post(f"{srv.url}/loki/api/v1/push", content=orjson.dumps(pushed),
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 204
        ours = json.loads(ws.recv(timeout=5))
    loki = json.loads((RESP / "tail_live.response.json").read_text())
    assert _relative(ours, base) == _relative(loki, LOKI_BASE)


def test_tail_sends_every_line_of_a_large_push(loaded: Any) -> None:
    srv, _ = loaded
    now = time.time_ns()
    values = [[str(now + i), f"burst {i}"] for i in range(300)]
    with connect(_ws_url(srv, {"query": '{app="burst"}', "limit": "10"}), open_timeout=5) as ws:
        time.sleep(0.2)
        body = orjson.dumps({"streams": [{"stream": {"app": "burst"}, "values": values}]})
        assert httpx.post(f"{srv.url}/loki/api/v1/push", content=body,
                          headers={"Content-Type": "application/json"}).status_code == 204
        got: list[str] = []
        while len(got) < 300:
            frame = json.loads(ws.recv(timeout=5))
            got += [v[1] for s in frame["streams"] for v in s["values"]]
    assert got == [f"burst {i}" for i in range(300)]


def test_tail_takes_the_tenant_from_org_id_when_no_header(loaded: Any) -> None:
    srv, _ = loaded
    body = orjson.dumps({"streams": [{"stream": {"app": "t-org"},
                                      "values": [[str(time.time_ns()), "for team-z"]]}]})
    params = {"query": '{app="t-org"}', "orgId": "team-z"}
    with connect(_ws_url(srv, params), open_timeout=5) as ws:  # browsers cannot send headers
        time.sleep(0.2)
        assert httpx.post(f"{srv.url}/loki/api/v1/push", content=body, headers={
            "Content-Type": "application/json", "X-Scope-OrgID": "team-z"}).status_code == 204
        frame = json.loads(ws.recv(timeout=5))
    assert [v[1] for s in frame["streams"] for v in s["values"]] == ["for team-z"]
