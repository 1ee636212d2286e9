"""Small inputs that used to answer 500: each now gets the 4xx, or the partial success,
that Loki, Elasticsearch or an OTLP receiver gives, and the valid records of a request
are stored. In-process (`create_app` over ASGITransport): no process boundary is under
test here, except for the live tail, which needs a real websocket server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cramjam
import httpx
import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from sluiceway.wire._push_pb2 import PushRequest
from tests.inproc import InProcessServer

U64_MAX = 2**64 - 1


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    s = InProcessServer(tmp_path_factory.mktemp("small") / "data")
    yield s
    s.close()


def _lines(srv: InProcessServer, query: str, tenant: str | None = None) -> list[str]:
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    r = srv.get("/loki/api/v1/query_range", params={"query": query, "since": "2h",
                                                     "direction": "forward"}, headers=headers)
    assert r.status_code == 200, r.text
    return [v[1] for s in r.json()["data"]["result"] for v in s["values"]]


# --- protobuf push whose entries are empty messages ----------------------------------

def _empty_entries_body() -> bytes:
    req = PushRequest()
    stream = req.streams.add()
    stream.labels = '{app="x"}'
    for _ in range(3):
        stream.entries.add()
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def test_protobuf_push_of_empty_entries_is_too_old_not_500(srv: InProcessServer) -> None:
    body = _empty_entries_body()
    assert len(body) == 21
    r = srv.post("/loki/api/v1/push", content=body,
                 headers={"Content-Type": "application/x-protobuf"})
    # Loki reads them as entries at time 0 with empty lines, and rejects them as too old.
    assert r.status_code == 400, r.text
    assert "has timestamp too old: 1970-01-01T00:00:00" in r.text
    assert "total ignored: 3 out of 3" in r.text


def test_protobuf_push_keeps_good_entries_beside_empty_ones(srv: InProcessServer) -> None:
    req = PushRequest()
    stream = req.streams.add()
    stream.labels = '{app="mixed-empty"}'
    stream.entries.add()
    good = stream.entries.add()
    good.timestamp.FromNanoseconds(time.time_ns())
    good.line = "kept"
    body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
    r = srv.post("/loki/api/v1/push", content=body,
                 headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400 and "total ignored: 1 out of 2" in r.text
    assert _lines(srv, '{app="mixed-empty"}') == ["kept"]


# --- OTLP: a time past int64 nanoseconds --------------------------------------------

def _otlp_doc(service: str, stamps: list[int]) -> dict[str, Any]:
    return {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": service}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": str(ts), "body": {"stringValue": f"line {i}"}}
            for i, ts in enumerate(stamps)]}]}]}


def test_otlp_json_out_of_range_time_is_a_partial_success(srv: InProcessServer) -> None:
    doc = _otlp_doc("otlp-json-big", [U64_MAX, time.time_ns()])
    r = srv.post("/otlp/v1/logs", content=orjson.dumps(doc),
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    partial = r.json()["partialSuccess"]
    assert int(partial["rejectedLogRecords"]) == 1
    assert "timestamp too new" in partial["errorMessage"]
    assert _lines(srv, '{service_name="otlp-json-big"}') == ["line 1"]


def test_otlp_protobuf_out_of_range_time_is_a_partial_success(srv: InProcessServer) -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    attr = rl.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", "otlp-pb-big"
    records = rl.scope_logs.add().log_records
    for ts, line in ((U64_MAX, "bad"), (time.time_ns(), "good")):
        rec = records.add()
        rec.time_unix_nano, rec.body.string_value = ts, line
    r = srv.post("/otlp/v1/logs", content=req.SerializeToString(),
                 headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-protobuf"
    answer = ExportLogsServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_log_records == 1
    assert answer.partial_success.error_message
    assert _lines(srv, '{service_name="otlp-pb-big"}') == ["good"]


# --- _bulk: timestamps out of range, documents nested too deep -------------------------

def _bulk(srv: InProcessServer, index: str, docs: list[bytes]) -> dict[str, Any]:
    body = b"".join(b'{"index":{}}\n' + d + b"\n" for d in docs)
    r = srv.post(f"/{index}/_bulk", content=body,
                 headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.mark.parametrize("stamp", ["1e308", '"0001-01-01T00:00:00Z"', '"2300-01-01T00:00:00Z"',
                                   "-1e308", '"99999999999999999999999"'])
def test_bulk_timestamp_out_of_range_fails_only_its_item(srv: InProcessServer,
                                                         stamp: str) -> None:
    index = f"far{abs(hash(stamp)) % 10**8}"
    out = _bulk(srv, index, [b'{"@timestamp":' + stamp.encode() + b',"m":"bad"}',
                             b'{"m":"good"}'])
    assert out["errors"] is True
    bad, good = (next(iter(it.values())) for it in out["items"])
    assert bad["status"] == 400 and good["status"] == 201
    assert bad["error"]["type"] == "document_parsing_exception"
    assert "cannot be stored in nanosecond resolution" in bad["error"]["reason"]
    assert [json.loads(x)["m"] for x in _lines(srv, f'{{index="{index}"}}')] == ["good"]


def test_bulk_documents_not_stored_are_counted(srv: InProcessServer) -> None:
    def counted() -> float:
        text = srv.get("/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("sluiceway_discarded_samples_total{")
                   and 'reason="invalid_document"' in line)

    before = counted()
    _bulk(srv, "counted", [b'{"@timestamp":1e308}', b'{"a":' + b"[" * 300 + b"]" * 300 + b"}",
                           b'{"m":"good"}'])
    assert counted() == before + 2


def test_bulk_document_nested_too_deep_fails_only_its_item(srv: InProcessServer) -> None:
    deep = b'{"a":' + b"[" * 300 + b"]" * 300 + b"}"
    out = _bulk(srv, "deepdoc", [deep, b'{"m":"good"}'])
    bad, good = (next(iter(it.values())) for it in out["items"])
    assert bad["status"] == 400 and good["status"] == 201
    assert bad["error"]["type"] == "document_parsing_exception"
    assert "nested" in bad["error"]["reason"]
    assert [json.loads(x)["m"] for x in _lines(srv, '{index="deepdoc"}')] == ["good"]


# --- tenant ids up to Loki's 150 characters -------------------------------------------

LONG_TENANTS = ["a" * 121 + ".!*'()", "(" * 150, "x" * 150, "Ab9_-.!*'()" * 13 + "z" * 7]


@pytest.mark.parametrize("tenant", LONG_TENANTS)
def test_long_tenant_ids_push_and_query(srv: InProcessServer, tenant: str) -> None:
    assert 127 <= len(tenant) <= 150
    body = {"streams": [{"stream": {"app": "long-tenant"},
                         "values": [[str(time.time_ns()), f"for {len(tenant)}"]]}]}
    r = srv.post("/loki/api/v1/push", json=body, headers={"X-Scope-OrgID": tenant})
    assert r.status_code == 204, r.text
    assert _lines(srv, '{app="long-tenant"}', tenant) == [f"for {len(tenant)}"]


def test_long_tenant_data_survives_a_restart(tmp_path: Path) -> None:
    tenant = "q" * 140 + "(!*'.)"
    s = InProcessServer(tmp_path / "data")
    try:
        body = {"streams": [{"stream": {"app": "restart"},
                             "values": [[str(time.time_ns()), "still here"]]}]}
        r = s.post("/loki/api/v1/push", json=body, headers={"X-Scope-OrgID": tenant})
        assert r.status_code == 204, r.text
        s.store.flush_all()
    finally:
        s.close()
    names = [p.name for p in (tmp_path / "data" / "tenants").iterdir() if p.name != "index"]
    assert len(names) == 1 and len(names[0].encode()) <= 255
    assert [p.name for p in (tmp_path / "data" / "tenants" / "index").iterdir()] == names
    s = InProcessServer(tmp_path / "data")
    try:
        assert _lines(s, '{app="restart"}', tenant) == ["still here"]
    finally:
        s.close()


def test_short_tenant_directories_keep_their_names(tmp_path: Path) -> None:
    """Data dirs written before long ids were supported are found again."""
    s = InProcessServer(tmp_path / "data")
    try:
        for tenant in ("team-a", "with.dot"):
            body = {"streams": [{"stream": {"app": "short"},
                                 "values": [[str(time.time_ns()), tenant]]}]}
            r = s.post("/loki/api/v1/push", json=body, headers={"X-Scope-OrgID": tenant})
            assert r.status_code == 204, r.text
    finally:
        s.close()
    names = sorted(p.name for p in (tmp_path / "data" / "tenants").iterdir()
                   if p.name != "index")  # the index objects' prefix, no tenant
    assert names == ["t-team-a", "x-" + b"with.dot".hex()]
    s = InProcessServer(tmp_path / "data")
    try:
        for tenant in ("team-a", "with.dot"):
            assert _lines(s, '{app="short"}', tenant) == [tenant]
    finally:
        s.close()


# --- POST forms on every read endpoint ------------------------------------------------

@pytest.fixture(scope="module")
def form_data(srv: InProcessServer) -> int:
    now = time.time_ns()
    body = {"streams": [{"stream": {"app": "form", "env": "prod"},
                         "values": [[str(now - 10**9), "first"], [str(now), "second"]]}]}
    assert srv.post("/loki/api/v1/push", json=body).status_code == 204
    return now


def _window(now: int) -> dict[str, str]:
    return {"start": str(now - 60 * 10**9), "end": str(now + 10**9)}


def test_post_form_query_range(srv: InProcessServer, form_data: int) -> None:
    for path in ("/loki/api/v1/query_range", "/api/prom/query"):
        r = srv.post(path, data={"query": '{app="form"}', "limit": "1",
                                 **_window(form_data)})
        assert r.status_code == 200, r.text
        assert [v[1] for s in r.json()["data"]["result"] for v in s["values"]] == ["second"]


def test_post_form_query(srv: InProcessServer, form_data: int) -> None:
    r = srv.post("/loki/api/v1/query", data={"query": 'count_over_time({app="form"}[5m])',
                                             "time": str(form_data + 10**9)})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["result"][0]["value"][1] == "2"


def test_post_form_labels_and_values(srv: InProcessServer, form_data: int) -> None:
    for path in ("/loki/api/v1/labels", "/loki/api/v1/label"):
        r = srv.post(path, data={"query": '{app="form"}', **_window(form_data)})
        assert r.status_code == 200, r.text
        assert r.json()["data"] == ["app", "env"]
    r = srv.post("/loki/api/v1/label/env/values", data={"query": '{app="form"}',
                                                         **_window(form_data)})
    assert r.status_code == 200 and r.json()["data"] == ["prod"], r.text


def test_post_form_series(srv: InProcessServer, form_data: int) -> None:
    r = srv.post("/loki/api/v1/series", data={"match[]": '{app="form"}', **_window(form_data)})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [{"app": "form", "env": "prod"}]


def test_post_form_index_endpoints(srv: InProcessServer, form_data: int) -> None:
    form = {"query": '{app="form"}', **_window(form_data)}
    r = srv.post("/loki/api/v1/index/stats", data=form)
    assert r.status_code == 200 and r.json()["entries"] == 2, r.text
    r = srv.post("/loki/api/v1/index/volume", data=form)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["result"][0]["value"][1] == str(len("first") + len("second"))
    r = srv.post("/loki/api/v1/index/volume_range", data={**form, "step": "60"})
    assert r.status_code == 200, r.text
    assert sum(int(v[1]) for v in r.json()["data"]["result"][0]["values"]) == 11
    r = srv.post("/loki/api/v1/format_query", data={"query": '{app="form"}|="x"'})
    assert r.status_code == 200 and r.json()["data"] == '{app="form"} |= "x"', r.text


# --- extreme query parameters ---------------------------------------------------------

METRIC = 'count_over_time({app="form"}[1m])'
EXTREME = [
    ("/loki/api/v1/query_range", {"query": 'rate({app="form"}[1m] offset 8760000h)'},
     "duration out of range"),
    ("/loki/api/v1/query_range", {"query": 'rate({app="form"}[106752d])'},
     "duration out of range"),
    ("/loki/api/v1/query", {"query": 'rate({app="form"}[106752d])'}, "duration out of range"),
    ("/loki/api/v1/query_range", {"query": METRIC, "start": "0001-01-01T00:00:00Z"},
     "out of range"),
    ("/loki/api/v1/query_range", {"query": METRIC, "end": "9999-12-31T23:59:59Z"},
     "out of range"),
    ("/loki/api/v1/query", {"query": METRIC, "time": "9999-12-31T23:59:59Z"}, "out of range"),
    ("/loki/api/v1/query", {"query": METRIC, "time": "0001-01-01T00:00:00Z"}, "out of range"),
    ("/loki/api/v1/query", {"query": METRIC, "time": "1.5e400"}, "time"),
    ("/loki/api/v1/query", {"query": METRIC, "time": "99999999999999999999999"},
     "out of range"),
    ("/loki/api/v1/labels", {"start": "0001-01-01T00:00:00Z"}, "out of range"),
    ("/loki/api/v1/query_range", {"query": METRIC, "step": "10000000h"},
     'cannot parse "10000000h" to a valid duration'),
    ("/loki/api/v1/query_range", {"query": METRIC, "step": "1e300"},
     'cannot parse "1e300" to a valid duration. It overflows int64'),
    ("/loki/api/v1/query_range", {"query": '{app="form"}', "interval": "1e300"},
     "It overflows int64"),
    ("/loki/api/v1/query_range", {"query": '{app="form"}', "since": "1e300"},
     "It overflows int64"),
    ("/loki/api/v1/query_range", {"query": '{app="form"}', "since": "-1e300"},
     "It overflows int64"),
    ("/loki/api/v1/series", {"match[]": '{app="form"}', "since": "1e300"},
     "It overflows int64"),
    ("/loki/api/v1/index/volume_range", {"query": '{app="form"}', "step": "0"},
     "zero or negative query resolution step widths are not accepted"),
    ("/loki/api/v1/index/volume_range", {"query": '{app="form"}', "step": "1ns"},
     "exceeded maximum resolution of 11,000 points"),
    ("/loki/api/v1/index/volume_range", {"query": '{app="form"}', "step": "-300"},
     "zero or negative query resolution step widths are not accepted"),
]


@pytest.mark.parametrize(("path", "params", "message"), EXTREME,
                         ids=[f"{p.rsplit('/', 1)[1]}-{'-'.join(q)}" for p, q, _ in EXTREME])
def test_extreme_parameters_are_400(srv: InProcessServer, path: str, params: dict[str, str],
                                    message: str) -> None:
    r = srv.get(path, params=params)
    assert r.status_code == 400, r.text
    assert message in r.text


@pytest.mark.parametrize("query", [
    'count_over_time({app="form"}[106751d] offset 106751d)',
    'count_over_time({app="form"}[1m] offset -106751d)',
    'absent_over_time({app="form"}[106751d] offset 106751d)',
    'sum_over_time({app="form"} | unwrap x [106751d] offset 106751d)',
])
def test_largest_durations_do_not_overflow(srv: InProcessServer, form_data: int,
                                           query: str) -> None:
    """Times minus range minus offset fall outside int64 nanoseconds: no data there."""
    r = srv.get("/loki/api/v1/query", params={"query": query, "time": str(form_data)})
    assert r.status_code == 200, r.text


def test_step_reaching_past_2262_is_400(srv: InProcessServer) -> None:
    r = srv.get("/loki/api/v1/query_range", params={
        "query": METRIC, "start": "2262-04-01T00:00:00Z", "end": "2262-04-10T00:00:00Z",
        "step": "2000000h"})
    assert r.status_code == 400, r.text


def test_fractional_seconds_keep_their_milliseconds(srv: InProcessServer) -> None:
    """`start=1700000000.5` is half a second after `1700000000` (the fuzz suite found the
    fraction dropped, and 1.8e305 a 500)."""
    sec = time.time_ns() // 10**9 - 60
    body = {"streams": [{"stream": {"app": "fraction"},
                         "values": [[str(sec * 10**9), "whole"],
                                    [str(sec * 10**9 + 600_000_000), "later"]]}]}
    assert srv.post("/loki/api/v1/push", json=body).status_code == 204
    r = srv.get("/loki/api/v1/query_range", params={"query": '{app="fraction"}',
                                                     "start": f"{sec}.5", "end": f"{sec + 1}.0"})
    assert r.status_code == 200, r.text
    assert [v[1] for s in r.json()["data"]["result"] for v in s["values"]] == ["later"]
    r = srv.get("/loki/api/v1/query_range", params={"query": '{app="fraction"}',
                                                     "start": "1.797693134862316e+305"})
    assert r.status_code == 400 and "out of range" in r.text


# --- deep expressions -----------------------------------------------------------------

CHAIN = "+".join(["1"] * 2000)


def test_flat_chain_of_2000_additions_is_evaluated(srv: InProcessServer) -> None:
    r = srv.get("/loki/api/v1/query", params={"query": CHAIN})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["result"][1] == "2000"


def test_flat_chain_of_2000_additions_is_formatted(srv: InProcessServer) -> None:
    r = srv.get("/loki/api/v1/format_query", params={"query": CHAIN})
    assert r.status_code == 200, r.text
    text = r.json()["data"]
    assert len(text) < 100_000
    again = srv.get("/loki/api/v1/format_query", params={"query": text})
    assert again.json()["data"] == text


def test_long_label_filter_chain_is_evaluated(srv: InProcessServer, form_data: int) -> None:
    chain = " and ".join(['env="prod"'] * 1000) + " or " + " or ".join(['env="x"'] * 1000)
    query = '{app="form"} | ' + chain
    r = srv.get("/loki/api/v1/query_range", params={"query": query, **_window(form_data)})
    assert r.status_code == 200, r.text
    assert sorted(v[1] for s in r.json()["data"]["result"] for v in s["values"]) == \
        ["first", "second"]
    r = srv.get("/loki/api/v1/format_query", params={"query": query})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("query", [
    "(" * 2000 + "1" + ")" * 2000,
    "^".join(["2"] * 2000),
    "sum(" * 500 + 'rate({a="b"}[1m])' + ")" * 500,
    '{a="b"} | ' + "(" * 2000 + 'x="1"' + ")" * 2000,
])
def test_deeply_nested_expressions_are_400(srv: InProcessServer, query: str) -> None:
    for path in ("/loki/api/v1/query", "/loki/api/v1/format_query"):
        r = srv.get(path, params={"query": query})
        assert r.status_code == 400, r.text
        assert "nested too deeply" in r.text


# --- live tail with auth_enabled and no tenant ----------------------------------------

def test_tail_without_tenant_under_auth_is_401(tmp_path: Path) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from tests.procs import ServerProcess

    cfg = tmp_path / "auth.yaml"
    cfg.write_text("server:\n  auth_enabled: true\n")
    srv = ServerProcess(tmp_path / "data", config=cfg).start()
    try:
        url = f"ws://127.0.0.1:{srv.port}/loki/api/v1/tail?query=%7Bapp%3D%22x%22%7D"
        with pytest.raises(InvalidStatus) as info, connect(url, open_timeout=10):
            pass
        assert info.value.response.status_code == 401
        assert b"no org id" in info.value.response.body
        # With a tenant the same tail opens, and the server still answers.
        with connect(url, open_timeout=10, additional_headers={"X-Scope-OrgID": "t1"}):
            pass
        assert httpx.get(f"{srv.url}/ready", timeout=10).status_code == 200
    finally:
        srv.stop()
