"""Helpers for the browser tests: pushing lines, Explore links, feature checks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.procs import ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _children(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (the server forks ingest workers)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def stop_quickly(srv: ServerProcess, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace` s, for the server and the workers it forked.

    These tests need no clean shutdown, and a tail session the server has not noticed is
    closed can hold its shutdown for the full graceful timeout (10 s)."""
    if srv.proc is None or srv.proc.poll() is not None:
        return
    srv.signal(signal.SIGCONT)
    workers = _children(srv.proc.pid)
    srv.proc.terminate()
    try:
        srv.proc.wait(grace)
    except subprocess.TimeoutExpired:
        srv.kill()
    for pid in workers:
        # Only a worker still running this server's command line, never a reused PID.
        with contextlib.suppress(OSError):
            if str(srv.data_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def push(url: str, labels: dict[str, str], lines: list[str],
         ts_ns: list[int] | None = None) -> list[int]:
    """Push lines to one stream; timestamps default to just before now, 1 ms apart."""
    now = time.time_ns()
    ts = ts_ns or [now - (len(lines) - i) * 1_000_000 for i in range(len(lines))]
    body = {"streams": [{"stream": labels,
                         "values": [[str(t), line] for t, line in zip(ts, lines, strict=True)]}]}
    r = httpx.post(f"{url}/loki/api/v1/push", json=body, timeout=10)
    assert r.status_code == 204, r.text
    return ts


def explore_url(base: str, query: str, **params: str) -> str:
    qs = "&".join(f"{k}={quote(v, safe='')}" for k, v in {"query": query, **params}.items())
    return f"{base}/#/explore?{qs}"


def require_metric_queries(url: str) -> None:
    """Fail (not skip) with the server's own words when metric queries are missing."""
    r = httpx.get(f"{url}/loki/api/v1/query_range", timeout=10,
                  params={"query": 'sum(count_over_time({app="probe"}[1m]))', "step": "60"})
    if r.status_code != 200 or r.json().get("data", {}).get("resultType") != "matrix":
        pytest.fail("server feature missing: metric queries in /loki/api/v1/query_range "
                    f"(answered {r.status_code}: {r.text.strip()[:200]})")
