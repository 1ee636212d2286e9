"""Elasticsearch `_bulk` ingest, driven by the real `elasticsearch` client and by hand."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from tests.inproc import ThreadServer
from tests.procs import ServerProcess


def _query(srv: ServerProcess, query: str) -> list[tuple[dict[str, str], int, str]]:
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range",
                  params={"query": query, "limit": "1000", "direction": "forward",
                          "since": "2h"})
    assert r.status_code == 200, r.text
    # `| json` makes a stream per distinct set of extracted labels: order by time.
    return sorted(((s["stream"], int(v[0]), v[1]) for s in r.json()["data"]["result"]
                   for v in s["values"]), key=lambda row: row[1])


def test_elasticsearch_client_bulk_and_info(server: ServerProcess) -> None:
    from elasticsearch import Elasticsearch, helpers

    es = Elasticsearch(server.url)
    assert es.info()["version"]["number"].startswith("8.")
    base = datetime.now(UTC) - timedelta(minutes=5)
    docs = [{"_index": "shop-logs", "@timestamp": (base + timedelta(seconds=i)).isoformat(),
             "message": f"order {i} placed", "level": "info" if i % 3 else "error"}
            for i in range(50)]
    ok, errors = helpers.bulk(es, docs, chunk_size=20)
    assert (ok, errors) == (50, [])
    got = _query(server, '{index="shop-logs"} | json | level="error"')
    assert [orjson.loads(line)["message"] for _, _, line in got] == \
        [f"order {i} placed" for i in range(0, 50, 3)]
    first = docs[0]["@timestamp"]
    assert got[0][1] == int(datetime.fromisoformat(str(first)).timestamp()) * 10**9 + \
        datetime.fromisoformat(str(first)).microsecond * 1000
    assert "@timestamp" not in orjson.loads(got[0][2])


def test_item_errors_mark_exactly_the_items_not_stored(server: ServerProcess) -> None:
    now_ms = int(time.time() * 1000)
    week_ago = "2020-01-01T00:00:00Z"  # older than reject_old_samples_max_age
    lines = [
        {"index": {"_index": "app", "_id": "a"}}, {"@timestamp": now_ms, "msg": "kept 1"},
        {"delete": {"_index": "app", "_id": "x"}},
        {"update": {"_index": "app", "_id": "y"}}, {"doc": {"msg": "no"}},
        {"create": {"_id": "b"}}, {"@timestamp": "not a date", "msg": "bad ts"},
        {"index": {"_index": "app"}}, {"@timestamp": week_ago, "msg": "too old"},
        {"create": {}}, {"@timestamp": now_ms + 1, "msg": "kept 2", "host": {"name": "h1"}},
    ]
    body = b"".join(orjson.dumps(x) + b"\n" for x in lines)
    r = httpx.post(f"{server.url}/logs/_bulk", content=body,
                   params={"_stream_fields": "host.name"},
                   headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    assert r.headers["x-elastic-product"] == "Elasticsearch"
    out = r.json()
    assert out["errors"] is True
    statuses = [(next(iter(it)), next(iter(it.values()))["status"]) for it in out["items"]]
    assert statuses == [("index", 201), ("delete", 400), ("update", 400), ("create", 400),
                        ("index", 400), ("create", 201)]
    too_old = out["items"][4]["index"]["error"]["reason"]
    assert "too old" in too_old
    got = _query(server, '{index=~"app|logs"}')
    assert sorted((lbl["index"], lbl.get("host_name"), orjson.loads(line)["msg"])
                  for lbl, _, line in got) == [("app", None, "kept 1"), ("logs", "h1", "kept 2")]


def test_whole_request_errors_are_elasticsearch_shaped(server: ServerProcess) -> None:
    r = httpx.post(f"{server.url}/_bulk", content=b'{"index": {"_index": "a"}}\nnot json\n'
                   b'{"explode": {}}\n{}\n')
    assert r.status_code == 400
    err = r.json()
    assert err["status"] == 400 and "expected one of [create, delete, index, update]" in \
        err["error"]["reason"] and err["error"]["root_cause"]
    r = httpx.post(f"{server.url}/_bulk", content=b'{"index": {}}\n{"m": 1}\n')
    assert r.status_code == 400 and "index is missing" in r.json()["error"]["reason"]
    assert _query(server, '{index=~".+"}') == []


def test_browsers_still_get_the_ui_at_root(server: ServerProcess) -> None:
    page = httpx.get(server.url + "/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 200 and "<html" in page.text.lower()
    info = httpx.get(server.url + "/")  # no preference, as some shippers send
    assert info.json()["tagline"] == "You Know, for Search"


def test_lines_behind_the_out_of_order_window_are_marked(server: ServerProcess) -> None:
    now_ms = int(time.time() * 1000)

    def bulk(*docs: dict[str, object]) -> list[int]:
        body = b"".join(orjson.dumps({"index": {"_index": "ooo"}}) + b"\n" + orjson.dumps(d)
                        + b"\n" for d in docs)
        r = httpx.post(f"{server.url}/_bulk", content=body)
        assert r.status_code == 200, r.text
        return [it["index"]["status"] for it in r.json()["items"]]

    assert bulk({"@timestamp": now_ms, "m": "newest"}) == [201]
    three_hours = 3 * 3600 * 1000
    assert bulk({"@timestamp": now_ms - three_hours, "m": "behind"},
                {"@timestamp": now_ms - 1000, "m": "in window"}) == [400, 201]
    assert [orjson.loads(line)["m"] for _, _, line in _query(server, '{index="ooo"}')] == \
        ["in window", "newest"]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'reason="out_of_order"' in metrics


def test_too_large_bodies_are_413_before_and_after_decompression(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("server:\n  max_body_size: 64KiB\n")
    srv = ThreadServer(tmp_path / "data", config=cfg).start()
    try:
        doc = b'{"index":{"_index":"big"}}\n{"m":"' + b"x" * 100_000 + b'"}\n'
        r = httpx.post(f"{srv.url}/_bulk", content=doc)
        assert r.status_code == 413 and r.json()["error"]["type"] == "content_too_long_exception"
        r = httpx.post(f"{srv.url}/_bulk", content=gzip.compress(doc),
                       headers={"Content-Encoding": "gzip"})  # 0.1 MB once inflated
        assert r.status_code == 413 and "decompressed" in r.json()["error"]["reason"]
    finally:
        srv.stop()
