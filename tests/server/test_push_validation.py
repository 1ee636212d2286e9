"""Loki's status codes for bad pushes, and partial acceptance of per-line failures."""

from __future__ import annotations

import gzip
import time

import cramjam
import httpx
import orjson

from tests.inproc import ThreadServer
from tests.procs import ServerProcess

JSON = {"Content-Type": "application/json"}


def _q(srv: ServerProcess, sel: str) -> list[str]:
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", params={
        "query": sel, "limit": "5000", "start": str(time.time_ns() - 20 * 86400 * 10**9),
        "end": str(time.time_ns() + 3600 * 10**9)})
    assert r.status_code == 200, r.text
    return [v[1] for s in r.json()["data"]["result"] for v in s["values"]]


def test_undecodable_bodies_get_400_and_write_nothing(server: ServerProcess) -> None:
    url = f"{server.url}/loki/api/v1/push"
    bad = [
        (b"{not json", JSON),
        (orjson.dumps({"streams": [{"stream": {"a": "b"}, "values": [[123, "x"]]}]}), JSON),
        (b"\x00\x01garbage", {"Content-Type": "application/x-protobuf"}),
        (bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")), {"Content-Type":
                                                              "application/x-protobuf"}),
        (b"not gzip", {**JSON, "Content-Encoding": "gzip"}),
        (orjson.dumps({"streams": [{"stream": {"bad-name": "b"},
                                    "values": [[str(time.time_ns()), "x"]]}]}), JSON),
        (orjson.dumps({"streams": [{"stream": {}, "values": [[str(time.time_ns()), "x"]]}]}),
         JSON),
        (b"{}", {**JSON, "Content-Encoding": "br"}),
    ]
    for body, headers in bad:
        r = httpx.post(url, content=body, headers=headers)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.text.strip(), "a 400 must say why"
    assert _q(server, '{a=~".+"}') == [] and _q(server, '{bad_name=~".+"}') == []


def test_mixed_batch_keeps_good_lines_and_reports_rejected(server: ServerProcess) -> None:
    now = time.time_ns()
    values = [[str(now - 10**9), "fresh one"], [str(now - 8 * 86400 * 10**9), "too old"],
              [str(now + 3600 * 10**9), "too new"], [str(now), "y" * 300_000],
              [str(now - 2 * 10**9), "fresh two"]]
    body = gzip.compress(orjson.dumps({"streams": [{"stream": {"job": "mix"}, "values": values}]}))
    r = httpx.post(f"{server.url}/loki/api/v1/push", content=body,
                   headers={**JSON, "Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert "total ignored: 3 out of 5" in r.text
    assert "too old" in r.text and "too new" in r.text and "Max entry size" in r.text
    assert sorted(_q(server, '{job="mix"}')) == ["fresh one", "fresh two"]


def test_body_too_large_is_413(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "s.yaml"
    cfg.write_text("server:\n  max_body_size: 1KiB\n")
    srv = ThreadServer(tmp_path / "data", config=cfg).start()
    try:
        r = httpx.post(f"{srv.url}/loki/api/v1/push", content=b"x" * 5000, headers=JSON)
        assert r.status_code == 413
        small = gzip.compress(b" " * 100_000)  # tiny on the wire, huge inflated
        r = httpx.post(f"{srv.url}/loki/api/v1/push", content=small,
                       headers={**JSON, "Content-Encoding": "gzip"})
        assert r.status_code == 413
    finally:
        srv.stop()


def test_tenants_are_isolated(server: ServerProcess) -> None:
    body = orjson.dumps({"streams": [{"stream": {"job": "t"},
                                      "values": [[str(time.time_ns()), "for a"]]}]})
    r = httpx.post(f"{server.url}/loki/api/v1/push", content=body,
                   headers={**JSON, "X-Scope-OrgID": "team-a"})
    assert r.status_code == 204
    assert _q(server, '{job="t"}') == []  # default tenant "fake" sees nothing
    r = httpx.get(f"{server.url}/loki/api/v1/query_range", headers={"X-Scope-OrgID": "team-a"},
                  params={"query": '{job="t"}'})
    assert [v[1] for s in r.json()["data"]["result"] for v in s["values"]] == ["for a"]
    r = httpx.post(f"{server.url}/loki/api/v1/push", content=body,
                   headers={**JSON, "X-Scope-OrgID": "../etc"})
    assert r.status_code == 400


def test_a_dead_ingest_worker_does_not_break_ingest(server_process: ServerProcess) -> None:
    import os
    import signal
    from pathlib import Path

    assert server_process.proc is not None
    children = [int(c) for t in Path(f"/proc/{server_process.proc.pid}/task").glob("*/children")
                for c in t.read_text().split()]
    assert children, "the server should run ingest worker processes"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    body = orjson.dumps({"streams": [{"stream": {"job": "survivor"},
                                      "values": [[str(time.time_ns()), "still here"]]}]})
    statuses = [httpx.post(f"{server_process.url}/loki/api/v1/push", content=body,
                           headers=JSON).status_code for _ in range(3)]
    assert statuses == [204, 204, 204]
    assert _q(server_process, '{job="survivor"}') == ["still here"]


def test_structured_metadata_limits_reject_those_lines_only(server: ServerProcess) -> None:
    now = time.time_ns()
    values = [[str(now - 3), "small md", {"trace_id": "t1"}],
              [str(now - 2), "huge md", {"blob": "x" * 70_000}],
              [str(now - 1), "many md", {f"k{i}": "v" for i in range(130)}]]
    body = orjson.dumps({"streams": [{"stream": {"job": "md"}, "values": values}]})
    r = httpx.post(f"{server.url}/loki/api/v1/push", content=body, headers=JSON)
    assert r.status_code == 400 and "total ignored: 2 out of 3" in r.text
    assert "structured metadata too large" in r.text and "too many structured" in r.text
    assert _q(server, '{job="md"}') == ["small md"]
