"""Pipeline page: a real agent's queue fills while its backend is stopped; synthetic
heartbeats show every status word (block, drop, spill, stale) the page promises."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.procs import REPO, ServerProcess, sluiceway_cmd
from tests.ui._support import stop_quickly

AGENT_YAML = """\
url: {backend}
report_url: {report}
name: {name}
data_dir: {data}
listen: null
timeout: 1s
retry: {{min_backoff: 100ms, max_backoff: 500ms}}
queue: {{capacity: {capacity}, when_full: block}}
batch: {{max_lines: {batch}, max_wait: 100ms}}
heartbeat_interval: 300ms
inputs:
  - {input}
"""
DEMO_INPUT = "{type: demo, rate: 800, labels: {job: ui-pipeline-demo}}"
FILE_INPUT = ('{{type: file, paths: ["{logs}/*.log"], start_at: beginning, '
              'poll_interval: 50ms, labels: {{job: ui-pipeline-file}}}}')


# An app using the in-app client: a small drop queue, heartbeats twice a second.
CLIENT_APP = """\
import sys, time
from sluiceway import client
client.configure(sinks=[client.LokiSink(sys.argv[1], labels={"app": "ui-client-app"})],
                 queue_size=200, when_full="drop", name="ui-test-client",
                 report_url=sys.argv[2], report_interval=0.3, capture_stdlib=False)
log = client.get_logger("orders")
i = 0
while True:
    log.info("order placed", order_id=i)
    i += 1
    time.sleep(0.001)
"""


def card(page: Any, name: str) -> Any:
    return page.locator("[data-testid=reporter]", has=page.locator("h3", has_text=name))


def fill_of(page: Any, name: str) -> float:
    return float(card(page, name).get_attribute("data-fill") or "0")


@contextlib.contextmanager
def agent_and_backend(tmp_path: Path, report: ServerProcess, name: str, capacity: int,
                      batch: int, input_: str) -> Iterator[ServerProcess]:
    """A backend server and a real agent shipping to it, reporting to `report`; both
    stopped at the end (the backend resumed first if a test froze it)."""
    backend = ServerProcess(tmp_path / "backend").start()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(AGENT_YAML.format(backend=backend.url, report=report.url, name=name,
                                     data=tmp_path / "agent-data", capacity=capacity,
                                     batch=batch, input=input_))
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115 - closed in finally
    agent = subprocess.Popen(sluiceway_cmd("agent", "-c", str(cfg)), cwd=REPO, stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        yield backend
    finally:
        backend.signal(signal.SIGCONT)
        agent.terminate()
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
        log.close()
        stop_quickly(backend)


def test_real_agent_queue_fills_while_backend_is_stopped(
        page: Any, ui_server: ServerProcess, tmp_path: Path) -> None:
    with agent_and_backend(tmp_path, ui_server, "ui-test-agent", 500, 100,
                           DEMO_INPUT) as backend:
        page.goto(f"{ui_server.url}/#/pipeline")
        c = card(page, "ui-test-agent")
        try:
            expect(c).to_have_attribute("data-status", "OK", timeout=15_000)
        except AssertionError:
            raise AssertionError("agent never showed as OK; its log:\n"
                                 + (tmp_path / "agent.log").read_text()) from None
        expect(c.locator(".backend")).to_contain_text("backend ok")
        # A healthy agent's queue hovers near empty (a batch or two in flight).
        deadline = time.monotonic() + 5
        while (before := fill_of(page, "ui-test-agent")) >= 50 and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert before < 50, f"queue stays {before}% full with a healthy backend"

        backend.signal(signal.SIGSTOP)  # the backend hangs; the report target stays up
        deadline = time.monotonic() + 20
        while fill_of(page, "ui-test-agent") < 80 and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        after = fill_of(page, "ui-test-agent")
        assert after >= 80, f"queue fill only went {before}% -> {after}% in 20 s"
        # It keeps reporting (not stale), and the card says why the queue is full.
        assert "is-stale" not in (c.get_attribute("class") or "")
        expect(c).to_have_attribute("data-status", "BLOCKING", timeout=5000)
        expect(c.locator(".policy")).to_have_text("when full: block")
        expect(c.locator(".backend")).to_contain_text("backend down", timeout=5000)
        expect(page.locator("[data-testid=pipeline-summary]")).to_contain_text(
            re.compile(r"[1-9]\d* blocking or dropping"))

        backend.signal(signal.SIGCONT)  # it drains again
        expect(c).to_have_attribute("data-status", "OK", timeout=20_000)


def test_real_client_drops_show_while_backend_is_stopped(
        page: Any, ui_server: ServerProcess, tmp_path: Path) -> None:
    backend = ServerProcess(tmp_path / "backend").start()
    app = subprocess.Popen([sys.executable, "-c", CLIENT_APP, backend.url, ui_server.url],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page.goto(f"{ui_server.url}/#/pipeline")
        c = card(page, "ui-test-client")
        expect(c).to_have_attribute("data-status", "OK", timeout=15_000)
        expect(c.locator("[data-stat=latency]")).to_have_text(re.compile(r"\d+(\.\d)? (µs|ms)"))
        backend.signal(signal.SIGSTOP)
        expect(c).to_have_attribute("data-status", "DROPPING", timeout=15_000)
        expect(c.locator(".fill-text")).to_have_text("100%")
        expect(c.locator(".policy")).to_have_text("when full: drop")
        expect(c.locator(".stat.alert [data-stat=dropped]")).to_be_visible()
        expect(c.locator(".lost-reasons")).to_contain_text("lost by reason")
    finally:
        app.kill()
        app.wait(10)
        stop_quickly(backend)


def heartbeat(id_: str, name: str, **kw: Any) -> dict[str, Any]:
    hb: dict[str, Any] = {
        "id": id_, "kind": "client", "name": name, "host": "h", "pid": 1, "ts": time.time(),
        "token": f"token-of-{id_}",
        "interval_s": 5.0, "lost_by_reason": {}, "spill_bytes": 0,
        "queue": {"depth": 1, "capacity": 100, "bytes": 10, "max_bytes": 1000,
                  "when_full": "drop", "high_watermark": 5},
        "lines": {"read": 0, "enqueued": 10, "shipped": 10, "dropped": 0, "spilled": 0,
                  "lost": 0},
        "backend": {"ok": True, "last_error": None, "url": "http://x"},
        "latency_us": {"enqueue_p99": 12.5}}
    hb.update(kw)
    return hb


def test_status_words_for_drop_spill_and_stale(page: Any, ui_server: ServerProcess) -> None:
    full = {"depth": 100, "capacity": 100, "bytes": 500, "max_bytes": 1000,
            "high_watermark": 100}
    reports = [
        heartbeat("syn-drop", "syn-dropper", queue={**full, "when_full": "drop"},
                  lines={"read": 0, "enqueued": 900, "shipped": 700, "dropped": 200,
                         "spilled": 0, "lost": 200}, lost_by_reason={"queue_full": 200}),
        heartbeat("syn-spill", "syn-spiller", kind="agent", queue={**full, "when_full": "spill"},
                  spill_bytes=5 << 20),
        heartbeat("syn-stale", "syn-stale", interval_s=0.1),
    ]
    for r in reports:
        assert httpx.post(f"{ui_server.url}/sluiceway/api/v1/heartbeat", json=r).status_code == 204
    page.goto(f"{ui_server.url}/#/pipeline")
    expect(card(page, "syn-dropper")).to_have_attribute("data-status", "DROPPING")
    expect(card(page, "syn-dropper").locator(".lost-reasons")).to_contain_text("queue_full 200")
    expect(card(page, "syn-dropper").locator("[data-stat=latency]")).to_have_text("13 µs")
    expect(card(page, "syn-spiller")).to_have_attribute("data-status", "SPILLING")
    expect(card(page, "syn-spiller").locator("[data-stat=spill_bytes]")).to_have_text("5.0 MiB")
    # A stale reporter is no card of its own: it is listed in the one collapsed row.
    expect(card(page, "syn-stale")).to_have_count(0)
    expect(page.locator("[data-testid=stale-reporter]", has_text="syn-stale")).to_have_attribute(
        "data-last-status", "OK")
    expect(card(page, "syn-dropper").locator(".fill-text")).to_have_text("100%")


def test_a_real_agents_file_reader_waiting_shows_with_its_lag(
        page: Any, ui_server: ServerProcess, tmp_path: Path) -> None:
    """Block mode with a file input and a stopped backend: the card says BLOCKING, that
    the file reader waits and how many lines behind it is; the queue never passes its
    capacity in lines."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with agent_and_backend(tmp_path, ui_server, "ui-file-agent", 1000, 200,
                           FILE_INPUT.format(logs=logs)) as backend:
        page.goto(f"{ui_server.url}/#/pipeline")
        c = card(page, "ui-file-agent")
        expect(c).to_have_attribute("data-status", "OK", timeout=15_000)
        backend.signal(signal.SIGSTOP)
        with open(logs / "app.log", "w") as f:
            f.write("".join(f"line {i:06d} " + "z" * 80 + "\n" for i in range(8000)))
        expect(c).to_have_attribute("data-status", "BLOCKING", timeout=20_000)
        expect(c.locator(".status-why")).to_contain_text(
            re.compile(r"file reader waiting, [\d.]+k? lines behind"))
        f = c.locator("[data-testid=file]")
        expect(f).to_contain_text("file reader waiting")
        expect(f).to_contain_text(re.compile(r"[\d.]+k? lines behind"))
        expect(c.locator("[data-testid=memory]")).to_contain_text(re.compile(r"/ 1000 lines"))
        depth, cap = re.search(r"(\d+) / (\d+) lines", c.locator(  # type: ignore[union-attr]
            "[data-testid=memory]").inner_text()).groups()
        assert int(depth) <= int(cap) == 1000
        backend.signal(signal.SIGCONT)
        expect(c).to_have_attribute("data-status", "OK", timeout=30_000)
        expect(c.locator("[data-testid=last-push]")).to_contain_text("last push accepted")


def test_a_spill_backlog_never_reads_as_an_empty_queue(page: Any,
                                                       ui_server: ServerProcess) -> None:
    q = {"depth": 0, "capacity": 1000, "bytes": 0, "max_bytes": 1 << 24, "high_watermark": 1000,
         "when_full": "spill", "spill_max_bytes": 1 << 30}
    reports = [
        heartbeat("syn-backlog", "syn-backlog", kind="agent",
                  queue={**q, "spill_lines": 40_000, "spill_bytes": 300 << 20},
                  spill_bytes=300 << 20),
        heartbeat("syn-crumb", "syn-crumb", kind="agent",
                  queue={**q, "spill_lines": 3, "spill_bytes": 2048}, spill_bytes=2048),
    ]
    for r in reports:
        assert httpx.post(f"{ui_server.url}/sluiceway/api/v1/heartbeat", json=r).status_code == 204
    page.goto(f"{ui_server.url}/#/pipeline")
    big, crumb = card(page, "syn-backlog"), card(page, "syn-crumb")
    expect(big).to_have_attribute("data-status", "DRAINING SPILL")
    expect(big.locator(".fill-text")).to_have_text("29%")  # 300 MiB of the 1 GiB spill
    expect(big.locator("[data-testid=disk]")).to_contain_text("on disk: 40.0k lines")
    expect(big.locator("[data-testid=memory]")).to_contain_text("0 / 1000 lines in memory")
    expect(crumb).to_have_attribute("data-status", "DRAINING SPILL")
    expect(crumb.locator(".fill-text")).to_have_text("<1%")
    expect(crumb.locator(".status-why")).to_contain_text("3 lines")


def test_block_mode_shows_each_files_lag_and_the_waiting_reader(
        page: Any, ui_server: ServerProcess) -> None:
    files = [{"path": "/var/log/app/slow.log", "lag_bytes": 900_000, "lag_lines": 1234,
              "waiting": True},
             {"path": "/var/log/app/quiet.log", "lag_bytes": 0, "lag_lines": 0,
              "waiting": False}]
    hb = heartbeat("syn-block", "syn-blocker", kind="agent", files=files,
                   queue={"depth": 800, "capacity": 1000, "bytes": 10, "max_bytes": 1000,
                          "when_full": "block", "high_watermark": 1000, "waiting_s": 4.0})
    assert httpx.post(f"{ui_server.url}/sluiceway/api/v1/heartbeat", json=hb).status_code == 204
    page.goto(f"{ui_server.url}/#/pipeline")
    c = card(page, "syn-blocker")
    expect(c).to_have_attribute("data-status", "BLOCKING")
    expect(c.locator(".status-why")).to_contain_text("file reader waiting, 1234 lines behind")
    rows = c.locator("[data-testid=file]")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("app/slow.log")
    expect(rows.nth(0)).to_contain_text("1234 lines behind")
    expect(rows.nth(0)).to_contain_text("file reader waiting")
    expect(rows.nth(1)).not_to_contain_text("waiting")
    expect(c.locator("[data-testid=memory]")).to_contain_text("800 / 1000 lines in memory")
