"""The issue's delete test, through real server processes (issue 15): push, delete with a
line filter, query (gone at once), SIGKILL and restart (the request is durable: still
gone), let the cancel period pass and run the compactor, decode every chunk file (the
lines are not in any), restart again: still gone, the request `processed`."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson

from sluiceway.store._chunkfmt import decode_chunk
from tests.procs import ServerProcess

S = 10**9
T0 = (time.time_ns() - 2 * 3600 * S) // S * S
CONFIG = """compactor:
  retention_enabled: true
  delete_request_cancel_period: 1s
  retention_delete_delay: 0s
"""


def _push(srv: ServerProcess, app: str, lines: list[tuple[int, str]]) -> None:
    body = orjson.dumps({"streams": [{"stream": {"app": app},
                                      "values": [[str(t), x] for t, x in lines]}]})
    r = httpx.post(f"{srv.url}/loki/api/v1/push", content=body,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text


def _lines(srv: ServerProcess, q: str) -> list[str]:
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", params={
        "query": q, "start": str(T0 - 60 * S), "end": str(T0 + 3600 * S), "limit": "1000"})
    assert r.status_code == 200, r.text
    return [v[1] for s in r.json()["data"]["result"] for v in s["values"]]


def _chunk_lines(data_dir: Path) -> list[str]:
    out: list[str] = []
    files = list((data_dir / "tenants" / "t-fake" / "chunks").rglob("*.chunk"))
    assert files
    for f in files:
        out += [x.decode() for x in decode_chunk(f.read_bytes(), {}).lines()]
    return out


def test_delete_through_restarts_and_compaction(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    data = tmp_path / "data"
    srv = ServerProcess(data, config=cfg).start()
    try:
        _push(srv, "api", [(T0 + i * S, f"user={i} card={'4111-secret' if i % 4 == 0 else 'none'}")
                           for i in range(100)])
        _push(srv, "web", [(T0 + i * S, f"web {i} 4111-secret") for i in range(5)])
        assert httpx.post(f"{srv.url}/flush").status_code == 204
        # More lines after the flush: in memory and in the WAL when the request comes.
        _push(srv, "api", [(T0 + (100 + i) * S, f"late={i} card=4111-secret")
                           for i in range(10)])
        assert sum("secret" in x for x in _chunk_lines(data)) == 30

        r = httpx.post(f"{srv.url}/loki/api/v1/delete", params={
            "query": '{app="api"} |= "4111-secret"', "start": str(T0 // S),
            "end": str(int(time.time()) - 1)})
        assert r.status_code == 204, r.text
        kept = _lines(srv, '{app="api"}')
        assert len(kept) == 75 and not any("secret" in x for x in kept)
        assert len(_lines(srv, '{app="web"}')) == 5  # another stream: untouched

        srv.kill()  # SIGKILL: the request must be durable already
        srv = ServerProcess(data, config=cfg, port=srv.port).start()
        assert len(_lines(srv, '{app="api"}')) == 75
        (req,) = httpx.get(f"{srv.url}/loki/api/v1/delete").json()
        assert req["status"] == "received"

        # Past the cancel period (1 s) the compactor removes the lines.
        deadline = time.monotonic() + 60
        while req["status"] != "processed":
            assert time.monotonic() < deadline, "the request was never processed"
            time.sleep(0.2)
            c = httpx.post(f"{srv.url}/sluiceway/api/v1/compact", timeout=120)
            assert c.status_code == 200, c.text
            (req,) = httpx.get(f"{srv.url}/loki/api/v1/delete").json()
        # The next pass deletes the replaced chunk files (retention_delete_delay: 0s).
        assert httpx.post(f"{srv.url}/sluiceway/api/v1/compact", timeout=120).status_code == 200
        on_disk = _chunk_lines(data)
        assert len(on_disk) == 75 + 5
        assert [x for x in on_disk if "secret" in x] == [f"web {i} 4111-secret"
                                                         for i in range(5)]
        assert len(_lines(srv, '{app="api"}')) == 75
        metrics = httpx.get(f"{srv.url}/metrics").text
        assert "sluiceway_delete_lines_removed_total 35.0" in metrics

        srv.stop()
        srv = ServerProcess(data, config=cfg, port=srv.port).start()
        kept = _lines(srv, '{app="api"}')
        assert len(kept) == 75 and not any("secret" in x for x in kept)
        assert httpx.get(f"{srv.url}/loki/api/v1/delete").json()[0]["status"] == "processed"
    finally:
        srv.stop()
