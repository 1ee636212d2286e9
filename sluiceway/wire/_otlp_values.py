"""OTLP attribute values and keys as Loki renders them: a value's text is what the
OpenTelemetry collector's `Value.AsString` gives (Loki's line and metadata values come from
it), and a key becomes a label name by Prometheus' OTLP normalization (dots and other
characters to `_`, a leading digit or single `_` prefixed with `key`)."""

from __future__ import annotations

import base64
import math
import re
from decimal import Decimal
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_EXPONENT = re.compile(r"e([+-])0*(\d)")
# Go's JSON encoder escapes these inside strings (HTML safety); orjson writes them raw, and
# since they can only occur inside strings, replacing them in the output is exact.
_GO_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"),
               ("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))


def label_name(key: str) -> str:
    """A valid label name for an attribute key (`service.name` → `service_name`)."""
    if not key:
        return key
    name = _INVALID.sub("_", key)
    if name[0].isdigit():
        return "key_" + name
    if name.startswith("_") and not name.startswith("__"):
        return "key" + name
    return name


def as_string(v: AnyValue) -> str:
    """The text of any value: strings as they are, numbers and booleans as Go prints them,
    bytes as base64, maps and arrays as JSON (keys sorted), an empty value as ""."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return go_float(v.double_value)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    if kind in ("kvlist_value", "array_value"):
        return go_json(raw(v)).decode("utf-8")
    return ""


def raw(v: AnyValue) -> Any:
    """A value as plain Python data, for JSON (bytes stay bytes: JSON shows them base64)."""
    kind = v.WhichOneof("value")
    if kind == "kvlist_value":
        return {kv.key: raw(kv.value) for kv in v.kvlist_value.values}
    if kind == "array_value":
        return [raw(x) for x in v.array_value.values]
    if kind is None:
        return None
    return getattr(v, kind)


def go_float(f: float) -> str:
    """Shortest round-trip digits, in Go's (and JavaScript's) number notation: plain
    decimals between 1e-6 and 1e21, exponent form outside, `1` rather than `1.0`."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        return _EXPONENT.sub(r"e\1\2", repr(f))
    if f == int(f):
        return str(int(f)) if f or math.copysign(1.0, f) > 0 else "-0"
    return format(Decimal(repr(f)), "f")


def go_json(value: Any) -> bytes:
    """JSON as Go's `encoding/json` writes it for a map or array value: keys sorted,
    numbers in Go's notation, bytes base64, HTML characters escaped."""
    out = orjson.dumps(_go_ready(value), option=orjson.OPT_SORT_KEYS)
    for old, new in _GO_ESCAPES:
        out = out.replace(old, new)
    return out


def _go_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _go_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_ready(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float):
        # Fragment: orjson writes it verbatim, so the number keeps Go's notation.
        return orjson.Fragment(go_float(value).encode("ascii"))
    return value
