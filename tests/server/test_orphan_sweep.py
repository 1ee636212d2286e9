"""The orphan sweep as an operator sees it: `/sluiceway/api/v1/storage` tells the chunks
the index serves from those awaiting deletion and those no index object names, a
compaction pass (`/sluiceway/api/v1/compact`) deletes the unnamed one once it is older
than `compactor.retention_delete_delay`, says so in its answer, and
`sluiceway_compactor_orphan_chunks_deleted_total` counts it. The server in a thread (no
process boundary under test) on a real socket, real store on disk."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import orjson

from tests.inproc import ThreadServer


def _counter(app: httpx.Client, name: str) -> float:
    for ln in app.get("/metrics").text.splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _storage(app: httpx.Client) -> dict[str, int]:
    r = app.get("/sluiceway/api/v1/storage")
    assert r.status_code == 200, r.text
    data: dict[str, int] = r.json()["data"]
    return data


def test_an_old_unnamed_chunk_is_counted_then_swept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = ThreadServer(data, overrides={"compactor.retention_delete_delay": "1m",
                                        "storage.compaction_enabled": False}).start()
    app = httpx.Client(base_url=srv.url, timeout=60)
    try:
        now = time.time_ns()
        body = orjson.dumps({"streams": [{"stream": {"job": "o"}, "values": [
            [str(now + i), f"line {i}"] for i in range(50)]}]})
        r = app.post("/loki/api/v1/push", content=body,
                     headers={"Content-Type": "application/json"})
        assert r.status_code == 204, r.text
        assert app.post("/flush").status_code == 204
        [chunk] = (data / "tenants" / "t-fake" / "chunks").glob("*/*.chunk")
        size = chunk.stat().st_size
        fp, mint, _ = chunk.name.split("-")
        orphan = chunk.parent / f"{fp}-{mint}-0rphan00.chunk"
        shutil.copyfile(chunk, orphan)  # as a crash before its index object leaves it
        u = _storage(app)
        assert (u["chunks"], u["chunks_live"], u["chunks_unnamed"],
                u["chunks_awaiting_deletion"]) == (2 * size, size, size, 0)

        r = app.post("/sluiceway/api/v1/compact")  # young: kept
        assert r.json()["data"]["orphans_deleted"] == 0 and orphan.exists()
        old = time.time() - 120  # older than the delay, as if written two minutes ago
        os.utime(orphan, (old, old))
        r = app.post("/sluiceway/api/v1/compact")
        assert r.status_code == 200, r.text
        assert (r.json()["data"]["orphans_deleted"],
                r.json()["data"]["orphan_bytes_deleted"]) == (1, size)
        assert not orphan.exists() and chunk.exists()
        assert _counter(app, "sluiceway_compactor_orphan_chunks_deleted_total") == 1
        assert _counter(app, "sluiceway_compactor_orphan_bytes_deleted_total") == size
        u = _storage(app)
        assert (u["chunks"], u["chunks_live"], u["chunks_unnamed"]) == (size, size, 0)
        r = app.get("/loki/api/v1/query_range", params={
            "query": '{job="o"}', "start": str(now - 10**9), "end": str(now + 10**9),
            "limit": "1000"})
        assert sum(len(s["values"]) for s in r.json()["data"]["result"]) == 50
    finally:
        app.close()
        srv.stop()
