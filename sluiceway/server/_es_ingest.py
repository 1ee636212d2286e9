"""Elasticsearch bulk documents through the ingest checks: decoding and the limit checks
in an ingest worker; the heads refuse lines too far behind their stream when the record
is applied. Items are marked one by one only when something was refused, so the bulk
answer can name exactly the documents that were not stored."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from sluiceway.model import EntryBlock, PushRecord
from sluiceway.server._config import LimitsSection
from sluiceway.server._distributor import Prepared, Rejections, validate
from sluiceway.store import Rejection
from sluiceway.wire import BulkItem, batches_to_blocks, decode_bulk, items_to_batches

_SHARDS = {"total": 1, "successful": 1, "failed": 0}
_UNREADABLE = "document_parsing_exception"
_REJECTED = "es_rejected_execution_exception"  # Elasticsearch's retryable 429


# action, index, _id as sent, and the error (type, reason) of an item not stored
Status = tuple[str, str, str | None, tuple[str, str] | None]


@dataclass(slots=True)
class BulkPrepared:
    """What a worker hands back: the push record, each item's status, and the bulk answer's
    `items` array already encoded (the server only rebuilds it on the rare path)."""

    prepared: Prepared
    statuses: list[Status]
    items_json: bytes

    @property
    def errors(self) -> bool:
        return any(err is not None for *_, err in self.statuses)


def prepare_bulk(tenant: str, data: bytes, index: str | None, fields: list[str],
                 limits: LimitsSection, now_ns: int) -> BulkPrepared:
    """Decode and validate (runs in an ingest worker)."""
    items = decode_bulk(data, index, fields, now_ns)
    record, rej = _validated(tenant, items, limits, now_ns)
    if rej.total:
        for it in items:
            if it.error is None:
                _, one = _validated(tenant, [it], limits, now_ns)
                if one.total:
                    it.fail("illegal_argument_exception", one.details[0])
        record, _ = _validated(tenant, items, limits, now_ns)
    statuses = [(it.action, it.index, it.doc_id, it.error) for it in items]
    # Documents that never became a line (unreadable, a time outside int64 ns, nested
    # too deep) are counted too, beside the lines the checks rejected.
    unreadable = sum(1 for it in items if it.error and it.error[0] == _UNREADABLE)
    if unreadable:
        rej.counts += Counter({"invalid_document": unreadable})
    return BulkPrepared(Prepared.of(record, rej), statuses, items_json(statuses))


def mark_refused(tenant: str, bp: BulkPrepared, data: bytes, index: str | None,
                 fields: list[str], refused: list[Rejection], limits: LimitsSection,
                 now_ns: int) -> None:
    """The items whose lines the heads refused (too far behind their stream: rare) get
    Loki's text as their error; found by decoding the body again."""
    why: dict[tuple[tuple[tuple[str, str], ...], int, bytes], str] = {}
    for r in refused:
        key = tuple(sorted(r.lines.labels.items()))
        for i in range(len(r)):
            why.setdefault((key, int(r.lines.ts[i]), r.lines.line(i)), r.detail(i))
    items = decode_bulk(data, index, fields, now_ns)
    for k, (it, status) in enumerate(zip(items, bp.statuses, strict=True)):
        if status[3] is not None:
            continue
        record, _ = _validated(tenant, [it], limits, now_ns)  # the line as it was stored
        for b in record.blocks:
            key = tuple(sorted(b.labels.items()))
            detail = next((d for i in range(len(b))
                           if (d := why.get((key, int(b.ts[i]), b.line(i)))) is not None), None)
            if detail is not None:
                bp.statuses[k] = (it.action, it.index, it.doc_id,
                                  ("illegal_argument_exception", detail))
    bp.items_json = items_json(bp.statuses)


def refuse_streams(bp: BulkPrepared, data: bytes, index: str | None, fields: list[str],
                   refused: list[tuple[EntryBlock, str]], now_ns: int) -> None:
    """The items of streams the tenant's stream limit or per-stream rate limit refused
    (block, Loki's text) get Elasticsearch's per-item 429, which shippers retry item by
    item; the other items were stored."""
    keys = {tuple(sorted(b.labels.items())): msg for b, msg in refused}
    items = decode_bulk(data, index, fields, now_ns)
    for k, (it, status) in enumerate(zip(items, bp.statuses, strict=True)):
        msg = keys.get(tuple(sorted(it.labels.items())))
        if status[3] is None and msg is not None:
            bp.statuses[k] = (it.action, it.index, it.doc_id, (_REJECTED, msg))
    bp.items_json = items_json(bp.statuses)


def items_json(statuses: list[Status]) -> bytes:
    """Elasticsearch's per-item answers. Documents without an `_id` get one made of a
    per-request prefix and their position (unique, and cheap to make)."""
    prefix = uuid.uuid4().hex[:14]
    out: list[dict[str, Any]] = []
    for seq, (action, index, doc_id, error) in enumerate(statuses):
        doc_id = doc_id or f"{prefix}{seq:06x}"
        if error is None:
            out.append({action: {
                "_index": index, "_id": doc_id, "_version": 1, "result": "created",
                "_shards": _SHARDS, "_seq_no": seq, "_primary_term": 1, "status": 201}})
        else:
            out.append({action: {"_index": index, "_id": doc_id,
                                 "status": 429 if error[0] == _REJECTED else 400,
                                 "error": {"type": error[0], "reason": error[1]}}})
    return orjson.dumps(out)


def _validated(tenant: str, items: list[BulkItem], limits: LimitsSection,
               now_ns: int) -> tuple[PushRecord, Rejections]:
    return validate(tenant, batches_to_blocks(items_to_batches(items)), limits, now_ns)
