"""Loki's `max_global_streams_per_user`: a tenant cannot create more active streams than
the limit; pushes to its existing streams go on; the refusal is Loki's 429 and text,
replayed from answers recorded from a real Loki (limit 5). In-process: no process
boundary is under test here."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from sluiceway.server import load_config
from sluiceway.server._app import create_app, open_store
from tests.procs import FIXTURES

RESP = FIXTURES / "responses"


def _recorded(name: str, base: int) -> tuple[bytes, int, str]:
    """The recorded request body with its times moved to `base`, Loki's status and text."""
    req = json.loads((RESP / f"{name}.request.json").read_text())
    body = json.loads(req["bodyRelative"])
    for s in body["streams"]:
        s["values"] = [[str(base + int(v[0])), *v[1:]] for v in s["values"]]
    return orjson.dumps(body), req["status"], (RESP / req["responseFile"]).read_text()


class _Server:
    def __init__(self, tmp: Path, overrides: dict[str, Any]) -> None:
        self.cfg = load_config(None, {"storage.data_dir": str(tmp / "data"),
                                      "storage.compaction_enabled": False, **overrides})
        self.store = open_store(self.cfg)
        self.app = create_app(self.cfg, self.store)

    async def __aenter__(self) -> httpx.AsyncClient:
        self._life = self.app.router.lifespan_context(self.app)
        await self._life.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                        base_url="http://sluiceway")
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._life.__aexit__(None, None, None)


async def _push(c: httpx.AsyncClient, body: bytes, tenant: str = "fake") -> httpx.Response:
    return await c.post("/loki/api/v1/push", content=body, headers={
        "Content-Type": "application/json", "X-Scope-OrgID": tenant})


def _body(streams: dict[str, str], ts: int) -> bytes:
    return orjson.dumps({"streams": [{"stream": {"app": "lim", "n": n}, "values": [
        [str(ts), line]]} for n, line in streams.items()]})


async def _lines(c: httpx.AsyncClient, since: int, tenant: str = "fake") -> list[str]:
    r = await c.get("/loki/api/v1/query_range", headers={"X-Scope-OrgID": tenant}, params={
        "query": '{app="lim"}', "limit": "1000", "start": str(since)})
    return sorted(v[1] for s in r.json()["data"]["result"] for v in s["values"])


def _discarded(text: str, tenant: str) -> float:
    m = re.search(r'^sluiceway_discarded_samples_total\{(?=[^}]*reason="stream_limit")'
                  rf'(?=[^}}]*tenant="{tenant}")[^}}]*\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_stream_limit_answers_as_loki_did(tmp_path: Path) -> None:
    async def run() -> None:
        base = time.time_ns() - 2 * 3600 * 10**9
        async with _Server(tmp_path, {"limits.max_global_streams_per_user": 5}) as c:
            for name in ("limits_push_5_streams", "limits_push_stream_limit_429",
                         "limits_push_stream_limit_mixed"):
                body, status, text = _recorded(name, base)
                r = await _push(c, body)
                assert (r.status_code, r.text) == (status, text), name
            # the existing stream's line of the mixed push was stored, the new ones not
            assert await _lines(c, base) == ["again 0", "line 0", "line 1", "line 2",
                                             "line 3", "line 4"]
            # existing streams keep being accepted at the limit
            assert (await _push(c, _body({"1": "more 1"}, base + 10))).status_code == 204
            # other tenants have their own count
            assert (await _push(c, _body({"9": "x"}, base), "other")).status_code == 204
            metrics = (await c.get("/metrics")).text
            assert _discarded(metrics, "fake") == 3
            assert _discarded(metrics, "other") == 0
            # a push of only new streams over the limit stores nothing, and names the
            # last stream it refused
            r = await _push(c, _body({"10": "a", "11": "b"}, base))
            assert r.status_code == 429 and '{app="lim", n="11"}' in r.text
            assert len(await _lines(c, base)) == 7
    asyncio.run(run())


def test_streams_whose_data_is_in_chunks_and_idle_do_not_count(tmp_path: Path) -> None:
    """As in Loki, the limit is on active streams: once a stream's data is flushed and it
    has been idle for `chunk_idle_period`, its slot is free again."""
    async def run() -> None:
        base = time.time_ns() - 2 * 3600 * 10**9
        async with _Server(tmp_path, {"limits.max_global_streams_per_user": 2,
                                      "storage.chunk_idle_period": "1s",
                                      "storage.flush_check_period": "200ms"}) as c:
            assert (await _push(c, _body({"0": "a", "1": "b"}, base))).status_code == 204
            assert (await _push(c, _body({"2": "c"}, base))).status_code == 429
            deadline = time.monotonic() + 60
            while (await _push(c, _body({"2": "c"}, base))).status_code == 429:
                assert time.monotonic() < deadline, "idle streams never freed their slots"
                await asyncio.sleep(0.2)
            assert await _lines(c, base) == ["a", "b", "c"]
    asyncio.run(run())


def test_default_limit_is_lokis_and_zero_turns_it_off(tmp_path: Path) -> None:
    assert load_config(None).limits.max_global_streams_per_user == 5000

    async def run() -> None:
        base = time.time_ns() - 3600 * 10**9
        many = {str(i): f"l{i}" for i in range(20)}
        async with _Server(tmp_path, {"limits.max_global_streams_per_user": 0}) as c:
            assert (await _push(c, _body(many, base))).status_code == 204
            assert len(await _lines(c, base)) == 20
    asyncio.run(run())


def test_bulk_items_of_refused_streams_get_a_retryable_429(tmp_path: Path) -> None:
    async def run() -> None:
        async with _Server(tmp_path, {"limits.max_global_streams_per_user": 1}) as c:
            docs = b"".join(b'{"index":{"_index":"%s"}}\n{"message":"m%d"}\n' % (ix, i)
                            for i, ix in enumerate([b"a", b"b", b"a", b"b"]))
            r = await c.post("/_bulk", content=docs)
            assert r.status_code == 200
            body = r.json()
            assert body["errors"] is True
            statuses = [it["index"]["status"] for it in body["items"]]
            assert statuses == [201, 429, 201, 429]
            err = body["items"][1]["index"]["error"]
            assert err["type"] == "es_rejected_execution_exception"
            assert err["reason"].startswith("maximum active stream limit exceeded when trying "
                                            'to create stream {index="b"}')
            metrics = (await c.get("/metrics")).text
            assert _discarded(metrics, "fake") == 2
    asyncio.run(run())
