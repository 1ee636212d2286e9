"""What the LokiSink does with each kind of push answer (`sluiceway.wire.classify_push_answer`,
the agent reads them the same way): partial 400 and 413 from a real server with small
limits, configuration errors and 429 from a small real HTTP server."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluiceway import client
from tests.client.helpers import PushServer, wait_until
from tests.inproc import ThreadServer


def stored(srv: ThreadServer, app: str) -> list[dict[str, Any]]:
    now = time.time_ns()
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=10, params={
        "query": f'{{app="{app}"}}', "start": str(now - 600 * 10**9), "end": str(now + 10**9),
        "limit": "5000", "direction": "forward"})
    r.raise_for_status()
    return [json.loads(line) for s in r.json()["data"]["result"] for _, line in s["values"]]


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[ThreadServer]:
    """A real server (in a thread) taking lines of at most 300 bytes and bodies of at most
    4 KiB."""
    cfg = tmp_path / "server.yaml"
    cfg.write_text("server: {max_body_size: 4096}\nlimits: {max_line_size: 300}\n")
    srv = ThreadServer(tmp_path / "data", config=cfg).start()
    yield srv
    client.shutdown(timeout=1)  # first: a graceful stop waits on the sink's open connection
    srv.stop()


def test_partial_400_loses_only_the_lines_the_server_names(small_server: ThreadServer) -> None:
    client.configure(sinks=[client.LokiSink(small_server.url, labels={"app": "partial"},
                                            batch_wait=0.2)],
                     capture_stdlib=False, report_url=None)
    log = client.get_logger("p")
    for i in range(12):
        log.info("long" if i % 4 == 0 else "short", i=i, pad="x" * (400 if i % 4 == 0 else 8))
    assert client.flush(10)
    s = client.stats()
    assert s["dropped_by_reason"] == {"line_too_long": 3}
    assert s["written"] == 9
    assert sorted(r["i"] for r in stored(small_server, "partial")) == \
        [i for i in range(12) if i % 4]


def test_413_splits_the_batch_and_loses_only_a_record_too_large_alone(
        small_server: ThreadServer) -> None:
    client.configure(sinks=[client.LokiSink(small_server.url, labels={"app": "big"},
                                            batch_wait=0.5)],
                     capture_stdlib=False, report_url=None)
    log = client.get_logger("b")
    for i in range(60):  # random text: snappy cannot squeeze 60 of them under 4 KiB
        log.info("rec", i=i, noise=os.urandom(90).hex())
    log.info("huge", i=60, noise=os.urandom(3000).hex())
    assert client.flush(20)
    s = client.stats()
    assert s["dropped_by_reason"] == {"too_large": 1}
    assert s["written"] == 60
    assert sorted(r["i"] for r in stored(small_server, "big")) == list(range(60))


@pytest.mark.parametrize("status", [401, 403, 404, 405])
def test_configuration_errors_keep_the_records_and_show_the_sink_down(status: int) -> None:
    """A wrong URL, token or proxy route: records are kept (in drop mode the queue fills
    and new records are dropped as `full`), max_retries does not apply, the sink is DOWN
    with the status and body; once fixed, what was kept arrives."""
    fixed = {"now": False}

    def judge(lines: list[str]) -> tuple[int, dict[str, str], str]:
        return (204, {}, "") if fixed["now"] else (status, {}, f"wrong place {status}")

    srv = PushServer(judge=judge)
    try:
        client.configure(sinks=[client.LokiSink(srv.url, labels={"app": "cfg"}, batch_wait=0,
                                                max_batch=5)],
                         capture_stdlib=False, report_url=None, max_retries=1, queue_size=20)
        log = client.get_logger("c")
        for i in range(40):
            log.info("rec", i=i)
        wait_until(lambda: len(srv.requests) >= 3)
        sink = client.stats()["sinks"]["loki"]
        assert sink["state"] == "down" and sink["last_status"] == status
        assert f"HTTP {status}: wrong place {status}" in sink["last_error"]
        assert sink["lost_by_reason"] == {}
        fixed["now"] = True
        assert client.flush(30)
        s = client.stats()
        kept = s["written"]
        assert s["sinks"]["loki"]["state"] == "ok"
        assert kept >= 20 and s["dropped_by_reason"] == {"full": 40 - kept}
        assert len(srv.lines) == kept
    finally:
        srv.close()


def test_429_until_the_retry_limit_counts_rate_limited() -> None:
    srv = PushServer(judge=lambda lines: (429, {"Retry-After": "0"}, "slow down"))
    try:
        client.configure(sinks=[client.LokiSink(srv.url, batch_wait=0)], capture_stdlib=False,
                         report_url=None, max_retries=2)
        client.get_logger("r").info("x")
        assert client.flush(10)
        assert client.stats()["dropped_by_reason"] == {"rate_limited": 1}
        assert len(srv.requests) == 3
    finally:
        srv.close()
