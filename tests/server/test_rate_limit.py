"""Loki's per-tenant ingestion rate limit: 429 with Loki's message, nothing stored, per
tenant, refilled over time; off by default."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson

from tests.inproc import ThreadServer
from tests.procs import ServerProcess


def _push(srv: ServerProcess, tenant: str, n: int, size: int = 1000) -> httpx.Response:
    now = time.time_ns()
    body = {"streams": [{"stream": {"job": "rl"},
                         "values": [[str(now + i), f"{i:06d}".ljust(size, "x")]
                                    for i in range(n)]}]}
    return httpx.post(f"{srv.url}/loki/api/v1/push", content=orjson.dumps(body),
                      headers={"Content-Type": "application/json", "X-Scope-OrgID": tenant})


def _count(srv: ServerProcess, tenant: str) -> int:
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", headers={"X-Scope-OrgID": tenant},
                  params={"query": '{job="rl"}', "limit": "5000", "since": "1h"})
    return sum(len(s["values"]) for s in r.json()["data"]["result"])


def test_tenant_over_its_rate_gets_429_and_nothing_is_stored(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    # 2 KiB/s, bursts of 40 KiB: what trickles in while the test runs on a busy machine
    # (seconds between pushes) stays far below a push of 30 KB
    cfg.write_text("limits:\n  ingestion_rate_mb: 0.001953125\n"
                   "  ingestion_burst_size_mb: 0.0390625\n")
    srv = ThreadServer(tmp_path / "data", config=cfg).start()
    try:
        assert _push(srv, "a", 30).status_code == 204  # 30 KB of the 40 KiB burst
        r = _push(srv, "a", 30)
        assert r.status_code == 429
        assert r.text.startswith("Ingestion rate limit exceeded for user a (limit: 2048 "
                                 "bytes/sec) while attempting to ingest '30' lines totaling "
                                 "'30000' bytes")
        assert _push(srv, "b", 30).status_code == 204  # other tenants have their own
        assert _push(srv, "a", 100).status_code == 429  # larger than the burst: never fits
        docs = b"".join(b'{"index":{"_index":"rl"}}\n' + orjson.dumps({"m": "x" * 1000})
                        + b"\n" for _ in range(30))
        es = httpx.post(f"{srv.url}/_bulk", content=docs, headers={"X-Scope-OrgID": "a"})
        assert es.status_code == 429
        assert es.json()["error"]["type"] == "es_rejected_execution_exception"
        deadline = time.monotonic() + 180  # 30 KB more trickle in (about 10 s)
        while (code := _push(srv, "a", 30).status_code) == 429 and time.monotonic() < deadline:
            time.sleep(1)
        assert code == 204
        assert (_count(srv, "a"), _count(srv, "b")) == (60, 30)
        metrics = httpx.get(f"{srv.url}/metrics").text
        assert 'reason="rate_limited",tenant="a"' in metrics or \
            'tenant="a",reason="rate_limited"' in metrics
    finally:
        srv.stop()


def test_no_rate_limit_by_default(server: ServerProcess) -> None:
    for _ in range(8):  # 8 MB at once: past Loki's default burst of 6 MB
        assert _push(server, "fake", 1000).status_code == 204


def test_global_strategy_enforces_the_share_of_each_live_distributor() -> None:
    """Loki's `global` strategy: with N distributors each lets rate / N through (the burst
    stays each one's own); `local` lets the whole rate through each."""
    from sluiceway.server._ratelimit import MB, IngestionRateLimiter

    live = [3]
    rl = IngestionRateLimiter(lambda: live[0])
    assert rl.local_rate(3.0) == MB and rl.local_rate(3.0, "local") == 3 * MB
    assert rl.message("t", 1, 10, 3.0).startswith(
        f"Ingestion rate limit exceeded for user t (limit: {MB} bytes/sec)")
    # A burst of 1 MiB, refilled at 1 MiB/s of the 3: two seconds give 2 MiB more.
    assert rl.allow("t", MB, 3.0, 1.0, now=0.0)
    assert not rl.allow("t", MB, 3.0, 1.0, now=0.5)
    assert rl.allow("t", MB // 2, 3.0, 1.0, now=0.5)
    live[0] = 1  # the others left: the whole rate here (a new limit: a full bucket)
    assert rl.allow("t", 3 * MB, 3.0, 1.0, now=0.6)
    assert IngestionRateLimiter().local_rate(3.0) == 3 * MB  # one process: all of it
