"""OTLP/HTTP logs bodies (`POST /otlp/v1/logs`): binary protobuf or the OTLP JSON encoding
of an `ExportLogsServiceRequest`, after the Content-Encoding (gzip, deflate, zstd) is
undone, as StreamBatches in Loki's model (`_otlp_map`)."""

from __future__ import annotations

import base64
import io
from typing import Any

import orjson
import zstandard
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from sluiceway.model import StreamBatch, quote
from sluiceway.wire._compress import decode_content_encoding
from sluiceway.wire._errors import BodyTooLarge, WireError
from sluiceway.wire._otlp_map import request_to_batches

_ID_FIELDS = ("traceId", "spanId", "trace_id", "span_id")


def decode_otlp(body: bytes, content_type: str | None, content_encoding: str | None,
                max_decompressed: int, now_ns: int) -> list[StreamBatch]:
    """Raises WireError (HTTP 400) for what cannot be decoded, BodyTooLarge (413) when the
    decompressed body exceeds `max_decompressed`."""
    data = decompress(body, content_encoding, max_decompressed)
    return request_to_batches(parse_request(data, content_type), now_ns)


def partial_success(rejected: int, message: str,
                    content_type: str | None) -> tuple[bytes, str]:
    """The body and media type of OTLP's answer to a request of which `rejected` log
    records were not stored: an `ExportLogsServiceResponse` with `partial_success`, in the
    request's encoding (exporters log it; they would drop a 4xx batch, good records
    included, and never learn which were kept)."""
    answer = ExportLogsServiceResponse()
    answer.partial_success.rejected_log_records = rejected
    answer.partial_success.error_message = message
    if (content_type or "").split(";", 1)[0].strip().lower() == "application/json":
        return json_format.MessageToJson(answer, indent=None).encode(), "application/json"
    return answer.SerializeToString(), "application/x-protobuf"


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    if (encoding or "").strip().lower() == "zstd":
        return _unzstd(body, limit)
    return decode_content_encoding(body, encoding, limit)


def _unzstd(body: bytes, limit: int) -> bytes:
    # A stream reader, so a zstd bomb stops at `limit + 1` bytes; all frames are read,
    # as concatenated frames are one valid zstd stream.
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body),
                                                         read_across_frames=True)
    try:
        out = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise WireError(f"error parsing OTLP request: zstd: {exc}") from None
    if len(out) > limit:
        raise BodyTooLarge(None, limit)
    return out


def parse_request(data: bytes, content_type: str | None) -> ExportLogsServiceRequest:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    req = ExportLogsServiceRequest()
    if media == "application/x-protobuf":
        try:
            req.ParseFromString(data)
        except (DecodeError, ValueError) as exc:
            raise WireError(f"error parsing OTLP protobuf request: {exc}") from None
    elif media == "application/json":
        try:
            json_format.ParseDict(_hex_ids_as_base64(orjson.loads(data)), req,
                                  ignore_unknown_fields=True)
        except (orjson.JSONDecodeError, json_format.ParseError, ValueError,
                TypeError, AttributeError) as exc:
            raise WireError(f"error parsing OTLP JSON request: {exc}") from None
    else:
        raise WireError(f"content type: {quote(content_type or '')} is not supported")
    return req


def _hex_ids_as_base64(doc: Any) -> Any:
    """OTLP JSON writes trace and span ids as hex, where protobuf's JSON mapping expects
    base64 for bytes: rewrite them before parsing."""
    if not isinstance(doc, dict):
        raise WireError("error parsing OTLP JSON request: the body is not a JSON object")
    for rl in _list(doc, "resourceLogs", "resource_logs"):
        for sl in _list(rl, "scopeLogs", "scope_logs"):
            for rec in _list(sl, "logRecords", "log_records"):
                if isinstance(rec, dict):
                    for key in _ID_FIELDS:
                        if isinstance(rec.get(key), str):
                            rec[key] = _hex_to_base64(rec[key], key)
    return doc


def _list(obj: Any, *keys: str) -> list[Any]:
    if not isinstance(obj, dict):
        return []
    for key in keys:
        if isinstance(obj.get(key), list):
            return obj[key]  # type: ignore[no-any-return]
    return []


def _hex_to_base64(text: str, key: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(text)).decode("ascii")
    except ValueError:
        raise WireError(f"error parsing OTLP JSON request: {key} {quote(text)} is not "
                        "hex") from None
