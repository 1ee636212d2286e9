"""An index object lost while no server runs (deleted by hand here; an operator's mistake
or a bucket problem in life): the next start cannot tell, its chunks are named by no index
object, and the orphan sweep must not delete them (their lines are served nowhere else):
it keeps them, `sluiceway_store_unnamed_chunks` and `/sluiceway/api/v1/storage` count them
and each pass logs a warning saying how to take them back; `sluiceway server
--recover-chunks` does, and every line is served exactly once again. Real server
processes on real sockets, real store on disk."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import orjson

from sluiceway.store._index import decode
from tests.procs import ServerProcess

S = 10**9
CONFIG = """storage:
  compaction_enabled: false
compactor:
  retention_delete_delay: 1s
"""


def _push(srv: ServerProcess, base: int, tag: str) -> None:
    body = orjson.dumps({"streams": [{"stream": {"job": "o"}, "values": [
        [str(base + i), f"{tag} {i}"] for i in range(50)]}]})
    r = httpx.post(f"{srv.url}/loki/api/v1/push", content=body,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text
    assert httpx.post(f"{srv.url}/flush").status_code == 204


def _lines(srv: ServerProcess, start: int) -> list[str]:
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", params={
        "query": '{job="o"}', "start": str(start - S), "end": str(start + 60 * S),
        "limit": "1000"}, timeout=60)
    assert r.status_code == 200, r.text
    return sorted(v[1] for s in r.json()["data"]["result"] for v in s["values"])


def _gauge(srv: ServerProcess) -> float | None:
    for ln in httpx.get(f"{srv.url}/metrics").text.splitlines():
        if ln.startswith('sluiceway_store_unnamed_chunks{tenant="fake"}'):
            return float(ln.split()[1])
    return None


def _compact(srv: ServerProcess) -> dict[str, int]:
    r = httpx.post(f"{srv.url}/sluiceway/api/v1/compact", timeout=60)
    assert r.status_code == 200, r.text
    out: dict[str, int] = r.json()["data"]
    return out


def test_chunks_of_a_lost_index_object_are_kept_then_taken_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    base = time.time_ns()
    srv = ServerProcess(data, config).start()
    try:
        _push(srv, base, "first")  # one chunk and its index object
        _push(srv, base + 10 * S, "second")  # another chunk, another index object
    finally:
        srv.stop()
    chunks = {p.relative_to(data / "tenants" / "t-fake").as_posix(): p
              for p in (data / "tenants" / "t-fake" / "chunks").glob("*/*.chunk")}
    assert len(chunks) == 2
    objs = {p: decode(p.read_bytes(), str(p)) for p in (data / "tenants" / "index").rglob(
        "*.idx")}
    [(lost, names)] = [(p, {e.ref.path for e in d.adds}) for p, d in objs.items()
                       if any(e.ref.mint >= base + 10 * S for e in d.adds)]
    [second] = names
    assert all(e.ref.path != second for p, d in objs.items() if p != lost for e in d.adds)
    lost.unlink()  # by hand, while no server runs
    old = time.time() - 120  # older than the delay
    os.utime(chunks[second], (old, old))
    want = sorted([f"first {i}" for i in range(50)] + [f"second {i}" for i in range(50)])

    srv = ServerProcess(data, config).start()
    try:
        assert _lines(srv, base) == want[:50]  # not served: the start cannot tell
        for _ in range(2):
            out = _compact(srv)
            assert chunks[second].exists()  # kept: the only copy of its lines
            assert (out["orphans_deleted"], out.get("orphans_kept")) == (0, 1), out
        assert _gauge(srv) == 1
        r = httpx.get(f"{srv.url}/sluiceway/api/v1/storage")
        assert r.json()["data"]["chunks_unnamed_kept"] == chunks[second].stat().st_size
        assert "hold lines served nowhere else" in srv.log()
        assert "--recover-chunks" in srv.log()
    finally:
        srv.stop()

    srv = ServerProcess(data, config, extra_args=("--recover-chunks",)).start()
    try:
        assert _lines(srv, base) == want  # every line, exactly once
        out = _compact(srv)
        assert (out["orphans_deleted"], out["orphans_kept"]) == (0, 0), out
        assert _gauge(srv) == 0
    finally:
        srv.stop()
    srv = ServerProcess(data, config).start()  # taken back for good
    try:
        assert _lines(srv, base) == want
    finally:
        srv.stop()
