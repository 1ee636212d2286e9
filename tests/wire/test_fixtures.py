"""Every captured client request decodes to exactly what Loki stored for it."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from sluiceway.model import StreamBatch, format_labels, parse_labels
from sluiceway.wire import decode_push
from sluiceway.wire._compress import decode_content_encoding, snappy_decode
from tests.wire._fixtures import PushFixture, all_fixtures

FIXTURES = all_fixtures()


def merge_like_loki(batches: list[StreamBatch]) -> list[dict[str, Any]]:
    """Merge same-label stream objects and stable-sort by ts, as the fixtures README says
    Loki's forward query returns them; streams ordered by canonical label string."""
    merged: dict[str, list[tuple[int, str, dict[str, str]]]] = {}
    labels_of: dict[str, dict[str, str]] = {}
    for b in batches:
        key = format_labels(b.labels)
        labels_of[key] = b.labels
        md = b.metadata or [None] * len(b)
        merged.setdefault(key, []).extend(
            (t, line, m or {}) for t, line, m in zip(b.ts, b.lines, md, strict=True))
    return [
        {"labelsMap": labels_of[k],
         "entries": [{"ts": str(t), "line": line, "structuredMetadata": m}
                     for t, line, m in sorted(merged[k], key=lambda e: e[0])]}
        for k in sorted(merged)
    ]


def expected_streams(fx: PushFixture) -> list[dict[str, Any]]:
    streams = sorted(fx.expected["streams"], key=lambda s: format_labels(s["labelsMap"]))
    return [{"labelsMap": s["labelsMap"], "entries": s["entries"]} for s in streams]


@pytest.mark.parametrize("fx", FIXTURES, ids=[f.name for f in FIXTURES])
def test_fixture_decodes_to_what_loki_stored(fx: PushFixture) -> None:
    batches = decode_push(fx.body, fx.content_type, fx.content_encoding)
    assert len(batches) == fx.expected["bodyStreamObjects"]
    assert merge_like_loki(batches) == expected_streams(fx)


PROTO = [f for f in FIXTURES if not f.is_json]
JSON = [f for f in FIXTURES if f.is_json]


@pytest.mark.parametrize("fx", PROTO, ids=[f.name for f in PROTO])
def test_protobuf_labels_string_as_sent(fx: PushFixture) -> None:
    # For protobuf the expected `labels` is the string as the client sent it.
    batches = decode_push(fx.body, fx.content_type, fx.content_encoding)
    sent = {s["labels"] for s in fx.expected["streams"]}
    assert {format_labels(b.labels) for b in batches} == {
        format_labels(parse_labels(text)) for text in sent}


@pytest.mark.parametrize("fx", FIXTURES, ids=[f.name for f in FIXTURES])
def test_decompressed_size_matches(fx: PushFixture) -> None:
    data = decode_content_encoding(fx.body, fx.content_encoding, 1 << 20)
    if not fx.is_json:
        data = bytes(snappy_decode(data, 1 << 20))
    assert len(data) == fx.expected["decodedBytes"]


def test_fixtures_cover_every_format() -> None:
    kinds = {(f.is_json, f.content_encoding) for f in FIXTURES}
    assert {(True, "gzip"), (True, None), (False, None)} <= kinds


@pytest.mark.parametrize("fx", JSON, ids=[f.name for f in JSON])
def test_json_body_order_is_kept_not_merged(fx: PushFixture) -> None:
    raw = gzip.decompress(fx.body) if fx.content_encoding == "gzip" else fx.body
    doc = json.loads(raw)
    want = [(s["stream"], [(int(v[0]), v[1], v[2] if len(v) > 2 else None) for v in s["values"]])
            for s in doc["streams"]]
    got = [(b.labels, list(zip(b.ts, b.lines, b.metadata or [None] * len(b), strict=True)))
           for b in decode_push(fx.body, fx.content_type, fx.content_encoding)]
    assert got == want


def test_entries_without_metadata_have_none() -> None:
    fx = next(f for f in FIXTURES if f.name == "curl-gzip-1")
    batches = decode_push(fx.body, fx.content_type, fx.content_encoding)
    by_level = {b.labels["level"]: b for b in batches}
    assert by_level["info"].metadata is not None
    assert by_level["info"].metadata[0] is None and by_level["info"].metadata[2] is None
    plain = next(f for f in FIXTURES if f.name == "python-logging-loki-1")
    assert decode_push(plain.body, plain.content_type, None)[0].metadata is None
