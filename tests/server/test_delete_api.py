"""Loki's delete API in process (issue 15): requests made, listed and cancelled with
Loki's shapes and texts; their lines left out of every read at once (query_range, metric
queries through the results cache, counts that would come from block footers, volume);
`deletion_mode`; the compactor removing them (chunks written again with their filters,
whole chunks dropped); per-stream retention with Loki's precedence."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from sluiceway.store._chunkfmt import decode_chunk, read_footer
from tests.inproc import InProcessServer

S = 10**9
HOUR = 3600 * S
# Two hours ago, on a minute edge: closed splits (cached), not too old to push.
T0 = (time.time_ns() - 2 * HOUR) // (60 * S) * (60 * S)
DELETE = "/loki/api/v1/delete"
ON = {"compactor.retention_enabled": True}


def _server(tmp_path: Path, **overrides: Any) -> InProcessServer:
    return InProcessServer(tmp_path / "data", **{**ON, **overrides})


def _push(srv: InProcessServer, labels: dict[str, str], lines: list[tuple[int, str]],
          tenant: str | None = None) -> None:
    body = orjson.dumps({"streams": [{"stream": labels,
                                      "values": [[str(t), x] for t, x in lines]}]})
    headers = {"Content-Type": "application/json"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    r = srv.post("/loki/api/v1/push", content=body, headers=headers)
    assert r.status_code == 204, r.text


def _api_lines() -> list[tuple[int, str]]:
    """100 lines over 100 minutes, every 5th a secret."""
    return [(T0 + i * 60 * S + 1, f"GET /api/{'secret' if i % 5 == 0 else 'public'} n={i}")
            for i in range(100)]


def _lines(srv: InProcessServer, q: str, tenant: str | None = None) -> list[str]:
    r = srv.get("/loki/api/v1/query_range", params={
        "query": q, "start": str(T0 - HOUR), "end": str(T0 + 2 * HOUR), "limit": "1000",
        "direction": "forward"}, headers={"X-Scope-OrgID": tenant} if tenant else {})
    assert r.status_code == 200, r.text
    return [v[1] for s in r.json()["data"]["result"] for v in s["values"]]


def _count(srv: InProcessServer, q: str) -> tuple[float, dict[str, Any]]:
    r = srv.get("/loki/api/v1/query_range", params={
        "query": f"sum(count_over_time({q}[1m]))", "start": str(T0), "end": str(T0 + 100 * 60 * S),
        "step": "60"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    return sum(float(v[1]) for s in data["result"] for v in s["values"]), data["stats"]


def _delete(srv: InProcessServer, query: str, start: int = T0 // S - 60,
            end: int | None = None, tenant: str | None = None) -> str:
    params = {"query": query, "start": str(start), "end": str(end or int(time.time()) - 1)}
    r = srv.post(DELETE, params=params, headers={"X-Scope-OrgID": tenant} if tenant else {})
    assert r.status_code == 204, r.text
    assert r.text == ""
    rid = r.headers["X-Delete-Request-Id"]
    assert len(rid) == 8 and int(rid, 16) >= 0
    return rid


def test_requests_listed_and_cancelled_with_lokis_shapes_and_texts(tmp_path: Path) -> None:
    srv = _server(tmp_path)
    try:
        assert srv.get(DELETE).json() == []
        first = _delete(srv, '{app="api"} |= "/api/orders"', 1796396400 - 10**8,
                        1796400000 - 10**8)
        second = _delete(srv, '{app="worker"} |= "queue=emails"')
        listed = srv.get(DELETE)
        assert listed.headers["content-type"].startswith("application/json")
        got = listed.json()
        assert [r["request_id"] for r in got] == [first, second]
        assert got[0] | {"created_at": 0} == {
            "request_id": first, "start_time": 1796396400 - 10**8,
            "end_time": 1796400000 - 10**8, "query": '{app="api"} |= "/api/orders"',
            "status": "received", "created_at": 0, "user_id": ""}
        assert abs(got[0]["created_at"] - time.time()) < 600
        assert srv.request("DELETE", DELETE, params={"request_id": second}).status_code == 204
        assert [r["request_id"] for r in srv.get(DELETE).json()] == [first]
        unknown = srv.request("DELETE", DELETE, params={"request_id": "deadbeef"})
        assert (unknown.status_code, unknown.text) == (
            404, "could not find delete request with given id\n")
        now = int(time.time())
        for params, text in [
            ({"start": str(now - 60)}, "query not set"),
            ({"query": '{app="a"}'}, "start time not set"),
            ({"query": '{app="a"}', "start": str(now * 10**9)},
             "invalid start time: require unix seconds or RFC3339 format"),
            ({"query": '{app="a"}', "start": str(now - 60), "end": "soon"},
             "invalid end time: require unix seconds or RFC3339 format"),
            ({"query": '{app="a"}', "start": str(now - 60), "end": str(now + 86400)},
             "deletes in the future are not allowed"),
            ({"query": '{app="a"}', "start": str(now - 60), "end": str(now - 120)},
             "start time can't be greater than end time"),
            ({"query": '{app="a"} |= "x"', "start": str(now - 60), "end": str(now - 60)},
             "difference between start time and end time must be at least one second"),
            ({"query": '{app="a"} |= "x"', "start": str(now - 60), "max_interval": "1x"},
             "invalid max_interval: valid time units are 's', 'm', 'h'"),
        ]:
            r = srv.post(DELETE, params=params)
            assert (r.status_code, r.text) == (400, text + "\n"), params
        bad = srv.post(DELETE, params={"query": '{app="a"', "start": str(now - 60)})
        assert bad.status_code == 400 and bad.text.startswith("invalid query expression: ")
        rfc = srv.post(DELETE, params={"query": '{app="a"}', "start": "2020-01-01T00:00:00Z",
                                       "end": "2020-01-02T00:00:00.5Z"})
        assert rfc.status_code == 204
        mine = [r for r in srv.get(DELETE).json() if r["query"] == '{app="a"}']
        assert (mine[0]["start_time"], mine[0]["end_time"]) == (1577836800, 1577923200.5)
        # Another tenant sees none of them.
        assert srv.get(DELETE, headers={"X-Scope-OrgID": "other"}).json() == []
    finally:
        srv.close()


def test_lines_disappear_from_reads_at_once(tmp_path: Path) -> None:
    srv = _server(tmp_path, **{"limits.deletion_mode": "filter-only"})
    try:
        _push(srv, {"app": "api"}, _api_lines())
        _push(srv, {"app": "web"}, [(T0 + 1, "GET /api/secret from web")])
        assert srv.post("/flush").status_code == 204
        srv.store.compact(min_age_s=0)  # footers with counts: a count may skip reading
        before, stats = _count(srv, '{app="api"}')
        assert before == 100 and stats["summary"]["totalBlocksFromMetadata"] > 0
        again, _ = _count(srv, '{app="api"}')  # cached splits now
        assert again == 100
        vol = srv.get("/loki/api/v1/index/volume", params={
            "query": '{app="api"}', "start": str(T0 - HOUR), "end": str(T0 + 2 * HOUR)})
        vol_before = int(vol.json()["data"]["result"][0]["value"][1])

        _delete(srv, '{app="api"} |= "secret"')
        lines = _lines(srv, '{app="api"}')
        assert len(lines) == 80 and not any("secret" in x for x in lines)
        assert _lines(srv, '{app=~".+"} |= "secret"') == ["GET /api/secret from web"]
        after, _ = _count(srv, '{app="api"}')  # the cached splits are stale: recomputed
        assert after == 80
        vol = srv.get("/loki/api/v1/index/volume", params={
            "query": '{app="api"}', "start": str(T0 - HOUR), "end": str(T0 + 2 * HOUR)})
        gone = sum(len(f"GET /api/secret n={i}") for i in range(0, 100, 5))
        assert int(vol.json()["data"]["result"][0]["value"][1]) == vol_before - gone
        # Series and index stats come from the index, as in Loki: unchanged until the
        # compactor removed the lines.
        stats_r = srv.get("/loki/api/v1/index/stats", params={
            "query": '{app="api"}', "start": str(T0 - HOUR), "end": str(T0 + 2 * HOUR)})
        assert stats_r.json()["entries"] == 100
        # filter-only: the compactor leaves them in the chunks.
        srv.store.compact(min_age_s=0)
        assert srv.get(DELETE).json()[0]["status"] == "received"
        assert srv.store.lines_deleted == 0
    finally:
        srv.close()


def test_a_cancelled_request_gives_its_lines_back(tmp_path: Path) -> None:
    srv = _server(tmp_path)
    try:
        _push(srv, {"app": "api"}, _api_lines())
        rid = _delete(srv, '{app="api"} |= "secret"')
        assert len(_lines(srv, '{app="api"}')) == 80
        assert srv.request("DELETE", DELETE, params={"request_id": rid}).status_code == 204
        assert len(_lines(srv, '{app="api"}')) == 100
    finally:
        srv.close()


def test_deletion_mode_disabled_and_api_without_retention(tmp_path: Path) -> None:
    srv = _server(tmp_path / "a", **{"limits.deletion_mode": "disabled"})
    try:
        for method in ("GET", "POST", "DELETE"):
            r = srv.request(method, DELETE, params={"query": '{a="b"}', "start": "1"})
            assert (r.status_code, r.text) == (403, "deletion is not available for this tenant\n")
    finally:
        srv.close()
    off = InProcessServer(tmp_path / "b" / "data")  # compactor.retention_enabled: false
    try:
        r = off.get(DELETE)
        assert r.status_code == 404 and "compactor.retention_enabled" in r.text
    finally:
        off.close()


def _chunk_lines(srv: InProcessServer, tenant_dir: str = "t-fake") -> list[str]:
    out = []
    for f in (srv.cfg.storage.data_dir / "tenants" / tenant_dir / "chunks").rglob("*.chunk"):
        data = f.read_bytes()
        out += [x.decode() for x in decode_chunk(data, {}).lines()]
    return out


def test_compactor_removes_lines_after_the_cancel_period(tmp_path: Path) -> None:
    srv = _server(tmp_path, **{"compactor.delete_request_cancel_period": "0s",
                               "compactor.retention_delete_delay": "0s"})
    try:
        _push(srv, {"app": "api"}, _api_lines())
        _push(srv, {"app": "gone"}, [(T0 + i * S, f"all of it {i}") for i in range(10)])
        assert srv.post("/flush").status_code == 204
        _delete(srv, '{app="api"} |= "secret"')
        _delete(srv, '{app="gone"}')
        r = srv.post("/sluiceway/api/v1/compact")
        assert r.json()["data"]["lines_deleted"] == 30
        assert {x["status"] for x in srv.get(DELETE).json()} == {"processed"}
        srv.store.collect_garbage()  # the replaced chunks (delete delay 0)
        on_disk = _chunk_lines(srv)
        assert len(on_disk) == 80 and not any("secret" in x or "all of it" in x
                                               for x in on_disk)
        # The rewritten chunk has its block filters and counts, like any compacted one.
        ts = srv.store.tenants["fake"]
        (api,) = [s for s in ts.stream_list() if s.labels == {"app": "api"}]
        (ref,) = api.chunks
        data = (srv.cfg.storage.data_dir / "tenants" / "t-fake" / ref.path).read_bytes()
        footer = read_footer(lambda o, n: data[o:o + n], len(data))
        assert footer.n == 80 and all(b.filters for b in footer.blocks)
        # The stream wholly deleted is gone (its chunk dropped, not rewritten).
        assert not [s for s in ts.stream_list() if s.labels == {"app": "gone"}]
        assert len(_lines(srv, '{app="api"}')) == 80
        again = srv.request("DELETE", DELETE,
                            params={"request_id": srv.get(DELETE).json()[0]["request_id"]})
        assert (again.status_code, again.text) == (
            400, "deletion of request which is in process or already processed is not "
                 "allowed\n")
    finally:
        srv.close()


def test_per_stream_retention_with_lokis_precedence(tmp_path: Path) -> None:
    rt = tmp_path / "rt.yaml"
    rt.write_text("overrides:\n  team-b:\n    retention_stream: []\n")
    srv = _server(tmp_path, **{
        "runtime_config.file": str(rt),
        "limits.retention_period": "0s",
        "limits.retention_stream": [
            {"selector": '{app="short"}', "period": "1h", "priority": 1},
            {"selector": '{app=~"short|mid"}', "period": "10h", "priority": 2},
            {"selector": '{app="mid"}', "period": "90m", "priority": 2},
            {"selector": '{app="long"}', "period": "30d"}]})
    try:
        old = [(T0 - HOUR + i, f"line {i}") for i in range(3)]  # three hours old
        for app in ("short", "mid", "long", "other"):
            _push(srv, {"app": app}, old)
            _push(srv, {"app": app}, old, tenant="team-b")
        assert srv.post("/flush").status_code == 204
        assert srv.store.apply_retention() == 1  # {app="mid"}: priority 2, shortest: 90m
        kept = {s.labels["app"] for s in srv.store.tenants["fake"].stream_list()}
        assert kept == {"short", "long", "other"}  # short: priority 2 (10h) beat 1h
        assert len(_lines(srv, '{app="mid"}')) == 0
        assert {s.labels["app"] for s in srv.store.tenants["team-b"].stream_list()} == {
            "short", "mid", "long", "other"}  # its override has no stream rules
    finally:
        srv.close()


@pytest.mark.parametrize("rules, labels, want", [
    ([], {"a": "1"}, 7.0),
    ([('{a="1"}', 5.0, 0), ('{a="1"}', 3.0, 0)], {"a": "1"}, 3.0),
    ([('{a="1"}', 5.0, 1), ('{a="1"}', 3.0, 0)], {"a": "1"}, 5.0),
    ([('{a="2"}', 5.0, 9)], {"a": "1"}, 7.0),
])
def test_stream_retention_precedence(rules: list[tuple[str, float, int]],
                                     labels: dict[str, str], want: float) -> None:
    from sluiceway.logql import parse_selector
    from sluiceway.server._deletion import stream_retention
    compiled = [(parse_selector(s), p, pr) for s, p, pr in rules]
    assert stream_retention(compiled, labels, 7.0) == want


def test_a_request_with_parser_stages_and_another_tenant(tmp_path: Path) -> None:
    """Any log pipeline selects the lines (Loki takes one); other tenants are untouched."""
    srv = _server(tmp_path)
    try:
        _push(srv, {"app": "api"}, _api_lines())
        _push(srv, {"app": "api"}, _api_lines(), tenant="other")
        _delete(srv, '{app="api"} | regexp "n=(?P<n>\\\\d+)" | n >= 90')
        left = _lines(srv, '{app="api"}')
        assert len(left) == 90 and all(int(x.split("n=")[1]) < 90 for x in left)
        assert len(_lines(srv, '{app="api"}', tenant="other")) == 100
    finally:
        srv.close()


def test_retention_stream_without_retention_enabled_is_said_to_have_no_effect(
        tmp_path: Path) -> None:
    from sluiceway.server import load_config
    cfg = tmp_path / "loki.yaml"
    cfg.write_text("limits_config:\n  retention_stream:\n"
                   "  - {selector: '{a=\"b\"}', period: 24h, priority: 1}\n")
    loaded = load_config(cfg)
    assert any(k.startswith("limits_config.retention_stream (without compactor.retention_enabled")
               for k in loaded.loki_ignored), loaded.loki_ignored
