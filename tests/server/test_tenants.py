"""`X-Scope-OrgID` as Loki reads it: one tenant everywhere unless multi-tenant queries are
enabled (`querier.multi_tenant_queries_enabled`); then reads take several, sorted and
de-duplicated, at most 100, and every stream carries `__tenant_id__`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.inproc import InProcessServer, ThreadServer

NOW = time.time_ns()
START, END = str(NOW - 3600 * 10**9), str(NOW + 10**9)
READS = [
    ("/loki/api/v1/query_range", {"query": '{job="x"}'}),
    ("/loki/api/v1/query", {"query": 'sum(count_over_time({job="x"}[1h]))', "time": END}),
    ("/loki/api/v1/labels", {}),
    ("/loki/api/v1/label/job/values", {}),
    ("/loki/api/v1/series", {"match[]": '{job="x"}'}),
    ("/loki/api/v1/index/stats", {"query": '{job="x"}'}),
    ("/loki/api/v1/index/volume", {"query": '{job="x"}'}),
    ("/loki/api/v1/index/volume_range", {"query": '{job="x"}', "step": "60"}),
]


def push(app: InProcessServer, tenant: str, lines: list[str], **labels: str) -> None:
    body = {"streams": [{"stream": {"job": "x", **labels},
                         "values": [[str(NOW - 10**9 * (i + 1)), line]
                                    for i, line in enumerate(lines)]}]}
    r = app.post("/loki/api/v1/push", content=orjson.dumps(body),
                 headers={"Content-Type": "application/json", "X-Scope-OrgID": tenant})
    assert r.status_code == 204, r.text


def get(app: InProcessServer, path: str, orgid: str, **params: str) -> Any:
    r = app.get(path, params={"start": START, "end": END, **params},
                headers={"X-Scope-OrgID": orgid})
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


def count(app: InProcessServer, orgid: str, by: str = "") -> dict[str, int]:
    q = f'sum {by} (count_over_time({{job="x"}}[2h]))'
    res = get(app, "/loki/api/v1/query", orgid, query=q, time=END)["data"]["result"]
    return {",".join(r["metric"].values()): int(r["value"][1]) for r in res}


@pytest.fixture
def single(tmp_path: Path) -> Iterator[InProcessServer]:
    app = InProcessServer(tmp_path / "data")
    push(app, "a", ["a1", "a2", "a3"])
    push(app, "b", ["b1"])
    push(app, "fake", ["f1", "f2"])
    yield app
    app.close()


@pytest.fixture
def multi(tmp_path: Path) -> Iterator[InProcessServer]:
    app = InProcessServer(tmp_path / "data", **{"querier.multi_tenant_queries_enabled": True})
    push(app, "a", ["a1", "a2", "a3"])
    push(app, "b", ["b1"])
    yield app
    app.close()


def test_a_repeated_tenant_is_counted_once(single: InProcessServer) -> None:
    assert count(single, "a|a") == {"": 3}
    streams = get(single, "/loki/api/v1/query_range", "a|a", query='{job="x"}')
    assert sorted(v[1] for s in streams["data"]["result"] for v in s["values"]) == [
        "a1", "a2", "a3"]
    assert get(single, "/loki/api/v1/index/stats", "a|a", query='{job="x"}')["entries"] == 3


def test_fake_5000_times_reads_the_tenant_once(single: InProcessServer) -> None:
    orgid = "|".join(["fake"] * 5000)
    vol = get(single, "/loki/api/v1/index/volume", orgid, query='{job="x"}')
    assert vol["data"]["result"][0]["value"][1] == str(len("f1") + len("f2"))
    assert get(single, "/loki/api/v1/index/stats", orgid, query='{job="x"}')["entries"] == 2


@pytest.mark.parametrize(("path", "params"), READS)
def test_several_tenants_on_reads_are_400_unless_enabled(single: InProcessServer, path: str,
                                                         params: dict[str, str]) -> None:
    r = single.get(path, params={"start": START, "end": END, **params},
                   headers={"X-Scope-OrgID": "a|b"})
    assert r.status_code == 400 and r.text == "multiple org IDs present\n"


@pytest.mark.parametrize(("path", "params"), READS)
def test_every_read_takes_several_tenants_when_enabled(multi: InProcessServer, path: str,
                                                       params: dict[str, str]) -> None:
    get(multi, path, "a|b", **params)


def test_multi_tenant_streams_carry_the_tenant_label(multi: InProcessServer) -> None:
    res = get(multi, "/loki/api/v1/query_range", "b|a", query='{job="x"}')["data"]["result"]
    assert sorted((s["stream"]["__tenant_id__"], len(s["values"])) for s in res) == [
        ("a", 3), ("b", 1)]
    assert count(multi, "b|a", "by (__tenant_id__)") == {"a": 3, "b": 1}
    assert count(multi, "b|a|b|a") == {"": 4}  # sorted and de-duplicated
    assert count(multi, "a") == {"": 3}  # one tenant: no label, as in Loki
    one = get(multi, "/loki/api/v1/query_range", "a|b", query='{job="x", __tenant_id__="b"}')
    # (`detected_level`: structured metadata, which Loki merges into the stream labels)
    assert [s["stream"] for s in one["data"]["result"]] == [
        {"job": "x", "__tenant_id__": "b", "detected_level": "unknown"}]
    assert count(multi, "a|b", "by (__tenant_id__)") == {"a": 3, "b": 1}
    labels = get(multi, "/loki/api/v1/labels", "a|b")["data"]
    assert labels == ["__tenant_id__", "job"]
    assert get(multi, "/loki/api/v1/label/__tenant_id__/values", "a|b")["data"] == ["a", "b"]
    series = get(multi, "/loki/api/v1/series", "a|b", **{"match[]": '{job="x"}'})["data"]
    assert sorted(s["__tenant_id__"] for s in series) == ["a", "b"]
    stats = get(multi, "/loki/api/v1/index/stats", "a|b",
                query='{job="x", __tenant_id__=~"a|c"}')
    assert stats["entries"] == 3


def test_a_stored_tenant_label_cannot_pass_for_another_tenant(multi: InProcessServer) -> None:
    push(multi, "a", ["spoofed"], __tenant_id__="b")
    res = get(multi, "/loki/api/v1/query_range", "a|b",
              query='{job="x", __tenant_id__="b"}')["data"]["result"]
    assert [v[1] for s in res for v in s["values"]] == ["b1"]
    res = get(multi, "/loki/api/v1/query_range", "a|b",
              query='{original___tenant_id__="b"}')["data"]["result"]
    assert [s["stream"] for s in res] == [
        {"job": "x", "original___tenant_id__": "b", "__tenant_id__": "a",
         "detected_level": "unknown"}]


def test_a_selector_of_tenant_matchers_only_is_refused(multi: InProcessServer) -> None:
    r = multi.get("/loki/api/v1/query_range", params={"query": '{__tenant_id__="a"}'},
                  headers={"X-Scope-OrgID": "a|b"})
    assert r.status_code == 400 and "at least one regexp or equality matcher" in r.text


def test_at_most_100_tenants_in_a_query(multi: InProcessServer) -> None:
    ok = "|".join(f"t{i}" for i in range(100))
    get(multi, "/loki/api/v1/labels", ok + "|t0")
    r = multi.get("/loki/api/v1/labels", headers={"X-Scope-OrgID": ok + "|t100"})
    assert r.status_code == 400 and "at most 100" in r.text


@pytest.mark.parametrize(("path", "content_type", "body"), [
    ("/loki/api/v1/push", "application/json", b'{"streams":[]}'),
    ("/otlp/v1/logs", "application/json", b"{}"),
    ("/_bulk", "application/x-ndjson", b'{"index":{"_index":"i"}}\n{"m":1}\n'),
])
def test_several_tenants_on_writes_are_400_even_when_enabled(
        multi: InProcessServer, path: str, content_type: str, body: bytes) -> None:
    r = multi.post(path, content=body,
                   headers={"Content-Type": content_type, "X-Scope-OrgID": "a|b"})
    assert r.status_code == 400 and "multiple org IDs present" in r.text
    r = multi.post(path, content=body,
                   headers={"Content-Type": content_type, "X-Scope-OrgID": "a|a"})
    assert r.status_code in (200, 204), r.text


@pytest.mark.parametrize(("orgid", "message"), [
    ("x" * 151, "tenant ID is too long: max 150 characters"),
    ("a/b", "tenant ID 'a/b' contains unsupported character '/'"),
    ("..", "tenant ID is '.' or '..'"),
    ("|a", "tenant ID is empty"),
])
def test_tenant_ids_are_validated_as_loki_does(multi: InProcessServer, orgid: str,
                                               message: str) -> None:
    r = multi.get("/loki/api/v1/labels", headers={"X-Scope-OrgID": orgid})
    assert r.status_code == 400 and message in r.text, r.text
    r = multi.post("/loki/api/v1/push", content=b'{"streams":[]}',
                   headers={"Content-Type": "application/json", "X-Scope-OrgID": orgid})
    assert r.status_code == 400 and message in r.text, r.text
    get(multi, "/loki/api/v1/labels", "x" * 150)


def test_tail_with_several_tenants_is_400_before_the_upgrade(tmp_path: Path) -> None:
    # Tail takes one tenant whether multi-tenant queries are enabled or not.
    srv = ThreadServer(tmp_path / "data").start()
    try:
        url = f"ws://127.0.0.1:{srv.port}/loki/api/v1/tail?query=%7Bjob%3D%22x%22%7D"
        for kw in ({"additional_headers": {"X-Scope-OrgID": "a|b"}}, {}):
            target = url if kw else url + "&orgId=a%7Cb"
            with pytest.raises(InvalidStatus) as err:
                connect(target, open_timeout=10, **kw).close()
            assert err.value.response.status_code == 400
            assert b"multiple org IDs present" in err.value.response.body
        with connect(url, additional_headers={"X-Scope-OrgID": "a|a"}, open_timeout=10):
            pass
    finally:
        srv.stop()
