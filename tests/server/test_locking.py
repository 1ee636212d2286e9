"""Reads hold no lock a push waits for: a `/series`, `/labels`, label values, index stats
or volume scan of one tenant (each reads through the store's `LogSource`), held at a pause
point inside it, delays no push to another tenant, nor to another stream (existing or new)
of the same tenant; and those pushes are queryable at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from sluiceway.store._stream import Stream
from tests.inproc import inproc_server


@pytest.mark.parametrize(("path", "params"), [
    ("/loki/api/v1/series", {"match[]": '{job=~".+"}'}),
    ("/loki/api/v1/labels", {}),
    ("/loki/api/v1/label/job/values", {"query": '{job=~".+"}'}),
    ("/loki/api/v1/index/stats", {"query": '{job=~".+"}'}),
    ("/loki/api/v1/index/volume", {"query": '{job=~".+"}'}),
    ("/loki/api/v1/index/volume_range", {"query": '{job=~".+"}'}),
])
def test_a_paused_series_scan_delays_no_push(tmp_path: Path, path: str,
                                             params: dict[str, str]) -> None:
    with inproc_server(tmp_path / "data") as srv:
        srv.push({"job": "one"}, ["a one"], tenant="a")
        srv.push({"job": "two"}, ["a two"], tenant="a")
        srv.push({"job": "other"}, ["b other"], tenant="b")
        entered, release = threading.Event(), threading.Event()

        def pause(_s: Stream) -> None:
            entered.set()
            assert release.wait(120)

        srv.ctx.store.tenant("a").scan_hook = pause
        series: list[httpx.Response] = []
        scan = threading.Thread(target=lambda: series.append(httpx.get(
            f"{srv.url}{path}", params=params, headers={"X-Scope-OrgID": "a"}, timeout=180)))
        scan.start()
        try:
            assert entered.wait(60), "the series scan never reached its pause point"
            # While tenant a's scan is paused (a deadline, not a timing: a push that waits
            # for the scan would wait for as long as the pause lasts).
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                for tenant, job, line in [("b", "other", "b again"), ("a", "two", "a two again"),
                                          ("a", "three", "a three, new")]:
                    body = orjson.dumps({"streams": [{"stream": {"job": job}, "values": [
                        [str(time.time_ns()), line]]}]})
                    r = c.post("/loki/api/v1/push", content=body, headers={
                        "Content-Type": "application/json", "X-Scope-OrgID": tenant})
                    assert r.status_code == 204, r.text
                r = c.get("/loki/api/v1/query_range", params={
                    "query": '{job="other"}', "start": str(time.time_ns() - 60 * 10**9)},
                    headers={"X-Scope-OrgID": "b"})
                assert sorted(v[1] for s in r.json()["data"]["result"] for v in s["values"]) \
                    == ["b again", "b other"]
            assert not series  # the scan is still paused
        finally:
            release.set()
            scan.join(60)
        srv.ctx.store.tenant("a").scan_hook = None
        assert series and series[0].status_code == 200
        r = srv.http.get("/loki/api/v1/query_range", params={
            "query": '{job=~"two|three"}', "start": str(time.time_ns() - 60 * 10**9)},
            headers={"X-Scope-OrgID": "a"})
        assert sorted(v[1] for s in r.json()["data"]["result"] for v in s["values"]) == [
            "a three, new", "a two", "a two again"]
