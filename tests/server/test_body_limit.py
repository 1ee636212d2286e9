"""A body without Content-Length is read piece by piece and refused (413) as soon as it
passes the limit: the server never holds more than `max_body_size` of it. Checked by
counting the bytes the server pulls from a chunked body, in process, and on a real socket
by the order of events: the 413 comes while the body is still unfinished."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inproc import CountingBody, InProcessServer
from tests.procs import ServerProcess

LIMIT = 64 * 1024
PIECE = b" " * 16 * 1024  # whitespace: valid JSON padding, so only the size can refuse it


@pytest.fixture
def app(tmp_path: Path) -> Iterator[InProcessServer]:
    a = InProcessServer(tmp_path / "data", **{"server.max_body_size": LIMIT})
    yield a
    a.close()


@pytest.mark.parametrize(("path", "content_type"), [
    ("/loki/api/v1/push", "application/json"),
    ("/otlp/v1/logs", "application/json"),
    ("/_bulk", "application/x-ndjson"),
])
def test_chunked_body_over_the_limit_is_413_without_reading_it_all(
        app: InProcessServer, path: str, content_type: str) -> None:
    body = CountingBody(PIECE, 4 << 20)
    r = app.post(path, content=body, headers={"Content-Type": content_type})
    assert r.status_code == 413, r.text
    assert "request body too large" in r.text
    # Stopped at the first piece past the limit: not one piece more was pulled.
    assert body.pulled == LIMIT + len(PIECE), body.pulled


def test_chunked_body_under_the_limit_is_read_whole(app: InProcessServer) -> None:
    line = b'{"streams":[{"stream":{"job":"chunked"},"values":[["%d","one line"]]}]}' % (
        time.time_ns())
    body = CountingBody(line, len(line))
    r = app.post("/loki/api/v1/push", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text
    assert body.pulled == len(line)


def test_a_real_server_answers_413_before_the_body_ends(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("server:\n  max_body_size: 64KiB\n")
    srv = ServerProcess(tmp_path / "data", config=cfg).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(b"POST /loki/api/v1/push HTTP/1.1\r\nHost: t\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            for _ in range(8):  # 128 KiB sent, and the body is never finished
                sock.sendall(b"%x\r\n%s\r\n" % (len(PIECE), PIECE))
            answer = b""
            deadline = time.monotonic() + 30
            while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
                try:
                    got = sock.recv(4096)
                except TimeoutError:
                    continue
                if not got:
                    break
                answer += got
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    finally:
        srv.stop()


def test_a_post_form_on_a_read_is_bounded_too(app: InProcessServer) -> None:
    # Go's ParseForm, which Loki's handlers use, stops url-encoded bodies at 10 MiB.
    piece = b"x" * (256 << 10)
    body = CountingBody(b"query=" + piece, 32 << 20)
    r = app.post("/loki/api/v1/query_range", content=body,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and "request body too large" in r.text, r.text
    assert body.pulled <= (10 << 20) + len(piece) + 6


def test_post_forms_still_work_on_reads(app: InProcessServer) -> None:
    line = b'{"streams":[{"stream":{"job":"form"},"values":[["%d","posted"]]}]}' % (
        time.time_ns())
    assert app.post("/loki/api/v1/push", content=line,
                    headers={"Content-Type": "application/json"}).status_code == 204
    r = app.post("/loki/api/v1/query_range", data={"query": '{job="form"}', "limit": "5"})
    assert r.status_code == 200, r.text
    assert [v[1] for s in r.json()["data"]["result"] for v in s["values"]] == ["posted"]
    r = app.post("/loki/api/v1/series", data={"match[]": ['{job="form"}', '{job="none"}']})
    assert r.status_code == 200 and r.json()["data"] == [{"job": "form"}], r.text
