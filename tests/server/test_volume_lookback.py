"""`index/volume` and `index/volume_range` see no further back than the tenant's
`max_query_lookback`, as Loki's frontend clamps them (its limits middleware runs for
every index request: stats and volume alike): the start moves up, and a range wholly
before it is an empty answer."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from tests.inproc import InProcessServer

HOUR = 3600 * 10**9


def test_volume_honours_max_query_lookback(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "data", **{"limits.max_query_lookback": "1h",
                                                "limits.reject_old_samples": False})
    try:
        now = time.time_ns()
        body = orjson.dumps({"streams": [{"stream": {"app": "lb"}, "values": [
            [str(now - 3 * HOUR), "old line"], [str(now - 60 * 10**9), "recent"]]}]})
        assert srv.post("/loki/api/v1/push", content=body,
                        headers={"Content-Type": "application/json"}).status_code == 204
        q = {"query": '{app="lb"}', "start": str(now - 4 * HOUR), "end": str(now)}
        r = srv.get("/loki/api/v1/index/volume", params=q)
        assert r.status_code == 200, r.text
        assert [x["value"][1] for x in r.json()["data"]["result"]] == [str(len("recent"))]
        r = srv.get("/loki/api/v1/index/volume_range", params={**q, "step": "3600"})
        assert r.status_code == 200, r.text
        (series,) = r.json()["data"]["result"]
        assert sum(int(v[1]) for v in series["values"]) == len("recent")
        before = {**q, "end": str(now - 2 * HOUR)}
        for path, extra in (("volume", {}), ("volume_range", {"step": "3600"})):
            r = srv.get(f"/loki/api/v1/index/{path}", params={**before, **extra})
            assert r.status_code == 200 and r.json()["data"]["result"] == [], r.text
    finally:
        srv.close()
