"""copytruncate during an outage, with a real server and a real agent in block mode.

The backend is frozen (SIGSTOP), the queue fills and the file reader blocks part-way
through the file; the file is then truncated in place (same inode) and rewritten longer
than the blocked reader's offset. When the backend comes back the reader must notice the
truncation before it reads on: every new line arrives exactly once, no stored line is a
piece of two lines, and the old lines it never read are counted lost as `truncated`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.agent.agentproc import AgentProcess, fetch_lines
from tests.agent.conftest import Stack
from tests.procs import ServerProcess

HEADER = "#### app.log -- the same first line in every generation of the file ####"


def line(tag: str, i: int) -> str:
    # Old and new lines differ in length and filler, so a read at a stale offset in the
    # rewritten file cuts lines where no whole line starts and stores visible pieces.
    return f"{tag} seq={i:06d} " + ("x" * 80 if tag == "old" else "y" * 61)


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a") as f:
        f.write("".join(x + "\n" for x in lines))


def config(srv: ServerProcess, logs: Path, **file_opts: Any) -> dict[str, Any]:
    return {
        "url": srv.url, "timeout": "1s", "positions_sync": "200ms", "heartbeat_interval": "1s",
        "retry": {"min_backoff": "100ms", "max_backoff": "300ms"},
        "batch": {"max_lines": 500, "max_wait": "100ms"},
        "queue": {"capacity": 1000, "when_full": "block"},
        "inputs": [{"type": "file", "paths": [str(logs / "*.log")], "start_at": "beginning",
                    "labels": {"job": "trunc"}, "poll_interval": "50ms",
                    "glob_interval": "200ms", "read_bytes": "64KiB", **file_opts}],
    }


def block_reader(srv: ServerProcess, agent: AgentProcess, app: Path,
                 old: list[str]) -> None:
    """Ship the first lines, freeze the backend, write the rest until the reader blocks."""
    append(app, old[:1000])
    agent.wait_for(lambda s: s["lines"]["shipped"] >= 1000, what="first lines shipped")
    srv.signal(signal.SIGSTOP)
    append(app, old[1000:])
    # Full queue and a read offset short of the end: with 3000 more lines than the queue,
    # batcher and one read hold together, the reader is stuck in the middle of the file.
    agent.wait_for(lambda s: s["files"][0]["waiting"] and s["queue"]["waiting_s"] > 0
                   and s["queue"]["depth"] + 500 > s["queue"]["capacity"]
                   and s["files"][0]["read_offset"] < app.stat().st_size,
                   what="the reader blocked on the full queue")


def copytruncate(app: Path) -> None:
    """What logrotate's copytruncate does: copy aside (outside the glob), truncate in place."""
    ino = app.stat().st_ino
    (app.parent.parent / "app.log.1").write_bytes(app.read_bytes())
    os.truncate(app, 0)
    assert app.stat().st_ino == ino


def arrived(srv: ServerProcess, agent: AgentProcess, new: list[str]) -> list[str]:
    """Resume the backend and wait until every new line is stored and the queue drained."""
    srv.signal(signal.SIGCONT)
    want = set(new)
    deadline = time.monotonic() + 60
    got: list[str] = []
    while time.monotonic() < deadline:
        got = fetch_lines(srv, '{job="trunc"}')
        if want <= set(got):
            break
        time.sleep(0.3)
    agent.wait_for(lambda s: s["queue"]["depth"] == 0 and s["queue"]["in_flight"] == 0,
                   what="queue drained")
    return fetch_lines(srv, '{job="trunc"}')


def test_truncated_while_blocked_no_duplicates_no_torn_line(stack: Stack,
                                                           tmp_path: Path) -> None:
    srv = stack.server()
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.touch()
    agent = stack.agent(config(srv, logs))
    old = [line("old", i) for i in range(4000)]
    new = [line("new", i) for i in range(5000)]  # longer than the old file: regrown past it
    block_reader(srv, agent, app, old)
    copytruncate(app)
    append(app, new)
    got = arrived(srv, agent, new)
    st = agent.status()

    written = set(old) | set(new)
    foreign = [x for x in got if x not in written]
    assert foreign == [], f"torn lines stored: {foreign[:3]}"
    got_new = [x for x in got if x.startswith("new ")]
    assert len(got_new) == len(set(got_new)), \
        f"{len(got_new) - len(set(got_new))} new lines stored twice"
    assert sorted(got_new) == sorted(new)
    got_old = [x for x in got if x.startswith("old ")]
    assert len(got_old) == len(set(got_old))
    lost = st["lost_by_reason"].get("truncated", 0)
    assert lost >= 1, st["lost_by_reason"]
    assert len(got_old) + lost <= len(old), (len(got_old), lost)
    assert st["counters"]["file_truncations"] == 1


def test_truncation_seen_while_blocked_counts_every_line_it_took(stack: Stack,
                                                                 tmp_path: Path) -> None:
    """Both generations start with the same header, longer than the fingerprint: only the
    shrink, seen while the reader waits, tells them apart. The watcher counted the lines
    past the read offset before the truncation, so the loss is counted exactly."""
    srv = stack.server()
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.touch()
    agent = stack.agent(config(srv, logs, fingerprint_bytes=32))
    old = [HEADER] + [line("old", i) for i in range(4000)]
    new = [HEADER] + [line("new", i) for i in range(5000)]
    block_reader(srv, agent, app, old)
    size = app.stat().st_size
    st = agent.wait_for(lambda s: s["files"][0]["size"] == size
                        and s["files"][0].get("lag_lines") is not None,
                        what="the lines past the blocked reader counted")
    waiting = st["files"][0]["lag_lines"]
    assert 0 < waiting < len(old)
    copytruncate(app)
    st = agent.wait_for(lambda s: s["counters"]["file_truncations"] == 1,
                        what="the truncation seen while the reader is blocked")
    lost = st["lost_by_reason"]["truncated"]
    assert lost == waiting  # every line had its newline: none cut short at the end
    append(app, new)  # same first bytes, regrown past the old offset
    got = arrived(srv, agent, new)
    st = agent.status()

    written = set(old) | set(new)
    foreign = [x for x in got if x not in written]
    assert foreign == [], f"torn lines stored: {foreign[:3]}"
    assert got.count(HEADER) == 2  # once per generation
    got_new = [x for x in got if x.startswith("new ")]
    assert sorted(got_new) == new[1:], f"{len(got_new)} stored, {len(new) - 1} written"
    got_old = [x for x in got if x.startswith("old ")]
    assert sorted(got_old) == old[1:len(got_old) + 1]  # a prefix, each once
    # Every old line was either read (and then shipped: block mode keeps read lines) or
    # counted lost, and the bytes lost are exactly those of the lines lost.
    assert 1 + len(got_old) + lost == len(old)
    assert st["lost_by_reason"] == {"truncated": lost}
    assert st["counters"]["truncated_bytes_lost"] == sum(
        len(x) + 1 for x in old[len(old) - lost:])
    assert st["counters"]["file_truncations"] == 1
    metrics = httpx.get(f"{agent.url}/metrics").text
    assert f'sluiceway_agent_lines_lost_total{{reason="truncated"}} {lost}' in metrics
    assert "sluiceway_agent_truncated_bytes_lost_total " in metrics
    assert f"{lost} lines lost (reason truncated)" in agent.log()
