"""The HTTP API: Loki's push and query endpoints, metrics, heartbeats, and the UI."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse
from starlette.staticfiles import StaticFiles

from sluiceway import __version__
from sluiceway.logql import (
    QueryError,
    QueryParams,
    evaluate,
    format_query,
    parse,
    parse_selector,
)
from sluiceway.server._config import Config
from sluiceway.server._distributor import PushError, finish_push
from sluiceway.server._ingest_pool import IngestPool
from sluiceway.server._metrics import RequestMetricsMiddleware, ServerMetrics
from sluiceway.server._params import (
    ParamError,
    parse_direction,
    parse_limit,
    parse_seconds_or_duration,
    parse_time,
    tenants_from_header,
    time_range,
)
from sluiceway.server._pipeline import PipelineRegistry
from sluiceway.server._querier import QueryTimeout, StoreSource
from sluiceway.server._tail import BlocksSource, TailHub
from sluiceway.server._volume import bucket_edges, volume
from sluiceway.store import Store, StoreConfig, WalWriteError
from sluiceway.store._store import index_stats
from sluiceway.wire import BodyTooLarge, WireError

log = logging.getLogger("sluiceway.server")
UI_DIR = Path(__file__).resolve().parent.parent / "ui" / "static"


class JSONResponse(Response):
    media_type = "application/json; charset=UTF-8"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def store_config(cfg: Config) -> StoreConfig:
    s = cfg.storage
    return StoreConfig(
        data_dir=s.data_dir, wal_sync=s.wal_sync, wal_sync_interval_s=s.wal_sync_interval,
        wal_segment_bytes=s.wal_segment_size, max_wal_bytes=s.max_wal_size,
        chunk_target_bytes=s.chunk_target_size, max_chunk_age_s=s.max_chunk_age,
        chunk_idle_s=s.chunk_idle_period, compression_level=s.compression_level,
        flush_check_interval_s=s.flush_check_period, retention_period_s=s.retention_period,
        retention_check_interval_s=s.retention_check_interval, cache_bytes=s.cache_size,
        flush_on_shutdown=s.flush_on_shutdown, compaction_enabled=s.compaction_enabled,
        compaction_level=s.compaction_level, compaction_target_bytes=s.compaction_target_size,
        compaction_min_age_s=s.compaction_min_age, compaction_interval_s=s.compaction_interval)


def _bad(msg: str, status: int = 400) -> PlainTextResponse:
    return PlainTextResponse(msg + "\n" if not msg.endswith("\n") else msg, status_code=status)


def create_app(cfg: Config, store: Store | None = None,
               pool: IngestPool | None = None) -> FastAPI:
    """Build the app; the store is opened at startup unless one is given."""
    state: dict[str, Any] = {"store": store}
    metrics = ServerMetrics()
    pipeline = PipelineRegistry(cfg.server.heartbeat_stale_factor)
    hub = TailHub()
    pool = pool or IngestPool(0)
    limits = cfg.limits

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if state["store"] is None:
            state["store"] = await run_in_threadpool(Store, store_config(cfg))
        metrics.bind_store(state["store"])
        yield
        pool.close()
        await run_in_threadpool(state["store"].close)

    app = FastAPI(title="Sluiceway", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    app.state.pipeline = pipeline
    app.state.cfg = cfg

    def st() -> Store:
        s: Store = state["store"]
        return s

    def tenants(request: Request, allow_many: bool) -> list[str]:
        return tenants_from_header(request.headers.get("x-scope-orgid"),
                                   cfg.server.default_tenant, cfg.server.auth_enabled,
                                   allow_many)

    async def param_error(_r: Request, exc: Exception) -> Response:
        return _bad(str(exc))

    async def no_org(_r: Request, _exc: Exception) -> Response:
        return _bad("no org id", 401)

    app.add_exception_handler(ParamError, param_error)
    app.add_exception_handler(QueryError, param_error)
    app.add_exception_handler(PermissionError, no_org)

    async def timed_out(_r: Request, exc: Exception) -> Response:
        return _bad(str(exc), 504)

    app.add_exception_handler(QueryTimeout, timed_out)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    # --- ingest -------------------------------------------------------------------------
    async def push(request: Request) -> Response:
        tenant = tenants(request, allow_many=False)[0]
        max_body = cfg.server.max_body_size
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body:
            return _bad(f"request body too large: {declared} bytes, limit {max_body}", 413)
        body = await request.body()
        if len(body) > max_body:
            return _bad(f"request body too large: {len(body)} bytes, limit {max_body}", 413)
        ctype, cenc = request.headers.get("content-type"), request.headers.get("content-encoding")

        try:
            prepared = await pool.prepare(tenant, body, ctype, cenc, max_body, limits)
        except BodyTooLarge as exc:
            return _bad(str(exc), 413)
        except (WireError, PushError) as exc:
            return _bad(str(exc))
        v, payload = await run_in_threadpool(finish_push, tenant, prepared, limits, st())
        for reason, n in v.rejected.items():
            metrics.lines_rejected.labels(tenant, reason).inc(n)
        if v.blocks:
            try:
                await asyncio.wrap_future(st().push(tenant, v.blocks, payload))
            except WalWriteError as exc:
                log.error("push not stored: %s", exc)
                return _bad(f"could not store the batch, retry later: {exc}", 503)
            metrics.lines_received.labels(tenant).inc(v.lines)
            hub.publish(tenant, v.blocks)
            metrics.bytes_received.labels(tenant).inc(v.bytes)
        if v.total_rejected:
            return _bad(v.message())
        return Response(status_code=204)

    app.add_api_route("/loki/api/v1/push", push, methods=["POST"])
    app.add_api_route("/api/prom/push", push, methods=["POST"])

    # --- queries ------------------------------------------------------------------------
    async def params_of(request: Request) -> dict[str, str]:
        p = dict(request.query_params)
        if request.method == "POST":
            form = await request.form()
            p.update({k: str(v) for k, v in form.items()})
        return p

    async def run_query(request: Request, instant: bool) -> Response:
        p = await params_of(request)
        q = p.get("query")
        if not q:
            raise ParamError("query parameter is required")
        ts = tenants(request, allow_many=True)
        limit = parse_limit(p.get("limit"), 100, limits.max_entries_limit_per_query)
        if instant:
            start = end = parse_time(p.get("time"), time.time_ns(), "time")
        else:
            start, end = time_range(p, 3600)
            if limits.max_query_length and end - start > limits.max_query_length * 1e9:
                raise ParamError(f"the query time range exceeds the limit (query length: "
                                 f"{(end - start) / 3.6e12:.0f}h, limit: "
                                 f"{limits.max_query_length / 3600:.0f}h)")
        step = p.get("step")
        interval = p.get("interval")
        qp = QueryParams(
            tenants=ts, start=start, end=end, limit=limit,
            direction=parse_direction(p.get("direction")),
            step_ns=int(parse_seconds_or_duration(step, "step") * 1e9) if step else None,
            interval_ns=int(parse_seconds_or_duration(interval, "interval") * 1e9)
            if interval else None,
            instant=instant,
            categorize_labels="categorize-labels" in request.headers.get(
                "x-loki-response-encoding-flags", ""))
        if qp.step_ns is not None and qp.step_ns <= 0:
            raise ParamError("zero or negative query resolution step widths are not accepted. "
                             "Try a positive integer")
        timeout = limits.query_timeout
        source = StoreSource(st(), time.monotonic() + timeout if timeout else None, timeout)
        result = await run_in_threadpool(evaluate, source, q, qp)
        data = result.to_loki_json()
        if data["resultType"] in ("matrix", "vector") and limits.max_query_series and \
                len(data["result"]) > limits.max_query_series:
            raise ParamError(f"maximum of series ({limits.max_query_series}) reached for a "
                             "single query")
        return JSONResponse({"status": "success", "data": data})

    async def query_range(request: Request) -> Response:
        return await run_query(request, instant=False)

    async def query(request: Request) -> Response:
        return await run_query(request, instant=True)

    for path, fn in (("/loki/api/v1/query_range", query_range), ("/loki/api/v1/query", query),
                     ("/api/prom/query", query_range)):
        app.add_api_route(path, fn, methods=["GET", "POST"])

    # --- labels and series ------------------------------------------------------------
    async def labels(request: Request) -> Response:
        p = await params_of(request)
        start, end = time_range(p, 6 * 3600)
        matchers = parse_selector(p["query"]) if p.get("query") else None
        names = await run_in_threadpool(st().label_names, tenants(request, True), start, end,
                                        matchers)
        return JSONResponse({"status": "success", "data": names})

    async def label_values(request: Request) -> Response:
        p = await params_of(request)
        start, end = time_range(p, 6 * 3600)
        matchers = parse_selector(p["query"]) if p.get("query") else None
        vals = await run_in_threadpool(st().label_values, tenants(request, True),
                                       request.path_params["name"], start, end, matchers)
        return JSONResponse({"status": "success", "data": vals})

    async def series(request: Request) -> Response:
        p = await params_of(request)
        selectors = request.query_params.getlist("match[]") or request.query_params.getlist(
            "match")
        if request.method == "POST":
            form = await request.form()
            selectors += [str(v) for v in form.getlist("match[]")]
        if not selectors:
            raise ParamError("at least one match[] parameter is required")
        start, end = time_range(p, 6 * 3600)
        ts = tenants(request, True)
        seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        for sel in selectors:
            for s in await run_in_threadpool(st().series, ts, parse_selector(sel), start, end):
                seen.setdefault(tuple(sorted(s.labels.items())), s.labels)
        return JSONResponse({"status": "success", "data": list(seen.values())})

    app.add_api_route("/loki/api/v1/labels", labels, methods=["GET", "POST"])
    app.add_api_route("/loki/api/v1/label", labels, methods=["GET", "POST"])
    app.add_api_route("/loki/api/v1/label/{name}/values", label_values, methods=["GET", "POST"])
    app.add_api_route("/loki/api/v1/series", series, methods=["GET", "POST"])

    # --- index statistics, volume, formatting -----------------------------------------
    async def stats(request: Request) -> Response:
        p = await params_of(request)
        if not p.get("query"):
            raise ParamError("query parameter is required")
        start, end = time_range(p, 3600)
        matchers = parse_selector(p["query"])
        out = await run_in_threadpool(index_stats, st(), tenants(request, True), matchers,
                                      start, end)
        return JSONResponse(out)

    async def run_volume(request: Request, ranged: bool) -> Response:
        p = await params_of(request)
        if not p.get("query"):
            raise ParamError("query parameter is required")
        start, end = time_range(p, 3600)
        matchers = parse_selector(p["query"])
        step_ns: int | None = None
        if ranged:
            step = p.get("step")
            secs = parse_seconds_or_duration(step, "step") if step else \
                max(1.0, (end - start) / 1e9 / 250)
            step_ns = int(secs * 1e9)
        targets = [t for t in p.get("targetLabels", "").split(",") if t] or None
        agg = p.get("aggregateBy", "series")
        if agg not in ("series", "labels"):
            raise ParamError(f"invalid aggregateBy {agg!r}: use series or labels")
        res = await run_in_threadpool(
            volume, st(), tenants(request, True), matchers, start, end, step_ns, targets,
            parse_limit(p.get("limit"), 100, 0), agg)
        if not ranged:
            result = [{"metric": dict(k), "value": [end / 1e9, str(int(v[0]))]}
                      for k, v in res.items()]
            return JSONResponse({"status": "success", "data": {"resultType": "vector",
                                                               "result": result}})
        assert step_ns is not None
        edges = bucket_edges(start, end, step_ns).tolist()
        # Loki stamps each bucket 1 ms before its boundary, the last one at `end`.
        stamps = [round((e - 1_000_000) / 1e9, 3) for e in edges[1:-1]] + [end / 1e9]
        matrix = [{"metric": dict(k), "values": [[t, str(int(x))] for t, x in
                                                 zip(stamps, v.tolist(), strict=True)]}
                  for k, v in res.items()]
        return JSONResponse({"status": "success", "data": {"resultType": "matrix",
                                                           "result": matrix}})

    async def volume_instant(request: Request) -> Response:
        return await run_volume(request, ranged=False)

    async def volume_range(request: Request) -> Response:
        return await run_volume(request, ranged=True)

    async def fmt(request: Request) -> Response:
        p = await params_of(request)
        if not p.get("query"):
            raise ParamError("query parameter is required")
        return JSONResponse({"status": "success", "data": format_query(parse(p["query"]))})

    app.add_api_route("/loki/api/v1/index/stats", stats, methods=["GET", "POST"])
    app.add_api_route("/loki/api/v1/index/volume", volume_instant, methods=["GET", "POST"])
    app.add_api_route("/loki/api/v1/index/volume_range", volume_range, methods=["GET", "POST"])
    app.add_api_route("/loki/api/v1/format_query", fmt, methods=["GET", "POST"])

    # --- live tail (websocket) -----------------------------------------------------------
    @app.websocket("/loki/api/v1/tail")
    async def tail(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await _tail_session(ws)
        except WebSocketDisconnect:
            return
        except (ParamError, QueryError) as exc:
            await ws.close(code=1008, reason=str(exc)[:120])

    async def _tail_session(ws: WebSocket) -> None:
        p = dict(ws.query_params)
        q = p.get("query") or ""
        expr = parse(q)
        ts = tenants_from_header(ws.headers.get("x-scope-orgid"), cfg.server.default_tenant,
                                 cfg.server.auth_enabled, True)
        limit = parse_limit(p.get("limit"), 100, limits.max_entries_limit_per_query)
        delay = parse_seconds_or_duration(p.get("delay_for") or "0", "delay_for")
        if delay > 5:
            raise ParamError("delay_for can't be greater than 5")
        now = time.time_ns()
        start = parse_time(p.get("start"), now - 3600 * 10**9, "start")
        session = hub.open(ts)  # before the history query, so no line falls in between
        watcher = asyncio.create_task(_until_disconnect(ws))
        try:
            hist = await run_in_threadpool(evaluate, StoreSource(st()), expr, QueryParams(
                tenants=ts, start=start, end=now + 1, limit=limit, direction="backward"))
            first = hist.to_loki_json()
            # A line pushed while the history query ran is in both: send it once.
            sent = {(v[0], v[1]) for s in first["result"] for v in s["values"]}
            if first["result"]:  # Loki sends no frame for an empty history
                await ws.send_text(_tail_message(first).decode())
            while True:
                get = asyncio.ensure_future(session.queue.get())
                done, _ = await asyncio.wait({get, watcher},
                                             return_when=asyncio.FIRST_COMPLETED)
                if get not in done:  # the client went away
                    get.cancel()
                    return
                tenant, blocks = get.result()
                if delay:
                    await asyncio.sleep(delay)
                # `limit` bounds the history only; every new line matching is sent live.
                everything = max(1, sum(len(b) for b in blocks))
                res = await run_in_threadpool(evaluate, BlocksSource(tenant, blocks), expr,
                                              QueryParams(tenants=[tenant], start=0,
                                                          end=2**62, limit=everything,
                                                          direction="forward"))
                msg = res.to_loki_json()
                if sent:
                    for s in msg["result"]:
                        s["values"] = [v for v in s["values"] if (v[0], v[1]) not in sent]
                    msg["result"] = [s for s in msg["result"] if s["values"]]
                if msg["result"]:
                    await ws.send_text(_tail_message(msg).decode())
        finally:
            watcher.cancel()
            hub.close(session)

    # --- operations ---------------------------------------------------------------------
    @app.get("/ready")
    async def ready() -> Response:
        if state["store"] is None or not st().ready:
            return PlainTextResponse("starting\n", status_code=503)
        return PlainTextResponse("ready\n")

    @app.get("/metrics")
    async def prom_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/loki/api/v1/status/buildinfo")
    async def buildinfo() -> Response:
        return JSONResponse({"version": __version__, "revision": "", "branch": "main",
                             "buildDate": "", "buildUser": "", "goVersion": "",
                             "application": "sluiceway"})

    @app.post("/flush")
    async def flush() -> Response:
        await run_in_threadpool(st().flush_all)
        return Response(status_code=204)

    @app.post("/sluiceway/api/v1/heartbeat")
    async def heartbeat(request: Request) -> Response:
        try:
            report = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _bad(f"heartbeat is not valid JSON: {exc}")
        if not isinstance(report, dict) or not isinstance(report.get("id"), str) \
                or report.get("kind") not in ("agent", "client"):
            return _bad('heartbeat needs a JSON object with a string "id" and "kind" of '
                        '"agent" or "client"')
        pipeline.record(report)
        return Response(status_code=204)

    @app.get("/sluiceway/api/v1/pipeline")
    async def pipeline_view() -> Response:
        return JSONResponse({"status": "success", "data": pipeline.snapshot()})

    @app.post("/sluiceway/api/v1/compact")
    async def compact(request: Request) -> Response:
        """Run a compaction pass now; `min_age` (duration) overrides the configured age."""
        age = request.query_params.get("min_age")
        min_age = parse_seconds_or_duration(age, "min_age") if age else None
        r = await run_in_threadpool(st().compact, min_age)
        return JSONResponse({"status": "success", "data": {
            "chunks_in": r.chunks_in, "chunks_out": r.chunks_out, "bytes_in": r.bytes_in,
            "bytes_out": r.bytes_out, "seconds": round(r.seconds, 3)}})

    @app.get("/sluiceway/api/v1/storage")
    async def storage_view() -> Response:
        return JSONResponse({"status": "success", "data": st().disk_usage()})

    if UI_DIR.is_dir():
        # Last, so every API route above wins; `html=True` serves index.html at `/`.
        app.mount("/", StaticFiles(directory=UI_DIR, html=True), name="ui")
    return app


def _tail_message(data: dict[str, Any]) -> bytes:
    """Loki's tail frame: one stream object per entry, oldest first."""
    entries = [(int(v[0]), s["stream"], v) for s in data["result"] for v in s["values"]]
    entries.sort(key=lambda e: e[0])
    streams = [{"stream": labels, "values": [v]} for _, labels, v in entries]
    return orjson.dumps({"streams": streams})


async def _until_disconnect(ws: WebSocket) -> None:
    """Returns when the tail client closes; it sends nothing else we need."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass
