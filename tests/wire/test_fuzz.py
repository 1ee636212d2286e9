"""No input bytes make decode_push raise anything but WireError (or its BodyTooLarge)."""

from __future__ import annotations

import gzip
import json

import cramjam
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluiceway.wire import WireError, decode_push
from sluiceway.wire._compress import snappy_decode
from tests.wire._fixtures import PushFixture, all_fixtures

FIXTURES = all_fixtures()
HEADERS = [("application/json", None), ("application/json", "gzip"),
           ("application/json", "deflate"), ("application/x-protobuf", None),
           (None, "snappy"), ("application/x-protobuf", "gzip"), (None, "br")]
FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def decodes_or_wire_error(body: bytes, ctype: str | None, enc: str | None) -> None:
    try:
        batches = decode_push(body, ctype, enc, max_decompressed_bytes=1 << 20)
    except WireError:
        return
    for b in batches:  # whatever is accepted must be well-formed
        assert len(b.ts) == len(b.lines)
        assert all(type(t) is int and -(2**63) <= t < 2**63 for t in b.ts)
        assert all(type(line) is str for line in b.lines)
        assert all(type(k) is str and type(v) is str for k, v in b.labels.items())
        assert b.metadata is None or len(b.metadata) == len(b.ts)
        # Everything accepted can be stored and served as UTF-8.
        "".join([*b.labels, *b.labels.values(), *b.lines]).encode()
        for md in b.metadata or []:
            "".join([*(md or {}), *(md or {}).values()]).encode()


def plain(fx: PushFixture) -> bytes:
    """The fixture's payload with any Content-Encoding and snappy undone."""
    raw = gzip.decompress(fx.body) if fx.content_encoding == "gzip" else fx.body
    return raw if fx.is_json else bytes(snappy_decode(raw, 1 << 20))


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, byte in edits:
        if not buf:
            break
        p = pos % len(buf)
        if kind == 0:
            buf[p] = byte
        elif kind == 1:
            del buf[p:]
        elif kind == 2:
            buf.insert(p, byte)
        else:
            del buf[p]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)),
                 min_size=1, max_size=6)


@FAST
@given(st.binary(max_size=400), st.sampled_from(HEADERS))
def test_arbitrary_bytes(body: bytes, headers: tuple[str | None, str | None]) -> None:
    decodes_or_wire_error(body, *headers)


@FAST
@given(st.sampled_from(FIXTURES), EDITS)
def test_mutated_fixture_bodies(fx: PushFixture, edits: list[tuple[int, int, int]]) -> None:
    decodes_or_wire_error(mutate(fx.body, edits), fx.content_type, fx.content_encoding)


@FAST
@given(st.sampled_from(FIXTURES), EDITS)
def test_mutated_payloads_reach_the_parsers(fx: PushFixture,
                                            edits: list[tuple[int, int, int]]) -> None:
    # Mutate below the compression so the JSON and protobuf parsers see the damage.
    payload = mutate(plain(fx), edits)
    body = payload if fx.is_json else bytes(cramjam.snappy.compress_raw(payload))
    decodes_or_wire_error(body, fx.content_type, None)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12)


@settings(max_examples=120, deadline=None)
@given(JSON_VALUES, JSON_VALUES)
def test_arbitrary_json_shapes(stream: object, values: object) -> None:
    for doc in ({"streams": [{"stream": stream, "values": values}]},
                {"streams": [{"stream": {"a": "b"}, "values": [values]}]},
                {"streams": [{"stream": {"a": "b"}, "values": [["1", "x", stream]]}]},
                {"streams": stream}):
        decodes_or_wire_error(json.dumps(doc).encode(), "application/json", None)
