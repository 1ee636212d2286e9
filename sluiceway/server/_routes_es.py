"""Elasticsearch-compatible ingest: `POST /_bulk` (and `/<index>/_bulk`), plus `GET /`
answering Elasticsearch clients' version check. Documents go through the same
validation, WAL and store as Loki pushes; the answer is Elasticsearch's bulk response,
with an error on exactly the items that were not stored."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse

from sluiceway import __version__
from sluiceway.server._body import read_body
from sluiceway.server._context import UI_DIR, ctx_of
from sluiceway.server._distributor import PushError
from sluiceway.server._es_ingest import mark_refused, prepare_bulk, refuse_streams
from sluiceway.server._ingest import RateLimited, commit, declared_size
from sluiceway.store import WalWriteError
from sluiceway.wire import BodyTooLarge, WireError, decode_content_encoding

log = logging.getLogger("sluiceway.server")
router = APIRouter()
# Clients of Elasticsearch 8+ refuse answers without it.
_PRODUCT = {"X-Elastic-Product": "Elasticsearch"}
_ES_VERSION = "8.17.0"  # what we answer to version checks; the bulk API is the same in 7-9


def es_json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, headers=_PRODUCT, media_type="application/json")


def es_error(kind: str, reason: str, status: int = 400) -> Response:
    cause = {"type": kind, "reason": reason}
    return es_json({"error": {"root_cause": [cause], **cause}, "status": status}, status)


@router.get("/", include_in_schema=False)
async def root(request: Request) -> Response:
    """Browsers (which ask for `text/html`) get the UI. Everything else gets the version
    answer that Elasticsearch shippers (Filebeat, Logstash, the official clients) check
    here before they send: not all of them say what they accept."""
    wants_html = "text/html" in request.headers.get("accept", "")
    if wants_html and (UI_DIR / "index.html").is_file():
        return FileResponse(UI_DIR / "index.html")
    return es_json({"name": "sluiceway", "cluster_name": "sluiceway",
                    "cluster_uuid": "sluiceway", "tagline": "You Know, for Search",
                    "version": {"number": _ES_VERSION, "build_flavor": "default",
                                "lucene_version": "9.12.0",
                                "minimum_wire_compatibility_version": "7.17.0",
                                "minimum_index_compatibility_version": "7.0.0",
                                "sluiceway": __version__}})


@router.post("/_bulk")
@router.put("/_bulk")
@router.post("/{index}/_bulk")
@router.put("/{index}/_bulk")
async def bulk(request: Request, index: str | None = None) -> Response:
    ctx = ctx_of(request)
    started = time.monotonic()
    tenant = ctx.tenants(request.headers, allow_many=False)[0]
    limits = ctx.limits_for(tenant)
    max_body = ctx.cfg.server.max_body_size
    fields = [f for f in request.query_params.get("_stream_fields", "").split(",") if f]
    now_ns = time.time_ns()
    async with ctx.inflight.push(declared_size(request)) as held:
        try:
            body = await read_body(request, max_body)
            held.add(len(body) - held.bytes)
            data = decode_content_encoding(body, request.headers.get("content-encoding"),
                                           max_body)
            bp = await ctx.pool.run(prepare_bulk, tenant, data, index, fields, limits, now_ns)
            held.add(len(bp.prepared.payload))
        except BodyTooLarge as exc:  # a WireError too: first
            return es_error("content_too_long_exception", str(exc), 413)
        except (WireError, PushError) as exc:
            return es_error("illegal_argument_exception", str(exc))
        try:
            stored = await commit(ctx, bp.prepared.record(), bp.prepared.rejections)
        except RateLimited as exc:
            return es_error("es_rejected_execution_exception", str(exc), 429)
        except WalWriteError as exc:
            log.error("bulk request not stored: %s", exc)
            return es_error("es_rejected_execution_exception",
                            f"could not store the batch, retry later: {exc}", 503)
    if stored.refused:  # over a stream limit: those items get a retryable 429
        await run_in_threadpool(refuse_streams, bp, data, index, fields,
                                [(r.block, r.message) for r in stored.refused], now_ns)
    if stored.applied is not None and stored.applied.rejections:
        await run_in_threadpool(mark_refused, tenant, bp, data, index, fields,
                                stored.applied.rejections, limits, now_ns)
    took = int((time.monotonic() - started) * 1000)
    body = b'{"took":%d,"errors":%s,"items":%s}' % (took, b"true" if bp.errors else b"false",
                                                   bp.items_json)
    return Response(body, 200, headers=_PRODUCT, media_type="application/json")
