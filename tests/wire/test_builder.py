"""`PushBuilder` with structured metadata (a pipeline's `structured_metadata` stage): each
entry keeps its own, in both formats, beside pieces of the same stream without any."""

from __future__ import annotations

import numpy as np
import pytest

from sluiceway.wire import CONTENT_TYPES, PushBuilder, PushFormat, decode_push


@pytest.mark.parametrize("fmt", ["protobuf", "json"])
def test_structured_metadata_rides_with_its_entries(fmt: PushFormat) -> None:
    b = PushBuilder(fmt)
    b.add({"job": "a"}, np.array([1, 2], dtype=np.int64), [b"plain", b"caf\xc3\xa9"])
    b.add({"job": "a"}, [3, 4], [b"with", b"mixed"],
          metadata=[{"user": "bob", "trace_id": "t1"}, None])
    got = decode_push(b.body(), CONTENT_TYPES[fmt], None)
    rows = [(t, line, (sb.metadata or [None] * len(sb))[i] or None)
            for sb in got for i, (t, line) in enumerate(zip(sb.ts, sb.lines, strict=True))]
    assert {tuple(sorted(sb.labels.items())) for sb in got} == {(("job", "a"),)}
    assert sorted(rows) == [(1, "plain", None), (2, "café", None),
                            (3, "with", {"user": "bob", "trace_id": "t1"}),
                            (4, "mixed", None)]
    assert b.lines == 4
