"""The ingest routes under near-valid bodies: Loki push (JSON and protobuf), Elasticsearch
`_bulk`, OTLP (protobuf and JSON). No 5xx, no exception, bounded answers."""

from __future__ import annotations

import gzip
import json
from typing import Any

import cramjam
import orjson
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from sluiceway.model import StreamBatch
from sluiceway.wire import encode_push_protobuf
from tests.fuzz._support import (
    BYTE_EDITS,
    INT_EDGES,
    NOW,
    NS_TIMES,
    ODD_TEXT,
    PLAUSIBLE_NS,
    SAFE_TEXT,
    TENANTS,
    check,
    fuzz,
    mutate_bytes,
    one_in,
    weighted,
)
from tests.inproc import InProcessServer

LABEL_NAMES = weighted(st.sampled_from(["app", "env", "job", "le"]) |
                       st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
                       st.sampled_from(["__name__", "a.b", "1x", "", "é", "x" * 1100]), 4)
LABEL_VALUES = weighted(st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True), ODD_TEXT)


def _headers(ctype: str | None, enc: str | None, tenant: str | None) -> dict[str, bytes]:
    h: dict[str, bytes] = {}
    if ctype is not None:
        h["Content-Type"] = ctype.encode()
    if enc is not None:
        h["Content-Encoding"] = enc.encode()
    if tenant is not None:
        h["X-Scope-OrgID"] = tenant.encode()  # bytes: any octets, as a client may send
    return h


def _encode(body: bytes, enc: str | None) -> bytes:
    if enc == "gzip":
        return gzip.compress(body)
    if enc == "snappy":
        return bytes(cramjam.snappy.compress_raw(body))
    return body


# --- Loki push, JSON ------------------------------------------------------------------

JSON_TS = weighted(PLAUSIBLE_NS.map(str), NS_TIMES.map(str) | st.sampled_from(
    ["", "x", "1.5", "-1", "1e9", "00", " 1"]) | st.sampled_from(INT_EDGES) |
    st.floats(allow_nan=False, allow_infinity=False), 3)
METADATA = st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=3) | st.sampled_from(
    [None, [], "x", {"k": 1}, {"": ""}])


@st.composite
def json_push(draw: st.DrawFn) -> bytes:
    streams = []
    for _ in range(draw(st.integers(0, 3))):
        labels: Any = draw(weighted(st.dictionaries(LABEL_NAMES, LABEL_VALUES, min_size=1,
                                                    max_size=4),
                                    st.sampled_from([{}, None, "a", {"a": 1}])))
        values = []
        for _ in range(draw(st.integers(0, 4))):
            v: list[Any] = [draw(JSON_TS), draw(ODD_TEXT | st.sampled_from([1, None]))]
            if draw(st.booleans()):
                v.append(draw(METADATA))
            values.append(v)
        streams.append({"stream": labels, "values": values})
    doc = _json({"streams": streams})
    return mutate_bytes(doc, draw(BYTE_EDITS)) if one_in(4, draw) else doc


def _json(value: Any) -> bytes:
    """JSON as Python writes it: any integer, lone surrogates escaped (`\\ud800`), which
    orjson refuses to write but clients send."""
    return json.dumps(value).encode()


@fuzz(150)
@given(json_push(), st.sampled_from([None, "gzip", "deflate", "snappy", "br", "gzip, gzip"]),
       st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"]),
       TENANTS)
def test_loki_push_json(fuzz_server: InProcessServer, body: bytes, enc: str | None, ctype: str,
                        tenant: str | None) -> None:
    data = _encode(body, enc) if enc in ("gzip", "snappy") else body
    check(fuzz_server.post("/loki/api/v1/push", content=data,
                           headers=_headers(ctype, enc, tenant)))


# --- Loki push, protobuf --------------------------------------------------------------

PB_TS = weighted(PLAUSIBLE_NS, NS_TIMES.filter(lambda t: -(2**63) <= t < 2**63), 3)


def _no_surrogates(text: str) -> bool:
    return not any("\ud800" <= c <= "\udfff" for c in text)


@st.composite
def proto_push(draw: st.DrawFn) -> bytes:
    batches = []
    for _ in range(draw(st.integers(0, 3))):
        labels = draw(st.dictionaries(LABEL_NAMES, LABEL_VALUES.filter(_no_surrogates),
                                      max_size=4))
        n = draw(st.integers(0, 4))
        md = None
        if draw(st.booleans()):
            md = [draw(st.none() | st.dictionaries(SAFE_TEXT, SAFE_TEXT, max_size=2))
                  for _ in range(n)]
        batches.append(StreamBatch(labels, [draw(PB_TS) for _ in range(n)],
                                   [draw(SAFE_TEXT) for _ in range(n)], md))
    raw = bytes(cramjam.snappy.decompress_raw(encode_push_protobuf(batches)))
    if one_in(3, draw):
        raw = mutate_bytes(raw, draw(BYTE_EDITS))
    return raw


@fuzz(150)
@given(proto_push(), st.sampled_from([None, "snappy", "gzip"]),
       st.sampled_from(["application/x-protobuf", None]), TENANTS)
def test_loki_push_protobuf(fuzz_server: InProcessServer, raw: bytes, enc: str | None,
                            ctype: str | None, tenant: str | None) -> None:
    body = bytes(cramjam.snappy.compress_raw(raw))
    if enc == "gzip":
        body = gzip.compress(body)
    check(fuzz_server.post("/loki/api/v1/push", content=body,
                           headers=_headers(ctype, enc, tenant)))


@fuzz(80)
@given(st.binary(max_size=300), st.sampled_from(["application/x-protobuf", "application/json",
                                                  None]))
def test_loki_push_arbitrary_bytes(fuzz_server: InProcessServer, body: bytes,
                                   ctype: str | None) -> None:
    check(fuzz_server.post("/loki/api/v1/push", content=body, headers=_headers(ctype, None,
                                                                                None)))


# --- Elasticsearch _bulk --------------------------------------------------------------

ES_STAMPS = st.sampled_from([
    None, "2024-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2300-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z", "2024-13-01", "2024-01-01", "now", "", "1e308", 1e308,
    -1e308, 1.5, 0, -1, 2**63, 2**64 - 1, -(2**63), "99999999999999999999", True, [], {},
]) | st.integers(NOW // 10**6 - 3600_000, NOW // 10**6 + 1000) | \
    st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False) |
    ODD_TEXT, lambda inner: st.lists(inner, max_size=3) |
    st.dictionaries(SAFE_TEXT, inner, max_size=3), max_leaves=10)
ACTIONS = weighted(st.sampled_from(["index", "create"]),
                   st.sampled_from(["delete", "update", "upsert", ""]), 5)
INDEX_NAMES = weighted(st.sampled_from(["logs", "app"]),
                       st.sampled_from(["", "a b", "é", "x" * 300, "..", 7]), 4)


def _deep(depth: int) -> bytes:
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def bulk_body(draw: st.DrawFn) -> bytes:
    lines: list[bytes] = []
    for _ in range(draw(st.integers(1, 5))):
        meta: dict[str, Any] = draw(st.fixed_dictionaries({}, optional={
            "_index": INDEX_NAMES, "_id": st.text(max_size=5) | st.integers()}))
        if not one_in(5, draw):
            meta.setdefault("_index", "logs")
        lines.append(_json({draw(ACTIONS): meta}))
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(_deep(draw(st.sampled_from([200, 254, 255, 300, 1023, 1100]))))
        elif kind == 1:
            lines.append(draw(st.sampled_from([b"", b"{", b"[]", b"1", b'"x"', b"null"])))
        else:
            doc: dict[str, Any] = draw(st.dictionaries(SAFE_TEXT, JSON_VALUE, max_size=4))
            stamp = draw(ES_STAMPS)
            if stamp is not None:
                doc["@timestamp"] = stamp
            lines.append(_json(doc))
    body = b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n"]))
    return mutate_bytes(body, draw(BYTE_EDITS)) if one_in(7, draw) else body


@fuzz(150)
@given(bulk_body(), st.sampled_from(["/_bulk", "/logs/_bulk", "/%2e%2e/_bulk", "/x%00/_bulk"]),
       st.sampled_from(["", "host.name", "a,b.c,,", "@timestamp", "_index"]),
       st.sampled_from([None, "gzip"]), TENANTS)
def test_es_bulk(fuzz_server: InProcessServer, body: bytes, path: str, fields: str,
                 enc: str | None, tenant: str | None) -> None:
    r = fuzz_server.post(path, content=_encode(body, enc),
                         params={"_stream_fields": fields} if fields else None,
                         headers=_headers("application/x-ndjson", enc, tenant))
    check(r)
    if r.status_code == 200:
        items = r.json()["items"]
        assert all(next(iter(it.values()))["status"] in (201, 400) for it in items)


# --- OTLP -----------------------------------------------------------------------------

OTLP_TIMES = st.sampled_from([0, 1, NOW, NOW - 10**9, 2**63 - 1, 2**63, 2**64 - 1]) | \
    st.integers(0, 2**64 - 1)


@st.composite
def any_value(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    kind = draw(st.integers(0, 7 if depth < 3 else 4))
    if kind == 0:
        return {"stringValue": draw(SAFE_TEXT)}
    if kind == 1:
        return {"intValue": str(draw(st.integers(-(2**63), 2**63 - 1)))}
    if kind == 2:
        return {"doubleValue": draw(st.floats(allow_nan=False, allow_infinity=False))}
    if kind == 3:
        return {"boolValue": draw(st.booleans())}
    if kind == 4:
        return {}
    if kind == 5:
        return {"bytesValue": "AAEC"}
    if kind == 6:
        return {"arrayValue": {"values": [draw(any_value(depth + 1)) for _ in range(2)]}}
    return {"kvlistValue": {"values": [{"key": draw(SAFE_TEXT), "value": draw(any_value(
        depth + 1))} for _ in range(2)]}}


ATTR_KEYS = st.sampled_from(["service.name", "k8s.pod.name", "host.name", "a.b.c", "", "1x",
                             "_x", "__y", "é"]) | SAFE_TEXT


@st.composite
def otlp_doc(draw: st.DrawFn) -> dict[str, Any]:
    def attrs() -> list[dict[str, Any]]:
        return [{"key": draw(ATTR_KEYS), "value": draw(any_value())}
                for _ in range(draw(st.integers(0, 3)))]

    def record() -> dict[str, Any]:
        rec: dict[str, Any] = {"timeUnixNano": str(draw(OTLP_TIMES)),
                               "observedTimeUnixNano": str(draw(OTLP_TIMES)),
                               "body": draw(any_value()), "attributes": attrs(),
                               "severityNumber": draw(st.integers(0, 24)),
                               "severityText": draw(SAFE_TEXT)}
        if draw(st.booleans()):
            rec["traceId"] = draw(st.sampled_from(["00" * 16, "ab" * 16, "ab" * 8, "zz", ""]))
            rec["spanId"] = draw(st.sampled_from(["00" * 8, "cd" * 8, "cd" * 4, "x"]))
        return rec

    return {"resourceLogs": [{
        "resource": {"attributes": attrs()},
        "scopeLogs": [{"scope": {"name": draw(SAFE_TEXT), "attributes": attrs()},
                       "logRecords": [record() for _ in range(draw(st.integers(0, 3)))]}
                      for _ in range(draw(st.integers(0, 2)))]}
        for _ in range(draw(st.integers(0, 2)))]}


@fuzz(120)
@given(otlp_doc(), BYTE_EDITS, st.booleans(), TENANTS)
def test_otlp_json(fuzz_server: InProcessServer, doc: dict[str, Any],
                   edits: list[tuple[int, int, int]], damage: bool, tenant: str | None) -> None:
    body = orjson.dumps(doc)
    if damage:
        body = mutate_bytes(body, edits)
    r = fuzz_server.post("/otlp/v1/logs", content=body,
                         headers=_headers("application/json", None, tenant))
    check(r)


@fuzz(120)
@given(otlp_doc(), BYTE_EDITS, st.booleans(), st.sampled_from([None, "gzip"]))
def test_otlp_protobuf(fuzz_server: InProcessServer, doc: dict[str, Any],
                       edits: list[tuple[int, int, int]], damage: bool,
                       enc: str | None) -> None:
    req = ExportLogsServiceRequest()
    try:
        json_format.ParseDict(_ids_as_base64(doc), req)
    except json_format.ParseError:
        return  # the JSON test covers what protobuf cannot even hold
    body = req.SerializeToString()
    if damage:
        body = mutate_bytes(body, edits)
    r = fuzz_server.post("/otlp/v1/logs", content=_encode(body, enc),
                         headers=_headers("application/x-protobuf", enc, None))
    check(r)


def _ids_as_base64(doc: dict[str, Any]) -> dict[str, Any]:
    import base64

    out = orjson.loads(orjson.dumps(doc))
    for rl in out["resourceLogs"]:
        for sl in rl["scopeLogs"]:
            for rec in sl["logRecords"]:
                for key in ("traceId", "spanId"):
                    if key in rec:
                        try:
                            rec[key] = base64.b64encode(bytes.fromhex(rec[key])).decode()
                        except ValueError:
                            rec[key] = "AA=="
    return out
