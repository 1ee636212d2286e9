"""When the WAL cannot be written the server answers 503, and never acks what is not on disk."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import httpx
import orjson

from tests.procs import ServerProcess

LIMIT = 3 << 20  # the server may write files of at most 3 MiB: then writes fail with EFBIG


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_write_failure_is_503_and_acked_lines_survive(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("storage:\n  wal_segment_size: 1GiB\n  chunk_target_size: 64MiB\n")
    srv = ServerProcess(tmp_path / "data", config=cfg, preexec=_limit_file_size).start()
    now = time.time_ns()
    acked: list[str] = []
    statuses: set[int] = set()
    for b in range(80):
        lines = [f"b{b} l{i} " + "z" * 1000 for i in range(50)]
        body = orjson.dumps({"streams": [{"stream": {"job": "full"}, "values": [
            [str(now - 10**10 + b * 100 + i), line] for i, line in enumerate(lines)]}]})
        r = httpx.post(f"{srv.url}/loki/api/v1/push", content=body,
                       headers={"Content-Type": "application/json"}, timeout=10)
        statuses.add(r.status_code)
        if r.status_code == 204:
            acked += lines
        else:
            assert r.status_code == 503, r.text
            assert "retry" in r.text
    assert 503 in statuses and 204 in statuses
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", params={
        "query": '{job="full"}', "limit": "5000", "start": str(now - 10**11)})
    got = [v[1] for s in r.json()["data"]["result"] for v in s["values"]]
    assert sorted(got) == sorted(acked)
    srv.kill()
    srv.preexec = None
    srv.start()
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", params={
        "query": '{job="full"}', "limit": "5000", "start": str(now - 10**11)})
    got = [v[1] for s in r.json()["data"]["result"] for v in s["values"]]
    srv.stop()
    assert sorted(got) == sorted(acked)
