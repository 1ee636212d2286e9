"""The agent's shipping (its queue drained by `sluiceway.ship`'s delivery loop) against a
scripted HTTP backend on 127.0.0.1: retries, Retry-After, 4xx, configuration errors
(401/403/404/405), 413 splits."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sluiceway.agent._config import load_config
from sluiceway.agent._positions import Positions
from sluiceway.agent._queue import AgentQueue
from sluiceway.agent._ship import shippers
from sluiceway.model import StreamBatch
from sluiceway.ship import Push
from sluiceway.wire import decode_push, encode_push_protobuf

Answer = tuple[int, str, dict[str, str]]


class Backend:
    """Answers each push with the next scripted (status, body, headers); then with
    `judge(lines of the push)` if set, else 204."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.judge: Callable[[list[str]], Answer] | None = None
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                backend.requests.append((time.monotonic(), dict(self.headers), body))
                if backend.script:
                    status, text, headers = backend.script.pop(0)
                elif backend.judge is not None:
                    lines = [ln for sb in decode_push(body, self.headers["Content-Type"], None)
                             for ln in sb.lines]
                    status, text, headers = backend.judge(lines)
                else:
                    status, text, headers = 204, "", {}
                data = text.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend()
    yield b
    b.httpd.shutdown()


class Stats:
    """The delivery counters under the names these tests were written with."""

    def __init__(self, snap: dict[str, Any]) -> None:
        self.lines_shipped = snap["shipped"]
        self.lines_lost = snap["lost"]
        self.lost_by_reason = snap["lost_by_reason"]
        self.send_failures = snap["send_failures"]
        self.backend_ok = snap["ok"]
        self.backend_state = snap["state"]
        self.backend_status = snap["last_status"]
        self.last_error = snap["last_error"]


class Rig:
    def __init__(self, tmp: Path, url: str, extra: str = "") -> None:
        self.cfg = load_config(text=f"""
url: {url}
tenant: team-a
data_dir: {tmp}
retry: {{min_backoff: 50ms, max_backoff: 200ms}}
queue: {{when_full: block}}
{extra}
inputs: [{{type: stdin}}]
""", environ={})
        self.positions = Positions(tmp / "positions.json")
        self.queue = AgentQueue(self.cfg.queue, tmp, self.positions)
        self.stop = threading.Event()
        (self.loop,) = shippers(self.cfg, self.queue, self.stop)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    @property
    def stats(self) -> Stats:
        return Stats(self.loop.snapshot())

    def put(self, lines: list[str]) -> None:
        sb = StreamBatch({"job": "t"}, list(range(1, len(lines) + 1)), lines)
        self.queue.put(Push(encode_push_protobuf([sb]), "protobuf", len(lines), []))

    def wait(self, pred: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.queue.buffer.close()


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(url: str, extra: str = "") -> Rig:
        rigs.append(Rig(tmp_path, url, extra))
        return rigs[-1]
    yield make
    for r in rigs:
        r.close()


def test_push_carries_tenant_and_lines(backend: Backend, rig_factory: Any) -> None:
    rig = rig_factory(backend.url, "auth: {bearer_token: s3cret}")
    rig.put(["a", "b"])
    rig.wait(lambda: rig.stats.lines_shipped == 2)
    _, headers, body = backend.requests[0]
    assert headers["X-Scope-OrgID"] == "team-a"
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["Content-Type"] == "application/x-protobuf"
    (sb,) = decode_push(body, headers["Content-Type"], None)
    assert sb.lines == ["a", "b"] and sb.labels == {"job": "t"}


def test_429_retry_after_is_honoured(backend: Backend, rig_factory: Any) -> None:
    backend.script = [(429, "rate limited", {"Retry-After": "1"})]
    rig = rig_factory(backend.url)
    rig.put(["x"])
    rig.wait(lambda: rig.stats.lines_shipped == 1)
    (t0, _, b0), (t1, _, b1) = backend.requests
    assert t1 - t0 >= 0.95, "Retry-After: 1 must delay the retry by a second"
    assert b0 == b1
    assert rig.stats.send_failures == 1 and rig.stats.backend_ok


def test_5xx_and_refused_connections_retry_with_backoff(backend: Backend,
                                                        rig_factory: Any) -> None:
    backend.script = [(503, "unavailable", {}), (500, "disk", {}), (502, "bad gw", {})]
    rig = rig_factory(backend.url)
    rig.put(["y"])
    rig.wait(lambda: rig.stats.lines_shipped == 1)
    assert len(backend.requests) == 4
    gaps = [b[0] - a[0] for a, b in zip(backend.requests, backend.requests[1:], strict=False)]
    assert all(g >= 0.02 for g in gaps)  # jittered backoff, never a hot loop
    assert rig.stats.lines_lost == 0


def test_per_line_rejections_count_lost_with_reason(backend: Backend, rig_factory: Any) -> None:
    body = ("entry for stream '{job=\"t\"}' has timestamp too old: 1970-01-01T00:00:00Z\n"
            "entry for stream '{job=\"t\"}' has timestamp too old: 1970-01-01T00:00:00Z\n"
            "total ignored: 2 out of 5")
    backend.script = [(400, body, {})]
    rig = rig_factory(backend.url)
    rig.put(["1", "2", "3", "4", "5"])
    rig.put(["next"])
    rig.wait(lambda: rig.stats.lines_shipped == 4)
    assert dict(rig.stats.lost_by_reason) == {"too_old": 2}
    assert len(backend.requests) == 2  # no retry of a 400


def test_non_retryable_4xx_does_not_block_the_lines_behind(backend: Backend,
                                                           rig_factory: Any) -> None:
    backend.script = [(400, "error at least one label pair is required", {}),
                      (422, "unprocessable", {})]
    rig = rig_factory(backend.url)
    for lines in (["a"], ["b", "c"], ["d"], ["e", "f"]):
        rig.put(lines)
    rig.wait(lambda: rig.stats.lines_shipped == 3)
    assert dict(rig.stats.lost_by_reason) == {"http_400": 1, "http_422": 2}
    assert len(backend.requests) == 4
    assert rig.stats.backend_state == "ok"  # the backend answers: it is the data


@pytest.mark.parametrize("status", [401, 403, 404, 405])
def test_configuration_errors_keep_the_lines_past_max_retries(
        backend: Backend, rig_factory: Any, status: int,
        caplog: pytest.LogCaptureFixture) -> None:
    """401/403/404/405 mean the url, auth or proxy is wrong: nothing is lost, whatever
    max_retries says; the backend shows DOWN with the status and body until it is fixed."""
    caplog.set_level(logging.WARNING, logger="sluiceway.agent")
    backend.script = [(status, f"no way {status}", {})] * 6
    rig = rig_factory(backend.url, "retry: {min_backoff: 10ms, max_backoff: 40ms, "
                                   "max_retries: 1}")
    rig.put(["kept-1", "kept-2"])
    rig.wait(lambda: len(backend.requests) >= 4)
    assert rig.stats.backend_state == "down" and not rig.stats.backend_ok
    assert rig.stats.backend_status == status
    assert rig.stats.last_error == f"HTTP {status}: no way {status}"
    assert rig.stats.lines_lost == 0 and rig.stats.lines_shipped == 0
    rig.wait(lambda: rig.stats.lines_shipped == 2)  # the script ran out: "fixed"
    assert rig.stats.lines_lost == 0 and rig.stats.backend_state == "ok"
    assert len(backend.requests) == 7
    downs = [r for r in caplog.records if "backend DOWN" in r.getMessage()]
    assert len(downs) == 1, "one warning per state change, not one per retry"
    assert any("taking pushes again" in r.getMessage() for r in caplog.records)


def test_413_splits_the_batch_until_it_fits(backend: Backend, rig_factory: Any) -> None:
    """A body the backend finds too large is cut in halves and sent again; a single line
    still too large is lost as too_large, and only that line."""
    def judge(lines: list[str]) -> Answer:
        if len(lines) > 2 or any(len(line) > 100 for line in lines):
            return 413, "request_body_too_large", {}
        return 204, "", {}
    backend.judge = judge
    rig = rig_factory(backend.url)
    sent = [f"line-{i}" for i in range(5)] + ["x" * 200, "after"]
    rig.put(sent)
    rig.wait(lambda: rig.stats.lines_shipped + rig.stats.lines_lost == 7)
    assert dict(rig.stats.lost_by_reason) == {"too_large": 1}
    assert rig.stats.lines_shipped == 6
    got = [ln for _, h, body in backend.requests
           for sb in decode_push(body, h["Content-Type"], None) for ln in sb.lines]
    stored = [ln for ln in sent if len(ln) <= 100]
    assert sorted(set(got) & set(stored)) == sorted(stored)


@pytest.mark.parametrize("status,reason", [(429, "rate_limited"), (503, "server_error")])
def test_a_configured_retry_limit_counts_its_reason(backend: Backend, rig_factory: Any,
                                                    status: int, reason: str) -> None:
    backend.script = [(status, "busy", {})] * 3
    rig = rig_factory(backend.url, "retry: {min_backoff: 10ms, max_backoff: 20ms, "
                                   "max_retries: 2}")
    rig.put(["gone"])
    rig.put(["next"])
    rig.wait(lambda: rig.stats.lines_shipped == 1)
    assert dict(rig.stats.lost_by_reason) == {reason: 1}


def test_max_retries_gives_up_and_counts(tmp_path: Path, rig_factory: Any) -> None:
    rig = rig_factory("http://127.0.0.1:9", "retry: {min_backoff: 10ms, max_backoff: 20ms,"
                      " max_retries: 2}\ntimeout: 200ms")
    rig.put(["lost"])
    rig.wait(lambda: rig.stats.lines_lost == 1)
    assert dict(rig.stats.lost_by_reason) == {"retries_exhausted": 1}
    assert not rig.stats.backend_ok and rig.stats.last_error
    assert rig.stats.backend_state == "retrying"


def test_tls_with_a_private_ca_and_basic_auth(tmp_path: Path, rig_factory: Any) -> None:
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    b = Backend()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    b.httpd.socket = ctx.wrap_socket(b.httpd.socket, server_side=True)
    try:
        url = b.url.replace("http://", "https://")
        rig = rig_factory(url, f"tls: {{ca_file: {cert}}}\nauth: {{username: u, password: p}}")
        rig.put(["secret line"])
        rig.wait(lambda: rig.stats.lines_shipped == 1)
        assert b.requests[0][1]["Authorization"] == "Basic dTpw"
    finally:
        b.httpd.shutdown()
