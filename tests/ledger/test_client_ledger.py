"""The in-app client's numbers reach the server's ledger: every record stored or counted
lost (the very numbers), nothing unexplained; a partial 400 agrees on both sides."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from sluiceway import client
from sluiceway.model import LEDGER_HEADER, decode_ledger
from tests.inproc import inproc_server, wait_for


def ledger(http: httpx.Client, **params: str) -> dict[str, Any]:
    r = http.get("/sluiceway/api/v1/ledger", params=params)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def settled(http: httpx.Client, emitted: int) -> dict[str, Any] | None:
    rows = ledger(http)["sources"]
    if len(rows) == 1 and rows[0]["emitted"] == emitted and rows[0]["in_flight"] == 0 \
            and rows[0]["unexplained"] == 0:
        return rows[0]
    return None


def test_a_dropping_queue_loses_exactly_the_numbers_it_counts(tmp_path: Path) -> None:
    with inproc_server(tmp_path / "data") as srv:
        client.configure([client.LokiSink(srv.url, labels={"app": "drops"}, batch_wait=0.05)],
                         when_full="drop", queue_size=8, report_interval=0.2,
                         capture_stdlib=False, handle_signals=False, name="drops")
        log = client.get_logger("t")
        for i in range(3000):
            log.info("line", n=i)
        assert client.flush(30)
        wait_for(lambda: settled(srv.http, 3000) is not None, "the ledger to settle")
        row = settled(srv.http, 3000)
        assert row is not None
        lost = sum(x["lines"] for x in row["lost_by"])
        assert lost > 0 and row["stored"] + lost == 3000
        assert {(x["hop"], x["reason"]) for x in row["lost_by"]} == {("client", "full")}
        # the very numbers: what the server misses is what the client counted lost
        assert row["missing"] == row["lost_ranges"]
        assert srv.metric("sluiceway_ledger_unexplained_lines",
                          f'source="{row["source"]}",tenant="fake"') == 0
        # and the server holds exactly the lines it says it stored
        now = time.time_ns()
        r = srv.http.get("/loki/api/v1/query_range", params={
            "query": 'sum(count_over_time({app="drops"}[1h]))',
            "start": str(now - 3600 * 10**9), "end": str(now), "step": "3600"})
        total = sum(float(v[1]) for s in r.json()["data"]["result"] for v in s["values"][-1:])
        assert total == row["stored"]


def test_lines_the_server_refuses_are_the_last_of_the_push_on_both_sides(tmp_path: Path) -> None:
    """A partial 400 (two lines too long): the client counts 2 lost, the server stores the
    rest, and the two agree on which numbers."""
    with inproc_server(tmp_path / "data", max_line_size=300) as srv:
        client.configure([client.LokiSink(srv.url, labels={"app": "partial"}, batch_wait=0.5,
                                          level_label=False)],
                         when_full="block", report_interval=0.2, capture_stdlib=False,
                         handle_signals=False, name="partial")
        log = client.get_logger("t")
        for i in range(10):
            log.info("x" * (400 if i in (2, 7) else 10), n=i)
        assert client.flush(30)
        wait_for(lambda: settled(srv.http, 10) is not None, "the ledger to settle")
        row = settled(srv.http, 10)
        assert row is not None and row["stored"] == 8
        assert row["lost_by"] == [{"hop": "client", "reason": "line_too_long", "lines": 2}]
        assert row["missing"] == row["lost_ranges"] == [[8, 10]]


class Receiver:
    """A plain HTTP receiver on 127.0.0.1 that answers 204 and keeps what it got."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, bytes]] = []
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                push = self.path.endswith("/push")
                if push:
                    me.seen.append((self.headers.get(LEDGER_HEADER), body))
                self.send_response(204 if push else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_pushes_carry_a_header_a_loki_would_ignore_and_no_metadata() -> None:
    """What goes on the wire: one header under 1 KiB naming the numbers, lines without
    the numbering keys, no structured metadata."""
    rcv = Receiver()
    client.configure([client.LokiSink(rcv.url, format="json", batch_wait=0.05)],
                     capture_stdlib=False, handle_signals=False, when_full="block")
    log = client.get_logger("t")
    for i in range(50):
        log.info("hello", n=i)
    assert client.flush(10)
    rcv.httpd.shutdown()
    numbers = [n for h, _ in rcv.seen for g in decode_ledger(h or "") for a, b in g.runs
               for n in range(a, b)]
    assert sorted(numbers) == list(range(50))
    assert all(len(h or "") <= 1024 for h, _ in rcv.seen)
    body = b"".join(b for _, b in rcv.seen)
    assert b"_seq" not in body and b"_ep" not in body and b"structuredMetadata" not in body
