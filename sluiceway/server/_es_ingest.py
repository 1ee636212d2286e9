"""Elasticsearch bulk documents through the ingest checks: decoding and the limit checks
in an ingest worker, the out-of-order check (it needs the store) in the server. Items are
marked one by one only when a check rejected something, so the bulk answer can name
exactly the documents that were not stored."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from sluiceway.model import EntryBlock
from sluiceway.server._config import LimitsSection
from sluiceway.server._distributor import (
    Prepared,
    Validated,
    finish_push,
    reject_too_far_behind,
    validate,
    wal_record,
)
from sluiceway.store import Store
from sluiceway.wire import BulkItem, batches_to_blocks, decode_bulk, items_to_batches

_SHARDS = {"total": 1, "successful": 1, "failed": 0}
_UNREADABLE = "document_parsing_exception"
_REJECTED = "es_rejected_execution_exception"  # Elasticsearch's retryable 429


# action, index, _id as sent, and the error (type, reason) of an item not stored
Status = tuple[str, str, str | None, tuple[str, str] | None]


@dataclass(slots=True)
class BulkPrepared:
    """What a worker hands back: the WAL record, each item's status, and the bulk answer's
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
    v = _validated(items, limits, now_ns)
    rejected, details = v.rejected, v.details
    if v.total_rejected:
        for it in items:
            if it.error is None:
                one = _validated([it], limits, now_ns)
                if one.total_rejected:
                    it.fail("illegal_argument_exception", one.details[0])
        v = _validated(items, limits, now_ns)
    statuses = [(it.action, it.index, it.doc_id, it.error) for it in items]
    # Documents that never became a line (unreadable, a time outside int64 ns, nested
    # too deep) are counted too, beside the lines the checks rejected.
    unreadable = sum(1 for it in items if it.error and it.error[0] == _UNREADABLE)
    if unreadable:
        rejected = rejected + Counter({"invalid_document": unreadable})
    first_checks = Validated(v.blocks, v.lines, v.bytes, rejected, details)
    return BulkPrepared(Prepared.of(tenant, first_checks), statuses, items_json(statuses))


def finish_bulk(tenant: str, bp: BulkPrepared, data: bytes, index: str | None,
                fields: list[str], limits: LimitsSection, store: Store,
                now_ns: int) -> tuple[Validated, bytes, int]:
    """The server's part; when lines fall behind their stream's out-of-order window
    (rare), the body is decoded again to find their items, and `bp` is updated."""
    p = bp.prepared
    v, payload, crc = finish_push(tenant, p, limits, store)
    if v.lines == p.lines:
        return v, payload, crc
    items = decode_bulk(data, index, fields, now_ns)
    for k, (it, status) in enumerate(zip(items, bp.statuses, strict=True)):
        it.error = status[3]
        if it.error is None:
            one = Validated(_validated([it], limits, now_ns).blocks)
            if reject_too_far_behind(tenant, one, limits, store):
                it.fail("illegal_argument_exception", one.details[0])
                bp.statuses[k] = (it.action, it.index, it.doc_id, it.error)
    bp.items_json = items_json(bp.statuses)
    v = _validated(items, limits, now_ns)
    return (Validated(v.blocks, v.lines, v.bytes, Counter(p.rejected) + _behind(items),
                      p.details), *wal_record(tenant, v.blocks))


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


def _behind(items: list[BulkItem]) -> Counter[str]:
    return Counter("out_of_order" for it in items
                   if it.error is not None and "too far behind" in it.error[1])


def _validated(items: list[BulkItem], limits: LimitsSection, now_ns: int) -> Validated:
    return validate(batches_to_blocks(items_to_batches(items)), limits, now_ns)
