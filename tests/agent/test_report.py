"""What a real agent says about itself is true: its queue counts lines against a capacity
in lines (never passed), what waits on disk is shown, a file reader waiting on a full
queue is shown with its lag; its log says when the backend goes down and comes back and
when a spill starts and has drained; /metrics has every counter from the start, a push
latency histogram by status and the last accepted push. Real server, real agent."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.agent.agentproc import LineWriter, fetch_lines
from tests.agent.conftest import Stack
from tests.procs import ServerProcess


def config(srv: ServerProcess, logs: Path, queue: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "url": srv.url, "timeout": "1s", "heartbeat_interval": "300ms",
        "retry": {"min_backoff": "100ms", "max_backoff": "300ms"},
        "batch": {"max_lines": 300, "max_wait": "100ms"},
        "queue": {"capacity": 1000, **queue},
        "inputs": [{"type": "file", "paths": [str(logs / "*.log")], "start_at": "beginning",
                    "labels": {"job": "report"}, "poll_interval": "50ms"}],
        **kw,
    }


def card(srv: ServerProcess) -> dict[str, Any] | None:
    rows = httpx.get(f"{srv.url}/sluiceway/api/v1/pipeline", timeout=5).json()["data"]
    return rows[0] if rows else None


def write(path: Path, tag: str, n: int) -> list[str]:
    lines = [f"{tag} {i:07d} " + "y" * 100 for i in range(n)]
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))
    return lines


def test_spill_mode_reads_a_file_at_the_pace_of_a_healthy_backend(stack: Stack,
                                                                  tmp_path: Path) -> None:
    """A file is its own buffer: while the backend takes every push, the reader waits for
    room instead of writing the file's lines to the spill only to read them back."""
    srv = stack.thread_server()
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = write(logs / "app.log", "catchup", 20_000)
    agent = stack.agent(config(srv, logs, {"when_full": "spill"}, report_url="off"))
    st = agent.wait_for(lambda s: s["lines"]["shipped"] == len(lines), timeout=60,
                        what="every line shipped")
    assert st["lines"]["spilled"] == 0 and st["spill_bytes"] == 0, st["lines"]
    assert st["queue"]["high_watermark"] <= st["queue"]["capacity"] == 1000
    assert fetch_lines(srv, '{job="report"}') == lines


def test_the_queue_in_lines_and_the_spill_backlog_are_what_is_shown(stack: Stack,
                                                                    tmp_path: Path) -> None:
    srv = stack.server()
    logs = tmp_path / "logs"
    logs.mkdir()
    agent = stack.agent(config(srv, logs, {"when_full": "spill"}))
    writer = LineWriter(logs / "app.log", "backlog")
    writer.start()
    try:
        agent.wait_for(lambda s: s["lines"]["shipped"] >= 1000, what="first lines shipped")
        srv.signal(signal.SIGSTOP)  # the backend hangs: the heartbeat target goes too
        seen: list[dict[str, Any]] = []

        def spilled_enough(s: dict[str, Any]) -> bool:
            seen.append(s["queue"])
            return bool(s["queue"]["spill_pending"] >= 3000)
        st = agent.wait_for(spilled_enough, what="a spill backlog")
        for q in seen:  # in lines, and never past the capacity they are shown against
            assert q["unit"] == "lines" and q["capacity"] == 1000, q
            assert q["depth"] <= q["capacity"] and q["high_watermark"] <= q["capacity"], q
        metrics = httpx.get(f"{agent.url}/metrics").text
        assert "sluiceway_agent_queue_capacity 1000.0" in metrics
        pending = float(re.search(r"^sluiceway_agent_queue_spill_pending (\S+)", metrics,
                                  re.M).group(1))  # type: ignore[union-attr]
        assert pending >= 3000
        # The line is logged when a push fails, which can come after the backlog grew.
        agent.wait_for(lambda s: "spilling to disk (the backend is failing)" in agent.log(),
                       what="the spilling line")
        srv.signal(signal.SIGCONT)
        # The card carries the backlog while it drains: never an empty queue.
        deadline = time.monotonic() + 90
        c = None
        while time.monotonic() < deadline:
            c = card(srv)
            if c is not None and c["queue"]["spill_lines"] > 0:
                break
            time.sleep(0.05)
        assert c is not None and c["queue"]["spill_lines"] > 0 and c["queue"]["spill_bytes"] > 0
        assert c["queue"]["depth"] <= c["queue"]["capacity"] == 1000
        written = writer.finish()
        st = agent.wait_for(lambda s: s["lines"]["shipped"] >= written
                            and s["queue"]["spill_pending"] == 0 and s["spill_bytes"] == 0,
                            timeout=90, what="the backlog drained")
        assert st["lines"]["lost"] == 0
        agent.wait_for(lambda s: "spill drained after" in agent.log(), what="the drained line")
        log = agent.log()
        assert re.search(r"spill drained after [\d.]+ s: \d+ lines went to disk", log), log
        assert re.search(r"backend \S+ is taking pushes again after [\d.]+ s \(\d+ failed",
                         log), log
    finally:
        srv.signal(signal.SIGCONT)
        writer.halt.set()


def test_block_mode_shows_the_file_lag_and_the_reader_waiting(stack: Stack,
                                                              tmp_path: Path) -> None:
    srv = stack.server()
    report = stack.thread_server("report")  # the pipeline page stays up
    logs = tmp_path / "logs"
    logs.mkdir()
    agent = stack.agent(config(srv, logs, {"when_full": "block"}, report_url=report.url))
    write(logs / "app.log", "first", 500)
    agent.wait_for(lambda s: s["lines"]["shipped"] == 500, what="first lines shipped")
    srv.signal(signal.SIGSTOP)
    try:
        write(logs / "app.log", "blocked", 6000)
        st = agent.wait_for(lambda s: s["files"][0]["waiting"]
                            and s["files"][0]["pending_lines"] > 0,
                            what="the file reader waiting with lines in hand")
        q = st["queue"]
        assert q["waiting_s"] > 0 and q["depth"] <= q["capacity"] == 1000
        assert st["lines"]["lost"] == 0 and st["lines"]["spilled"] == 0
        assert st["files"][0]["lag_bytes"] > 0
        metrics = httpx.get(f"{agent.url}/metrics").text
        path = st["files"][0]["path"]
        assert f'sluiceway_agent_file_waiting{{path="{path}"}} 1.0' in metrics
        assert f'sluiceway_agent_file_pending_lines{{path="{path}"}} ' in metrics
        # The card says the same: the reader waits, this far behind.
        deadline = time.monotonic() + 20
        f: dict[str, Any] = {}
        while time.monotonic() < deadline:
            c = card(report)
            f = c["files"][0] if c and c["files"] else {}
            if f.get("waiting") and (f.get("lag_lines") or 0) > 0:
                break
            time.sleep(0.05)
        assert f.get("waiting") and (f.get("lag_lines") or 0) > 0, f
        assert f["path"] == path and f["lag_bytes"] > 0
    finally:
        srv.signal(signal.SIGCONT)
    agent.wait_for(lambda s: s["lines"]["shipped"] == 6500 and not s["files"][0]["waiting"],
                   timeout=60, what="caught up")


def test_metrics_have_every_counter_at_0_and_push_latency_by_status(stack: Stack,
                                                                    tmp_path: Path) -> None:
    srv = stack.thread_server()
    logs = tmp_path / "logs"
    logs.mkdir()
    agent = stack.agent(config(srv, logs, {"when_full": "drop"}, report_url="off"))
    metrics = httpx.get(f"{agent.url}/metrics").text
    # every reason a line can be lost under (docs/readme/losses.md, the agent's rows; the
    # answers' reasons of sluiceway.wire, sluiceway.ship's own), before anything happened
    for reason in ("queue_full", "queue_full_oldest", "spill_full", "shutdown", "truncated",
                   "spill_error", "too_large", "too_old", "too_far_in_future",
                   "line_too_long", "too_far_behind", "structured_metadata_too_large",
                   "structured_metadata_too_many", "rate_limited", "server_error",
                   "retries_exhausted", "sink_error"):
        line = f'sluiceway_agent_lines_lost_total{{reason="{reason}"}} 0.0'
        assert line in metrics, line
    for line in ('sluiceway_agent_lines_dropped_total{reason="queue_full"} 0.0',
                 'sluiceway_agent_lines_dropped_total{reason="spill_error"} 0.0',
                 "sluiceway_agent_last_successful_push_timestamp_seconds 0.0",
                 "sluiceway_agent_lines_shipped_total 0.0"):
        assert line in metrics, line
    assert_every_counter_has_a_sample(metrics)
    write(logs / "app.log", "m", 10)
    agent.wait_for(lambda s: s["lines"]["shipped"] == 10, what="shipped")
    metrics = httpx.get(f"{agent.url}/metrics").text
    assert re.search(r'sluiceway_agent_push_duration_seconds_count\{status_code="204"\} '
                     r'[1-9]', metrics), metrics
    ts = float(re.search(r"^sluiceway_agent_last_successful_push_timestamp_seconds (\S+)",
                         metrics, re.M).group(1))  # type: ignore[union-attr]
    assert abs(ts - time.time()) < 60
    assert "sluiceway_agent_lines_shipped_total 10.0" in metrics


def assert_every_counter_has_a_sample(text: str) -> None:
    """Every counter family of a scrape has at least one sample (none is created late)."""
    from prometheus_client.parser import text_string_to_metric_families

    empty = [f.name for f in text_string_to_metric_families(text)
             if f.type == "counter" and not f.samples]
    assert not empty, empty
