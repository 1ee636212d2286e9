"""Blocks may point into a larger shared buffer (a WAL record, a chunk payload): bytes
outside their own lines must never match a filter."""

from __future__ import annotations

import numpy as np
import pytest

from sluiceway.logql import LogPipeline, parse
from sluiceway.logql._ast import LogExpr
from sluiceway.model import EntryBlock

JUNK = b"NEEDLE needle error ERROR "


def _shared(lines: list[bytes]) -> EntryBlock:
    inner = b"".join(lines)
    blob = JUNK + inner + JUNK
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lines], out=offsets[1:])
    return EntryBlock({"job": "a"}, np.arange(len(lines), dtype=np.int64), blob,
                      offsets + len(JUNK))


@pytest.mark.parametrize(("query", "want"), [
    ('{job="a"} |= "needle"', [1]), ('{job="a"} |~ "(?i)needle"', [1]),
    ('{job="a"} |~ "(?i)nee+dle"', [1]), ('{job="a"} |= "error"', []),
    ('{job="a"} |~ "(?i)ERROR"', []), ('{job="a"} |~ "needle|error"', [1])])
def test_filters_see_only_the_blocks_own_lines(query: str, want: list[int]) -> None:
    block = _shared([b"plain line", b"a needle here", b"nothing"])
    expr = parse(query)
    assert isinstance(expr, LogExpr)
    assert LogPipeline(expr.stages).select(block).tolist() == want


def test_compacted_keeps_entries() -> None:
    block = _shared([b"x", b"yy"])
    c = block.compacted()
    assert c.lines() == block.lines() == [b"x", b"yy"] and c.blob == b"xyy"
