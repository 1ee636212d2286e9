"""Validate decoded pushes against the tenant limits and turn them into store blocks.

A bad label set rejects the whole body (nothing written); per-line failures (too long, too
old, too new, too far behind its stream) reject only those lines, as Loki does.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from sluiceway.model import LABEL_NAME_RE, EntryBlock, Metadata, format_labels
from sluiceway.server._config import LimitsSection
from sluiceway.store import Store, decode_record, encode_record
from sluiceway.wire import decode_push_blocks

_MAX_DETAILS = 10


class PushError(ValueError):
    """The whole push is invalid: HTTP 400, nothing stored."""


@dataclass(slots=True)
class Validated:
    blocks: list[EntryBlock] = field(default_factory=list)
    lines: int = 0
    bytes: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    def message(self) -> str:
        total = self.lines + self.total_rejected
        return "\n".join([*self.details, f"total ignored: {self.total_rejected} out of {total}"])


def _rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def validate(blocks: list[EntryBlock], limits: LimitsSection,
             now_ns: int | None = None) -> Validated:
    """Label and per-line checks that need no store state (safe in a worker process), on
    one block per label set as `decode_push_blocks` returns them."""
    now_ns = now_ns if now_ns is not None else time.time_ns()
    for b in blocks:
        check_labels(b.labels, limits)
    out = Validated()
    for b in blocks:
        if len(b):
            _validate_block(b, limits, now_ns, out)
    return out


def _validate_block(b: EntryBlock, limits: LimitsSection, now_ns: int, out: Validated) -> None:
    text = format_labels(b.labels)
    ts = b.ts
    lengths = np.diff(b.offsets)
    ok = np.ones(len(b), dtype=bool)

    def reject(mask: np.ndarray, reason: str, detail: str) -> None:
        _reject(out, ok, mask, reason, detail)

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
                   f"entry for stream '{text}' has timestamp too old: {_rfc3339(int(ts[i]))}, "
                   f"oldest acceptable timestamp is: {_rfc3339(oldest)}")
    if b.metadata is not None:
        _check_metadata(b.metadata, text, limits, ok, out)
    newest = now_ns + int(limits.creation_grace_period * 1e9)
    future = ts > newest
    if future.any():
        i = int(np.flatnonzero(future)[0])
        reject(future, "too_far_in_future",
               f"entry for stream '{text}' has timestamp too new: {_rfc3339(int(ts[i]))}")
    _append_block(b, ok, out)


def _truncated(b: EntryBlock, size: int) -> EntryBlock:
    return EntryBlock.from_lines(b.labels, b.ts, [line[:size] for line in b.lines()],
                                 b.metadata)


def _check_metadata(metadata: list[Metadata | None], text: str, limits: LimitsSection,
                    ok: np.ndarray, out: Validated) -> None:
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


def _reject(out: Validated, ok: np.ndarray, mask: np.ndarray, reason: str, detail: str) -> None:
    hit = mask & ok
    n = int(hit.sum())
    if n:
        out.rejected[reason] += n
        ok[hit] = False
        if len(out.details) < _MAX_DETAILS:
            out.details.append(detail)


def reject_too_far_behind(tenant: str, out: Validated, limits: LimitsSection,
                          store: Store) -> bool:
    """Drop lines older than their stream's newest entry minus the unordered window, as
    Loki's ingester does; True when anything was dropped."""
    changed = False
    for k, b in enumerate(out.blocks):
        max_ts = store.stream_max_ts(tenant, b.labels)
        if max_ts is None:
            continue
        floor = max_ts - int(limits.unordered_window * 1e9)
        behind = b.ts < floor
        if not behind.any():
            continue
        i = int(np.flatnonzero(behind)[0])
        ok = np.ones(len(b), dtype=bool)
        _reject(out, ok, behind, "out_of_order",
                f"entry with timestamp {_rfc3339(int(b.ts[i]))} ignored, reason: 'entry too far "
                f"behind, oldest acceptable timestamp is: {_rfc3339(floor)}' for stream: "
                f"{format_labels(b.labels)}")
        out.lines -= int(behind.sum())
        out.bytes -= int(np.diff(b.offsets)[behind].sum())
        out.blocks[k] = b.take(ok)
        changed = True
    out.blocks = [b for b in out.blocks if len(b)]
    return changed


def _append_block(b: EntryBlock, ok: np.ndarray, out: Validated) -> None:
    if not ok.all():
        b = b.take(ok)
    if not len(b):
        return
    if b.metadata is not None and not any(b.metadata):
        b = EntryBlock(b.labels, b.ts, b.blob, b.offsets)
    out.blocks.append(b)
    out.lines += len(b)
    out.bytes += b.nbytes


def wal_record(tenant: str, blocks: list[EntryBlock]) -> tuple[bytes, int]:
    """The WAL payload of `blocks` and its CRC32."""
    payload = encode_record(tenant, blocks)
    return payload, zlib.crc32(payload)


@dataclass(slots=True)
class Prepared:
    """What a worker hands back: the WAL record and the counts, no Python objects per line."""

    payload: bytes
    crc: int  # of payload, for the WAL frame
    lines: int
    bytes: int
    rejected: Counter[str]
    details: list[str]

    @staticmethod
    def of(tenant: str, v: Validated) -> Prepared:
        payload, crc = wal_record(tenant, v.blocks)
        return Prepared(payload, crc, v.lines, v.bytes, v.rejected, v.details)


# The signature of every worker-side decoder of a Loki-style route (push, OTLP):
# (tenant, body, Content-Type, Content-Encoding, max body bytes, limits, now ns).
Decoder = Callable[[str, bytes, str | None, str | None, int, LimitsSection, int], Prepared]


def prepare_push(tenant: str, body: bytes, content_type: str | None,
                 content_encoding: str | None, max_body: int, limits: LimitsSection,
                 now_ns: int) -> Prepared:
    """Decode, validate and encode a push (runs in an ingest worker process)."""
    blocks = decode_push_blocks(body, content_type, content_encoding,
                                max_decompressed_bytes=max_body)
    return Prepared.of(tenant, validate(blocks, limits, now_ns))


def finish_push(tenant: str, p: Prepared, limits: LimitsSection,
                store: Store) -> tuple[Validated, bytes, int]:
    """Back in the server process: the checks that need the store's state. Returns the
    WAL record to write and its CRC32."""
    _, blocks = decode_record(p.payload)
    v = Validated(blocks, p.lines, p.bytes, p.rejected, p.details)
    if reject_too_far_behind(tenant, v, limits, store):
        return v, *wal_record(tenant, v.blocks)
    return v, p.payload, p.crc
