"""The column-wise JSON fast path agrees with the stream-by-stream decoder."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.model import StreamBatch
from sluiceway.wire import WireError, decode_push, encode_push_json
from sluiceway.wire._json import decode_streams
from sluiceway.wire._json_columns import decode_columns
from tests.wire._strategies import BATCHES


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten, so that whole pushes are often valid and both paths run."""
    return st.integers(0, 9).flatmap(lambda k: bad if k == 0 else good)


TS = mostly(st.sampled_from(["1", "-5", "007", "1795457200150941184"]),
            st.sampled_from([5, "1.5", "", None, "+1"]))
TEXT = st.text(max_size=4)
LINE = mostly(TEXT, st.sampled_from([3, None]))
META = st.dictionaries(TEXT, mostly(TEXT, st.integers()), max_size=2)
ENTRY = mostly(st.tuples(TS, LINE).map(list) | st.tuples(TS, LINE, META).map(list),
               st.none() | st.lists(TS, max_size=4))
LABELS = st.dictionaries(mostly(st.sampled_from(["job", "env", "_x"]), st.just("bad name")),
                         mostly(TEXT, st.integers()), max_size=3)
STREAM = st.fixed_dictionaries({"stream": LABELS}, optional={
    "values": st.none() | st.lists(ENTRY, max_size=3)})


def stream_by_stream(streams: list[Any]) -> list[StreamBatch] | str:
    try:
        return decode_streams(streams)
    except WireError:
        return "error"


@settings(max_examples=200, deadline=None)
@given(st.lists(STREAM, max_size=3))
def test_fast_path_agrees_or_declines(streams: list[Any]) -> None:
    streams = json.loads(json.dumps(streams))  # the shapes orjson would produce
    fast = decode_columns(streams)
    assert fast is None or fast == stream_by_stream(streams)


@settings(max_examples=100, deadline=None)
@given(BATCHES)
def test_fast_path_takes_every_valid_push(batches: list[StreamBatch]) -> None:
    streams = json.loads(encode_push_json(batches))["streams"]
    assert decode_columns(streams) == decode_streams(streams) == batches


def test_one_stream_object_per_record_like_fluent_bit() -> None:
    batches = [StreamBatch({"job": "fb"}, [i], [f"line {i}"], [{"service": "x"}] if i % 2 else None)
               for i in range(50)]
    assert decode_push(encode_push_json(batches), "application/json", None) == batches
