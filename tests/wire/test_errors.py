"""Malformed pushes are a WireError (HTTP 400) with a message that says what is wrong;
oversized ones are BodyTooLarge (HTTP 413)."""

from __future__ import annotations

import gzip
import zlib

import cramjam
import orjson
import pytest

from sluiceway.wire import BodyTooLarge, WireError, decode_push
from sluiceway.wire._push_pb2 import EntryAdapter, PushRequest, StreamAdapter
from tests.wire._fixtures import PUSH_DIR, load

JSON = "application/json"
PROTO = "application/x-protobuf"


def push_json(doc: object, encoding: str | None = None) -> bytes:
    body = orjson.dumps(doc)
    return gzip.compress(body) if encoding == "gzip" else body


def one_stream(values: object, stream: object = None) -> dict[str, object]:
    return {"streams": [{"stream": stream or {"job": "x"}, "values": values}]}


def proto_body(labels: str, line: str = "l") -> bytes:
    req = PushRequest(streams=[StreamAdapter(labels=labels, entries=[EntryAdapter(line=line)])])
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


@pytest.mark.parametrize(("doc", "needle"), [
    (one_stream([[1795457200150941184, "numeric ts"]]), "timestamp must be a string"),
    (one_stream([["1795457200.5", "float string"]]), "timestamp must be a string"),
    (one_stream([["+17", "plus sign"]]), "timestamp must be a string"),
    (one_stream([[" 17", "space"]]), "timestamp must be a string"),
    (one_stream([["", "empty"]]), "timestamp must be a string"),
    (one_stream([["1\n2", "newline"]]), "timestamp must be a string"),
    (one_stream([["\u0661", "arabic-indic digit"]]), "timestamp must be a string"),
    (one_stream([["99999999999999999999", "overflow"]]), "out of range"),
    (one_stream([["1", 42]]), "log line must be a string"),
    (one_stream([["1", "a", {"k": 1}]]), "structured metadata 'k' must be a string"),
    (one_stream([["1", "a", {"k": {"nested": "x"}}]]), "must be a string"),
    (one_stream([["1", "a", ["k", "v"]]]), "structured metadata must be an object"),
    (one_stream([["1"]]), "2 or 3 elements"),
    (one_stream([["1", "a"], []]), "2 or 3 elements"),
    (one_stream(["1", "a"]), "entry must be an array"),
    (one_stream({"1": "a"}), "values: must be an array"),
    (one_stream([["1", "a"]], {"bad name!": "v"}), "invalid label name"),
    (one_stream([["1", "a"]], {"job\n": "v"}), "invalid label name"),
    (one_stream([["1", "a"]], {"job": 5}), "must have a string value"),
    ({"streams": [{"values": [["1", "a"]]}]}, "stream: must be an object"),
    ({"streams": {"stream": {}}}, "streams: must be an array"),
    ({"streams": [None]}, "streams[0]: must be an object"),
    ([1, 2], 'must be a JSON object with a "streams" array'),
])
def test_bad_json_push_names_the_problem(doc: object, needle: str) -> None:
    for encoding in (None, "gzip"):
        with pytest.raises(WireError, match="error parsing push request") as err:
            decode_push(push_json(doc, encoding), JSON, encoding)
        assert needle in str(err.value)
        assert not isinstance(err.value, BodyTooLarge)


def test_elements_after_the_third_are_ignored_as_loki_does() -> None:
    doc = one_stream([["1", "a", {"k": "v"}, "extra", 5], ["2", "b"]])
    [batch] = decode_push(push_json(doc), JSON, None)
    assert (batch.ts, batch.lines, batch.metadata) == ([1, 2], ["a", "b"], [{"k": "v"}, None])


def test_error_points_at_the_entry() -> None:
    values = [["1", "ok"], ["2", "ok"], [3, "bad"]]
    with pytest.raises(WireError, match=r"streams\[0\]\.values\[2\]\[0\]"):
        decode_push(push_json(one_stream(values)), JSON, None)


@pytest.mark.parametrize("body", [b"", b"{", b'{"streams": [}', b"\xff\xfe", b"null", b"nan"])
def test_invalid_json(body: bytes) -> None:
    with pytest.raises(WireError, match="error parsing push request"):
        decode_push(body, JSON, None)


def test_unsupported_content_encoding_is_named() -> None:
    with pytest.raises(WireError, match='Content-Encoding "br" not supported'):
        decode_push(b"{}", JSON, "br")
    with pytest.raises(WireError, match='Content-Encoding "zstd" not supported'):
        decode_push(b"", PROTO, "zstd")


def test_bad_gzip_and_deflate() -> None:
    good = gzip.compress(b'{"streams": []}')
    for body in (b"not gzip at all", good[:-6], good[:12], good + b"junk"):
        with pytest.raises(WireError, match="gzip"):
            decode_push(body, JSON, "gzip")
    with pytest.raises(WireError, match="deflate"):
        decode_push(b"\xff\xff\xff\xff", JSON, "deflate")


def test_deflate_raw_and_zlib_wrapped_both_accepted() -> None:
    doc = one_stream([["5", "deflated"]])
    raw = zlib.compressobj(wbits=-15)
    raw_body = raw.compress(orjson.dumps(doc)) + raw.flush()
    for body in (raw_body, zlib.compress(orjson.dumps(doc))):
        [batch] = decode_push(body, JSON, "deflate")
        assert (batch.ts, batch.lines) == ([5], ["deflated"])


def test_multi_member_gzip_is_read_whole() -> None:
    text = orjson.dumps(one_stream([["7", "two members"]]))
    body = gzip.compress(text[:10]) + gzip.compress(text[10:])
    assert decode_push(body, JSON, "gzip")[0].lines == ["two members"]


def test_truncated_and_corrupt_snappy() -> None:
    body = load(PUSH_DIR / "promtail-1.body").body
    for bad in (body[: len(body) // 2], body[:1], b"", b"\xff\xff\xff\xff\xff\xff\x0f"):
        with pytest.raises(WireError, match="error parsing push request"):
            decode_push(bad, PROTO, None)


def test_framed_snappy_is_refused() -> None:
    req = PushRequest(streams=[StreamAdapter(labels='{a="b"}')]).SerializeToString()
    framed = bytes(cramjam.snappy.compress(req))
    with pytest.raises(WireError):
        decode_push(framed, PROTO, None)


def test_snappy_of_garbage_protobuf() -> None:
    body = bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff\xff\x0f garbage"))
    with pytest.raises(WireError, match="invalid protobuf"):
        decode_push(body, PROTO, None)


@pytest.mark.parametrize("labels", ["job=x", '{job="x"', '{job=x}', '{"job"="x"}', '{1a="x"}', ""])
def test_bad_label_string(labels: str) -> None:
    with pytest.raises(WireError, match="couldn't parse labels"):
        decode_push(proto_body(labels), PROTO, None)


def test_bad_timestamp_nanos() -> None:
    req = PushRequest(streams=[StreamAdapter(labels='{a="b"}', entries=[EntryAdapter(line="x")])])
    req.streams[0].entries[0].timestamp.nanos = -5
    body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
    with pytest.raises(WireError, match="nanos not in range"):
        decode_push(body, PROTO, None)


def test_snappy_length_claim_beyond_any_ratio_is_corrupt() -> None:
    claim = bytes([0x80, 0x80, 0x40])  # 1 MiB from a 3-byte body
    with pytest.raises(WireError, match="impossible for 11 bytes"):
        decode_push(claim + b"\x00" * 8, PROTO, None)
    # The densest real block (all zeros, ~21:1) is accepted.
    zeros = bytes(cramjam.snappy.compress_raw(b"\x00" * 2**20))
    with pytest.raises(WireError, match="invalid protobuf"):  # zeros are not a PushRequest
        decode_push(zeros, PROTO, None)


def test_oversize_snappy_is_refused_before_allocating() -> None:
    # A header claiming 3 GiB of output: refused from the header alone.
    varint = bytes([0x80, 0x80, 0x80, 0x80, 0x0C])
    with pytest.raises(BodyTooLarge) as err:
        decode_push(varint + b"\x00" * 8, PROTO, None)
    assert err.value.size == 3 * 2**30
    body = load(PUSH_DIR / "promtail-1.body").body
    with pytest.raises(BodyTooLarge, match="limit of 1000 bytes"):
        decode_push(body, PROTO, None, max_decompressed_bytes=1000)


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\x00" * (16 * 2**20), compresslevel=9)  # 16 MiB of zeros
    assert len(bomb) < 20_000
    with pytest.raises(BodyTooLarge, match="limit of 1048576 bytes"):
        decode_push(bomb, JSON, "gzip", max_decompressed_bytes=2**20)
    with pytest.raises(BodyTooLarge):
        decode_push(bomb, PROTO, "gzip", max_decompressed_bytes=2**20)


def test_exactly_at_the_limit_is_accepted() -> None:
    body = orjson.dumps(one_stream([["1", "x" * 100]]))
    assert decode_push(gzip.compress(body), JSON, "gzip", max_decompressed_bytes=len(body))
    with pytest.raises(BodyTooLarge):
        decode_push(gzip.compress(body), JSON, "gzip", max_decompressed_bytes=len(body) - 1)


def test_uncompressed_body_over_the_limit() -> None:
    body = orjson.dumps(one_stream([["1", "x" * 100]]))
    with pytest.raises(BodyTooLarge):
        decode_push(body, JSON, None, max_decompressed_bytes=50)


def test_errors_survive_pickling_for_the_server_worker_processes() -> None:
    import pickle

    from sluiceway.wire import BodyTooLarge, WireError

    e = pickle.loads(pickle.dumps(BodyTooLarge(5000, 1024)))
    assert isinstance(e, BodyTooLarge) and (e.size, e.limit) == (5000, 1024)
    assert str(e) == str(BodyTooLarge(5000, 1024))
    assert str(pickle.loads(pickle.dumps(WireError("bad")))) == "bad"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    import email.utils
    import time

    from sluiceway.wire import parse_retry_after

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("") is None and parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    got = parse_retry_after(future)
    assert got is not None and 25 < got <= 31
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_label_strings_unquote_like_go() -> None:
    import pytest

    from sluiceway.model import LabelError, go_unquote, parse_labels

    assert parse_labels(r'{a="x\"y\n\u00e9\101"}') == {"a": 'x"y\néA'}
    assert go_unquote(r"\x41\U0001F600") == "A\U0001F600"
    for bad in (r'{a="\q"}', r'{a="\u12"}'):
        with pytest.raises(LabelError):
            parse_labels(bad)
