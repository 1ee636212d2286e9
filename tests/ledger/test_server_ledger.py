"""The server's record of stored numbers: durable across a SIGKILL, a retry counts once,
a malformed header never refuses a push, sources per tenant are capped, the log's
snapshot and a torn tail read back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from sluiceway.model import LEDGER_HEADER, LedgerGroup, encode_ledger
from sluiceway.server._ledger import Ledger
from tests.inproc import InProcessServer
from tests.procs import ServerProcess


def body(n: int, app: str = "ledger") -> bytes:
    now = time.time_ns()
    return orjson.dumps({"streams": [{"stream": {"app": app}, "values": [
        [str(now + i), f"line {i}"] for i in range(n)]}]})


def header(source: str, epoch: str, a: int, b: int) -> dict[str, str]:
    return {"Content-Type": "application/json",
            LEDGER_HEADER: encode_ledger([LedgerGroup(source, epoch, [(a, b)])])}


def rows(get: Any) -> list[dict[str, Any]]:
    r = get("/sluiceway/api/v1/ledger")
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["data"]["sources"]
    return out


def test_stored_numbers_survive_a_sigkill(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data").start()
    try:
        for a in (0, 100, 200):
            r = httpx.post(f"{srv.url}/loki/api/v1/push", content=body(100),
                           headers=header("s", "e", a, a + 100))
            assert r.status_code == 204, r.text
        srv.kill()  # the numbers were recorded before each 204: nothing to lose
        srv.start()
        r = httpx.post(f"{srv.url}/sluiceway/api/v1/heartbeat", content=orjson.dumps({
            "id": "c1", "kind": "client", "token": "t" * 8, "ts": time.time(),
            "queue": {"capacity": 10, "depth": 0, "when_full": "drop"},
            "ledger": [{"in_flight": {}, "entries": [
                {"source": "s", "epoch": "e", "emitted": 300}]}]}))
        assert r.status_code == 204, r.text
        [row] = rows(lambda p: httpx.get(srv.url + p))
        assert (row["emitted"], row["stored"], row["unexplained"]) == (300, 300, 0)
        assert row["missing"] == []
    finally:
        srv.stop()


def test_a_retry_counts_once_and_a_bad_header_never_refuses(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "data")
    try:
        for _ in range(2):  # the same push twice (a retry after a lost answer)
            r = srv.post("/loki/api/v1/push", content=body(50), headers=header("s", "e", 0, 50))
            assert r.status_code == 204
        srv.post("/sluiceway/api/v1/heartbeat", content=orjson.dumps({
            "id": "c1", "kind": "client", "token": "t" * 8, "ts": time.time(),
            "queue": {"capacity": 10, "depth": 0, "when_full": "drop"},
            "ledger": [{"in_flight": {}, "entries": [
                {"source": "s", "epoch": "e", "emitted": 50}]}]}))
        [row] = rows(srv.get)
        assert (row["emitted"], row["stored"], row["unexplained"]) == (50, 50, 0)
        r = srv.post("/loki/api/v1/push", content=body(7, "other"), headers={
            "Content-Type": "application/json", LEDGER_HEADER: "7;nonsense"})
        assert r.status_code == 204  # stored, counted unattributed
        r = srv.post("/loki/api/v1/push", content=body(3, "plain"),
                     headers={"Content-Type": "application/json"})
        assert r.status_code == 204
        data = srv.get("/sluiceway/api/v1/ledger").json()["data"]
        assert data["unattributed"] == 10 and data["bad_headers"] == 1
        assert "sluiceway_ledger_bad_headers_total 1.0" in srv.get("/metrics").text
    finally:
        srv.close()


def test_sources_per_tenant_are_capped(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger", sync=False, max_sources=2)
    for i in range(3):
        fut = led.stored("t", encode_ledger([LedgerGroup(f"src{i}", "e", [(0, 10)])]), 10, 10)
        assert fut is not None
        fut.result(5)
    ans = led.answer(["t"])
    assert sorted(r["source"] for r in ans["sources"]) == ["src0", "src1"]
    assert ans["sources_over_limit_lines"] == 10 and ans["unattributed"] == 10
    led.close()


def test_the_log_reads_back_after_a_snapshot_and_a_torn_tail(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    led = Ledger(d, sync=False)
    assert led.log is not None
    led.log.max_bytes = 200  # every few records: one snapshot record instead
    for a in range(0, 1000, 100):
        fut = led.stored("t", encode_ledger([LedgerGroup("s", "e", [(a, a + 100)])]), 100, 100)
        assert fut is not None
        fut.result(5)
    before = led.answer(["t"])
    led.close()
    assert (d / "ledger.log").stat().st_size < 2000
    with open(d / "ledger.log", "ab") as f:
        f.write(b"\x40\x00\x00\x00torn")  # a write cut short by a crash
    again = Ledger(d, sync=False)
    assert again.answer(["t"])["sources"] == before["sources"]
    assert again.answer(["t"])["sources"][0]["missing"] == []
    again.close()
