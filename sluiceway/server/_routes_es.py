"""Elasticsearch-compatible ingest: `POST /_bulk` (and `/<index>/_bulk`), plus `GET /`
answering Elasticsearch clients' version check. Documents go through the same
validation, WAL and store as Loki pushes; the answer is Elasticsearch's bulk response,
with an error on exactly the items that were not stored."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse

from sluiceway import __version__
from sluiceway.server._config import LimitsSection
from sluiceway.server._context import UI_DIR, ctx_of
from sluiceway.server._distributor import (
    Prepared,
    PushError,
    Validated,
    finish_push,
    reject_too_far_behind,
    validate,
)
from sluiceway.store import Store, WalWriteError
from sluiceway.store._record import encode_record
from sluiceway.wire import WireError, batches_to_blocks
from sluiceway.wire._compress import decode_content_encoding
from sluiceway.wire._es_bulk import BulkItem, decode_bulk, items_to_batches

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
    """Browsers get the UI; Elasticsearch clients (Filebeat, Logstash, `es.info()`) check
    the version here before they send anything."""
    if "text/html" in request.headers.get("accept", "") and (UI_DIR / "index.html").is_file():
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
    body = await request.body()
    max_body = ctx.cfg.server.max_body_size
    if len(body) > max_body:
        return es_error("content_too_long_exception",
                        f"request body too large: {len(body)} bytes, limit {max_body}", 413)
    fields = [f for f in request.query_params.get("_stream_fields", "").split(",") if f]
    try:
        data = decode_content_encoding(body, request.headers.get("content-encoding"), max_body)
        items = await run_in_threadpool(decode_bulk, data, index, fields, time.time_ns())
        v, payload, crc = await run_in_threadpool(_accept, tenant, items, ctx.limits,
                                                  ctx.store)
    except (WireError, PushError) as exc:
        return es_error("illegal_argument_exception", str(exc))
    if v.blocks:
        try:
            await asyncio.wrap_future(ctx.store.push(tenant, v.blocks, payload, crc))
        except WalWriteError as exc:
            log.error("bulk request not stored: %s", exc)
            return es_error("es_rejected_execution_exception",
                            f"could not store the batch, retry later: {exc}", 503)
        ctx.metrics.lines_received.labels(tenant).inc(v.lines)
        ctx.metrics.bytes_received.labels(tenant).inc(v.bytes)
        ctx.hub.publish(tenant, v.blocks)
    for reason, n in v.rejected.items():
        ctx.metrics.lines_rejected.labels(tenant, reason).inc(n)
    return es_json(_response(items, int((time.monotonic() - started) * 1000)))


def _accept(tenant: str, items: list[BulkItem], limits: LimitsSection,
            store: Store) -> tuple[Validated, bytes, int]:
    """Validate the documents as a push and return what to store. If limits reject any
    line, find the items they belong to (checked one by one: the rare path) so that the
    answer marks exactly those, then validate the rest again."""
    v, payload, crc = _checked(tenant, items, limits, store)
    if not v.total_rejected:
        return v, payload, crc
    for it in items:
        if it.error is None:
            reason = _item_rejection(tenant, it, limits, store)
            if reason:
                it.fail("illegal_argument_exception", reason)
    v, payload, crc = _checked(tenant, items, limits, store)
    return v, payload, crc


def _checked(tenant: str, items: list[BulkItem], limits: LimitsSection,
             store: Store) -> tuple[Validated, bytes, int]:
    v = validate(batches_to_blocks(items_to_batches(items)), limits)
    payload = encode_record(tenant, v.blocks)
    prepared = Prepared(payload, zlib.crc32(payload), v.lines, v.bytes, v.rejected, v.details)
    return finish_push(tenant, prepared, limits, store)


def _item_rejection(tenant: str, item: BulkItem, limits: LimitsSection,
                    store: Store) -> str | None:
    one = BulkItem(item.action, item.index, item.doc_id, item.labels, item.ts, item.line)
    v = validate(batches_to_blocks(items_to_batches([one])), limits)
    if not v.total_rejected:
        v = Validated(v.blocks, v.lines, v.bytes)
        reject_too_far_behind(tenant, v, limits, store)
    return v.details[0] if v.total_rejected else None


def _response(items: list[BulkItem], took_ms: int) -> dict[str, Any]:
    out = []
    for seq, it in enumerate(items):
        doc_id = it.doc_id or uuid.uuid4().hex[:20]
        if it.error is None:
            out.append({it.action: {
                "_index": it.index, "_id": doc_id, "_version": 1, "result": "created",
                "_shards": {"total": 1, "successful": 1, "failed": 0}, "_seq_no": seq,
                "_primary_term": 1, "status": 201}})
        else:
            kind, reason = it.error
            out.append({it.action: {"_index": it.index, "_id": doc_id, "status": 400,
                                    "error": {"type": kind, "reason": reason}}})
    return {"took": took_ms, "errors": any(it.error for it in items), "items": out}

