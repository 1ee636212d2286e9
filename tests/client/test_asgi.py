"""FastAPI middleware: one request id on every line of a request, and an access line."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI, HTTPException

from sluiceway import client
from tests.client.helpers import MemorySink


def make_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(client.RequestContextMiddleware)
    log = client.get_logger("orders")

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, int]:
        log.info("fetching", order_id=order_id)
        await asyncio.sleep(0.01)  # other requests interleave here
        logging_from_stdlib(order_id)
        log.info("fetched", order_id=order_id)
        return {"id": order_id}

    @app.get("/fail")
    async def fail() -> None:
        raise HTTPException(status_code=503, detail="down")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unhandled")

    return app


def logging_from_stdlib(order_id: int) -> None:
    import logging

    logging.getLogger("lib").warning("stdlib line %s", order_id)


def test_same_request_id_on_every_line_of_concurrent_requests() -> None:
    sink = MemorySink()
    client.configure(sinks=[sink])
    app = make_app()

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            reqs = [c.get(f"/orders/{i}") for i in range(20)]
            reqs.append(c.get("/orders/99", headers={"X-Request-ID": "given-id-1"}))
            return await asyncio.gather(*reqs)

    responses = asyncio.run(run())
    assert client.flush(5)
    by_rid: dict[str, list[dict[str, object]]] = {}
    for r in sink.records:
        by_rid.setdefault(str(r["request_id"]), []).append(r)
    assert len(by_rid) == 21
    for resp in responses:
        rid = resp.headers["X-Request-ID"]
        lines = by_rid[rid]
        order_id = int(resp.json()["id"])
        assert [r["msg"] for r in lines] == ["fetching", f"stdlib line {order_id}", "fetched",
                                             f"GET /orders/{order_id} 200"]
        for r in lines:
            assert r["method"] == "GET" and r["path"] == f"/orders/{order_id}"
            assert r["route"] == "/orders/{order_id}" and r["client"] == "10.1.2.3:5555"
        assert lines[0].get("order_id") == order_id
        access = lines[-1]
        assert access["status"] == 200 and access["logger"] == "access"
        assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 10
    assert "given-id-1" in by_rid


def test_error_statuses_and_unhandled_exceptions_get_access_lines() -> None:
    sink = MemorySink()
    client.configure(sinks=[sink], capture_stdlib=False)

    async def run() -> None:
        transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/fail", headers={"X-Request-ID": "bad id with spaces"})
            assert r.status_code == 503
            assert (await c.get("/boom")).status_code == 500

    asyncio.run(run())
    assert client.flush(5)
    access = [r for r in sink.records if r["logger"] == "access"]
    assert [(r["status"], r["level"]) for r in access] == [(503, "ERROR"), (500, "ERROR")]
    assert access[0]["request_id"] != "bad id with spaces"  # not a safe id: replaced
    assert "RuntimeError: unhandled" in str(access[1]["exc"])


class SlowSink(MemorySink):
    """Takes a while per batch, so records are still queued when the app shuts down."""

    def write_batch(self, records: list[dict[str, object]]) -> None:
        import time

        time.sleep(0.05)
        super().write_batch(records)


def test_lifespan_shutdown_flushes_and_a_new_startup_revives_the_pipeline() -> None:
    from fastapi.testclient import TestClient

    sink = SlowSink()
    client.configure(sinks=[sink], capture_stdlib=False, report_url=None, batch_size=5,
                     handle_signals=False)
    app = make_app()
    with TestClient(app) as http:
        for i in range(20):
            assert http.get(f"/orders/{i}").status_code == 200
    # the lifespan shutdown ran the last flush before it completed: nothing left queued
    ids = [r["order_id"] for r in sink.records if r["msg"] == "fetched"]
    assert ids == list(range(20))
    assert client.stats()["queue_depth"] == 0
    with TestClient(app) as http:  # a second run in the same process logs again
        assert http.get("/orders/99").status_code == 200
    assert [r["order_id"] for r in sink.records if r["msg"] == "fetched"][-1] == 99
