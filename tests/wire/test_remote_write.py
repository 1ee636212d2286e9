"""Prometheus remote write 1.0 against the requests Loki's ruler made (recorded)."""

from __future__ import annotations

import json

import cramjam
import pytest

from sluiceway.wire import RemoteSeries, WireError, decode_write_request, encode_write_request
from tests.procs import FIXTURES

RESP = FIXTURES / "responses"


@pytest.mark.parametrize("n", [1, 2])
def test_recorded_bodies_decode_and_encode_byte_for_byte(n: int) -> None:
    body = (RESP / f"ruler_remote_write-{n}.body").read_bytes()
    want = json.loads((RESP / f"ruler_remote_write-{n}.expected.json").read_text())
    got = decode_write_request(body)
    assert [(s.labels, s.samples) for s in got] == [
        ({lab["name"]: lab["value"] for lab in ts["labels"]},
         [(int(x["timestamp"]), x["value"]) for x in ts["samples"]])
        for ts in want["timeseries"]]
    assert encode_write_request(got) == body


def test_labels_go_out_sorted_with_the_name_first() -> None:
    body = encode_write_request([RemoteSeries({"z": "1", "__name__": "m", "a": "2"},
                                              [(1000, 0.5), (2000, 1.5)])])
    [s] = decode_write_request(body)
    assert list(s.labels) == ["__name__", "a", "z"] and s.samples == [(1000, 0.5), (2000, 1.5)]


@pytest.mark.parametrize("body", [b"", b"not snappy at all \xff\xff",
                                  bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff"))])
def test_garbage_is_a_wire_error(body: bytes) -> None:
    with pytest.raises(WireError):
        decode_write_request(body)
