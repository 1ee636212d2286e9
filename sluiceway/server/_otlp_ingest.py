"""OTLP logs through the ingest checks: the worker's part (decompress, decode, map to
Loki's model, validate, encode the push record), handing back the same `Prepared` as a
Loki push, so the server stores it like any other."""

from __future__ import annotations

from sluiceway.server._config import LimitsSection
from sluiceway.server._distributor import Prepared, validate
from sluiceway.wire import batches_to_blocks, decode_otlp


def prepare_otlp(tenant: str, body: bytes, content_type: str | None,
                 content_encoding: str | None, max_body: int, limits: LimitsSection,
                 now_ns: int) -> Prepared:
    """Runs in an ingest worker process (everything here pickles)."""
    batches = decode_otlp(body, content_type, content_encoding, max_body, now_ns)
    return Prepared.of(*validate(tenant, batches_to_blocks(batches), limits, now_ns))
