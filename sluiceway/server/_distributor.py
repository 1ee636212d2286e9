"""The distributor: validate decoded pushes against the tenant limits and make them a
`PushRecord`. Stateless: it runs in the ingest worker processes and knows nothing of the
store. What depends on a stream's state (exact duplicates, lines too far behind their
stream's newest) is decided by the heads (`sluiceway.store.Heads`), in log order.

A bad label set rejects the whole body (nothing written); per-line failures (too long, too
old, too new) reject only those lines, as Loki does.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sluiceway.model import (
    LABEL_NAME_RE,
    EntryBlock,
    Metadata,
    PushRecord,
    format_labels,
    rfc3339_micros,
)
from sluiceway.server._config import LimitsSection
from sluiceway.wire import decode_push_blocks

_MAX_DETAILS = 10


class PushError(ValueError):
    """The whole push is invalid: HTTP 400, nothing stored."""


@dataclass(slots=True)
class Rejections:
    """Lines not stored, by Loki's discarded-samples reason, with Loki's detail texts (one
    per stream and reason, at most 10)."""

    counts: Counter[str] = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, reason: str, n: int, detail: str) -> None:
        if n:
            self.counts[reason] += n
            if len(self.details) < _MAX_DETAILS:
                self.details.append(detail)

    def message(self, stored: int) -> str:
        """Loki's answer text when some lines of a push were not stored."""
        total = stored + self.total
        return "\n".join([*self.details, f"total ignored: {self.total} out of {total}"])


@dataclass(slots=True)
class _Kept:
    blocks: list[EntryBlock] = field(default_factory=list)
    rejections: Rejections = field(default_factory=Rejections)


def check_labels(labels: dict[str, str], limits: LimitsSection) -> None:
    if not labels:
        raise PushError("error at least one label pair is required per stream")
    text = format_labels(labels)
    if len(labels) > limits.max_label_names_per_series:
        raise PushError(f"entry for stream '{text}' has {len(labels)} label names; limit "
                        f"{limits.max_label_names_per_series}")
    for name, value in labels.items():
        if not LABEL_NAME_RE.fullmatch(name):
            raise PushError(f"error parsing labels '{text}': invalid label name {name!r}")
        if len(name) > limits.max_label_name_length:
            raise PushError(f"label name too long: {name!r} for stream '{text}'")
        if len(value) > limits.max_label_value_length:
            raise PushError(f"label value too long: {value[:64]!r}… for stream '{text}'")


def validate(tenant: str, blocks: list[EntryBlock], limits: LimitsSection,
             now_ns: int | None = None) -> tuple[PushRecord, Rejections]:
    """The record of what passes the label and per-line checks, and what did not; on one
    block per label set as `decode_push_blocks` returns them. Raises PushError when the
    whole push is refused."""
    now_ns = now_ns if now_ns is not None else time.time_ns()
    for b in blocks:
        check_labels(b.labels, limits)
    out = _Kept()
    for b in blocks:
        if len(b):
            _validate_block(b, limits, now_ns, out)
    return PushRecord(tenant, out.blocks), out.rejections


def _validate_block(b: EntryBlock, limits: LimitsSection, now_ns: int, out: _Kept) -> None:
    text = format_labels(b.labels)
    ts = b.ts
    lengths = np.diff(b.offsets)
    ok = np.ones(len(b), dtype=bool)

    def reject(mask: np.ndarray, reason: str, detail: str) -> None:
        _reject(out.rejections, ok, mask, reason, detail)

    if limits.max_line_size:
        too_long = lengths > limits.max_line_size
        if too_long.any() and limits.max_line_size_truncate:
            b = _truncated(b, limits.max_line_size)
        elif too_long.any():
            i = int(np.flatnonzero(too_long)[0])
            reject(too_long, "line_too_long",
                   f"Max entry size '{limits.max_line_size}' bytes exceeded for stream '{text}' "
                   f"while adding an entry with length '{int(lengths[i])}' bytes")
    if limits.reject_old_samples:
        oldest = now_ns - int(limits.reject_old_samples_max_age * 1e9)
        old = ts < oldest
        if old.any():
            i = int(np.flatnonzero(old)[0])
            reject(old, "greater_than_max_sample_age",
                   f"entry for stream '{text}' has timestamp too old: "
                   f"{rfc3339_micros(int(ts[i]))}, oldest acceptable timestamp is: "
                   f"{rfc3339_micros(oldest)}")
    if b.metadata is not None:
        _check_metadata(b.metadata, text, limits, ok, out.rejections)
    newest = now_ns + int(limits.creation_grace_period * 1e9)
    future = ts > newest
    if future.any():
        i = int(np.flatnonzero(future)[0])
        reject(future, "too_far_in_future",
               f"entry for stream '{text}' has timestamp too new: {rfc3339_micros(int(ts[i]))}")
    _append_block(b, ok, out)


def _truncated(b: EntryBlock, size: int) -> EntryBlock:
    return EntryBlock.from_lines(b.labels, b.ts, [line[:size] for line in b.lines()],
                                 b.metadata)


def _check_metadata(metadata: list[Metadata | None], text: str, limits: LimitsSection,
                    ok: np.ndarray, out: Rejections) -> None:
    """Loki's per-line limits on structured metadata (only lines that carry some)."""
    if not limits.allow_structured_metadata:
        carry = np.array([bool(md) for md in metadata], dtype=bool)
        if carry.any():
            _reject(out, ok, carry, "disallowed_structured_metadata",
                    f"stream '{text}' includes structured metadata, but this feature is "
                    "disallowed. Please see `limits_config.allow_structured_metadata` or "
                    "contact your Loki administrator to enable it")
        return
    big = np.zeros(len(metadata), dtype=bool)
    many = np.zeros(len(metadata), dtype=bool)
    for i, md in enumerate(metadata):
        if md:
            many[i] = len(md) > limits.max_structured_metadata_entries_count
            big[i] = sum(len(k) + len(v) for k, v in md.items()) > \
                limits.max_structured_metadata_size
    if big.any():
        _reject(out, ok, big, "structured_metadata_too_large",
                f"stream '{text}' has structured metadata too large: limit "
                f"{limits.max_structured_metadata_size} bytes")
    if many.any():
        _reject(out, ok, many, "structured_metadata_too_many",
                f"stream '{text}' has too many structured metadata labels: limit "
                f"{limits.max_structured_metadata_entries_count}")


def _reject(out: Rejections, ok: np.ndarray, mask: np.ndarray, reason: str, detail: str) -> None:
    hit = mask & ok
    n = int(hit.sum())
    if n:
        ok[hit] = False
        out.add(reason, n, detail)


def _append_block(b: EntryBlock, ok: np.ndarray, out: _Kept) -> None:
    if not ok.all():
        b = b.take(ok)
    if not len(b):
        return
    if b.metadata is not None and not any(b.metadata):
        b = EntryBlock(b.labels, b.ts, b.blob, b.offsets)
    out.blocks.append(b)


@dataclass(slots=True)
class Prepared:
    """What a worker hands back: the encoded record (and its CRC32, made off the server's
    GIL) and what validation refused; no Python object per line."""

    payload: bytes
    crc: int
    rejections: Rejections

    @staticmethod
    def of(record: PushRecord, rejections: Rejections) -> Prepared:
        return Prepared(record.encode(), record.crc32, rejections)

    def record(self) -> PushRecord:
        """The record again, in the server process (its lines stay in `payload`)."""
        return PushRecord.decode(self.payload, self.crc)


# The signature of every worker-side decoder of a Loki-style route (push, OTLP):
# (tenant, body, Content-Type, Content-Encoding, max body bytes, limits, now ns).
Decoder = Callable[[str, bytes, str | None, str | None, int, LimitsSection, int], Prepared]


def prepare_push(tenant: str, body: bytes, content_type: str | None,
                 content_encoding: str | None, max_body: int, limits: LimitsSection,
                 now_ns: int) -> Prepared:
    """Decode, validate and encode a push (runs in an ingest worker process)."""
    blocks = decode_push_blocks(body, content_type, content_encoding,
                                max_decompressed_bytes=max_body)
    return Prepared.of(*validate(tenant, blocks, limits, now_ns))
