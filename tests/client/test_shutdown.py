"""The exit flush under real servers: a FastAPI app (tests/client/asgi_app.py) logging
through a LokiSink to a real `sluiceway server`, run by a real uvicorn and by a real
gunicorn with uvicorn's worker, serves 100 requests and is stopped with SIGTERM or SIGINT:
every record arrives. Both servers catch the signal for their graceful shutdown and then
raise it again, which used to kill the process before the exit flush ran."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.inproc import ThreadServer
from tests.procs import POLL, REPO, _die_with_test_process, free_port

pytest.importorskip("gunicorn")

REQUESTS = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    # The apps under test are the processes here; the server only answers their pushes.
    srv = ThreadServer(tmp_path_factory.mktemp("shutdown") / "data").start()
    yield srv
    srv.stop()


class App:
    """The test app under `runner` ("uvicorn" or "gunicorn"), in its own session so a
    signal can go to its whole process group as Ctrl-C in a terminal does."""

    def __init__(self, runner: str, url: str, app: str, *args: str, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        if runner == "uvicorn":
            cmd = [sys.executable, "-m", "uvicorn", "tests.client.asgi_app:app",
                   "--port", str(self.port), "--log-level", "warning"]
        else:
            cmd = [sys.executable, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker",
                   "-w", "1", "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "30",
                   *args, "tests.client.asgi_app:app"]
        full_env = {**os.environ, "SLW_URL": url, "SLW_APP": app, **env}
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_test_process)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.output()
            try:
                if POLL.get(f"{self.base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.05)

    def serve(self, n: int = REQUESTS) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as c:
            for i in range(n):
                assert c.get(f"/r/{i}").status_code == 200

    def stop(self, sig: int, group: bool = False) -> str:
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.output()

    def output(self) -> str:
        assert self.proc.stdout is not None
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stdout.read().decode(errors="replace")


def records(srv: ThreadServer, app: str, expect: int, run: str = "1") -> list[int]:
    """The `i` of every record of `app` (and `run`) on the server, once `expect` are
    there or the deadline passed."""
    got: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = time.time_ns()
        r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=10, params={
            "query": f'{{app="{app}"}}', "start": str(now - 600 * 10**9),
            "end": str(now + 10**9), "limit": "5000"})
        r.raise_for_status()
        got = sorted(rec["i"] for s in r.json()["data"]["result"] for _, line in s["values"]
                     if (rec := json.loads(line))["run"] == run)
        if len(got) >= expect:
            break
        time.sleep(0.2)
    return got


ALL = list(range(-1, REQUESTS))  # the record logged at import, then one per request


@pytest.mark.parametrize("middleware", ["0", "1"], ids=["plain", "middleware"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_uvicorn_stopped_by_a_signal_delivers_every_record(
        server: ThreadServer, sig: int, middleware: str) -> None:
    name = f"uv-{sig}-{middleware}"
    app = App("uvicorn", server.url, name, SLW_MIDDLEWARE=middleware)
    app.serve()
    out = app.stop(sig)
    assert "Traceback" not in out, out
    assert records(server, name, len(ALL)) == ALL, out


@pytest.mark.parametrize("middleware", ["0", "1"], ids=["plain", "middleware"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_gunicorn_uvicorn_worker_stopped_by_a_signal_delivers_every_record(
        server: ThreadServer, sig: int, middleware: str) -> None:
    """SIGTERM to the master (what systemd or Kubernetes send), SIGINT to the process
    group (Ctrl-C in a terminal: the master and its worker both get it)."""
    name = f"gu-{sig}-{middleware}"
    app = App("gunicorn", server.url, name, SLW_MIDDLEWARE=middleware)
    app.serve()
    out = app.stop(sig, group=sig == signal.SIGINT)
    assert "Traceback" not in out, out
    assert records(server, name, len(ALL)) == ALL, out


def test_gunicorn_preload_relies_on_the_lifespan_flush(server: ThreadServer) -> None:
    """--preload imports the app in the master, whose signal handlers replace ours; the
    worker resets its own to the default and dies by the re-raised SIGTERM, so neither
    our handler nor atexit runs there: the middleware's lifespan flush delivers."""
    app = App("gunicorn", server.url, "preload", "--preload", SLW_MIDDLEWARE="1")
    app.serve()
    out = app.stop(signal.SIGTERM)
    assert "Traceback" not in out, out
    assert records(server, "preload", len(ALL)) == ALL, out


def test_unreachable_at_shutdown_spill_keeps_every_record_for_the_next_start(
        server: ThreadServer, tmp_path: Path) -> None:
    spill = str(tmp_path / "spill")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = App("uvicorn", dead, "spill-app", SLW_WHEN_FULL="spill", SLW_SPILL_DIR=spill,
              SLW_SHUTDOWN_TIMEOUT="1")
    app.serve()
    out = app.stop(signal.SIGTERM)
    assert "kept in the spill for the next start" in out, out
    assert list(Path(spill).rglob("*.seg"))
    # the next start of the app, the server reachable again, sends what the spill holds
    again = App("uvicorn", server.url, "spill-app", SLW_WHEN_FULL="spill",
                SLW_SPILL_DIR=spill, SLW_RUN="2")
    try:
        assert records(server, "spill-app", len(ALL)) == ALL
    finally:
        again.stop(signal.SIGTERM)


def test_unreachable_at_shutdown_drop_counts_and_says_what_it_lost() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    app = App("uvicorn", dead, "drop-app", SLW_SHUTDOWN_TIMEOUT="1")
    app.serve()
    out = app.stop(signal.SIGTERM)
    line = f"{len(ALL)} records not delivered at exit within shutdown_timeout=1s: " \
           f"{len(ALL)} lost (counted as shutdown_timeout)"
    assert out.count(line) == 1, out
