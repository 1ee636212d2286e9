"""Skipping what cannot match, through a real server process (issue 12 step 5).

After compaction, a query for a rare whole word leaves out the blocks whose token filter
lacks it, and a count without a parser is answered from block footers, split by
`detected_level` (the server has the compactor count each block's lines by level under
the tenant's rules); both show in the answer's stats, which `sluiceway query --stats`
prints. Before compaction (data younger than `compaction_min_age`) nothing is skipped.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.inproc import ThreadServer
from tests.procs import REPO, ServerProcess, sluiceway_cmd

S = 10**9
T0 = (time.time_ns() // S // 60 - 30) * 60 * S  # a minute edge, half an hour ago
NEEDLE = "zq8wv41kx"
N = 36_000  # 240 s of lines, 150 a second, ~3.6 MB


def _lines() -> list[tuple[int, str]]:
    rng = random.Random(3)
    out = []
    for i in range(N):
        level = rng.choice(["info", "info", "warn", "error"])
        word = f" {NEEDLE}" if i == N // 2 else ""
        out.append((T0 + i * (S * 240 // N) + 1, json.dumps(
            {"level": level, "msg": f"request done{word}", "trace": f"{rng.getrandbits(64):016x}",
             "user": rng.randrange(10**8)})))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("skipping")
    cfg = base / "config.yaml"
    cfg.write_text("storage:\n  compaction_level: 10\nlimits:\n  max_query_length: 0s\n")
    srv = ThreadServer(base / "data", config=cfg).start()
    lines = _lines()
    for k in range(0, N, 6000):
        r = httpx.post(f"{srv.url}/loki/api/v1/push", timeout=60, json={"streams": [
            {"stream": {"app": "api"}, "values": [[str(t), x] for t, x in lines[k:k + 6000]]}]})
        assert r.status_code == 204, r.text
    assert httpx.post(f"{srv.url}/flush", timeout=120).status_code in (200, 204)
    try:
        yield srv
    finally:
        srv.stop()


def _query(srv: ServerProcess, q: str, **params: str) -> dict:  # type: ignore[type-arg]
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=120, params={
        "query": q, "start": str(T0 - 60 * S), "end": str(T0 + 300 * S), **params})
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def test_fresh_data_has_no_filters_then_compaction_skips_and_counts(
        server: ServerProcess) -> None:
    needle = f'{{app="api"}} |~ "\\\\b{NEEDLE}\\\\b"'
    count = 'sum by (detected_level) (count_over_time({app="api"}[1m]))'
    before = _query(server, needle, limit="10")
    assert before["stats"]["summary"]["totalBlocksSkippedByFilter"] == 0
    assert len(before["result"][0]["values"]) == 1
    counted_before = _query(server, count, step="60")
    r = httpx.post(f"{server.url}/sluiceway/api/v1/compact", params={"min_age": "0s"},
                   timeout=600)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["chunks_in"] >= 1

    after = _query(server, needle, limit="10")
    assert after["result"] == before["result"]
    summary = after["stats"]["summary"]
    assert summary["totalBlocksSkippedByFilter"] >= 2
    assert after["stats"]["querier"]["store"]["totalChunksDownloaded"] <= 2

    counted = _query(server, count, step="60")
    assert counted["result"] == counted_before["result"]
    assert counted["stats"]["summary"]["totalBlocksFromMetadata"] >= 2
    want = Counter((-(-t // (60 * S)) * 60, json.loads(x)["level"]) for t, x in _lines())
    got = {(int(v[0]), s["metric"]["detected_level"]): int(v[1])
           for s in counted["result"] for v in s["values"]}
    assert {k: v for k, v in got.items() if v} == dict(want)


def test_query_stats_print_the_blocks_skipped(server: ServerProcess) -> None:
    httpx.post(f"{server.url}/sluiceway/api/v1/compact", params={"min_age": "0s"},
               timeout=600)
    frm, to = str((T0 - 60 * S) // S), str((T0 + 300 * S) // S)
    r = subprocess.run(sluiceway_cmd(
        "query", f'{{app="api"}} |~ "\\\\b{NEEDLE}\\\\b"', "--from", frm, "--to", to,
        "--stats", "--addr", server.url), capture_output=True, text=True, cwd=REPO,
        timeout=60)
    assert r.returncode == 0, r.stderr
    rows = dict(line.split(None, 1) for line in r.stderr.splitlines())
    assert int(rows["Querier.Store.BlocksSkipped"]) >= 2
    assert NEEDLE in r.stdout
    m = subprocess.run(sluiceway_cmd(
        "query", 'sum(count_over_time({app="api"}[1m]))', "--from", frm, "--to", to,
        "--step", "60", "--stats", "--addr", server.url), capture_output=True, text=True,
        cwd=REPO, timeout=60)
    assert m.returncode == 0, m.stderr
    rows = dict(line.split(None, 1) for line in m.stderr.splitlines())
    assert int(rows["Querier.Store.BlocksFromMetadata"]) >= 2
