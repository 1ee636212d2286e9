"""The ledger's number sets and push header (model), and which numbers a part lost."""

from __future__ import annotations

import random

import pytest

from sluiceway.model import (
    MAX_HEADER,
    LedgerGroup,
    LedgerHeaderError,
    RangeSet,
    decode_ledger,
    encode_ledger,
    split_ledger_order,
)
from sluiceway.ship import groups_of, lost_tail


def test_rangeset_counts_distinct_numbers_like_a_python_set() -> None:
    rnd = random.Random(7)
    rs, ref = RangeSet(), set()
    for _ in range(2000):
        a = rnd.randrange(0, 500)
        b = a + rnd.randrange(0, 20)
        new = rs.add(a, b)
        assert new == len(set(range(a, b)) - ref)
        ref |= set(range(a, b))
        assert len(rs) == len(ref)
    assert {n for a, b in rs for n in range(a, b)} == ref
    assert RangeSet([(0, 3), (5, 8)]).missing(10).ranges() == [[3, 5], [8, 10]]
    assert RangeSet([(0, 5), (10, 15)]).gaps(3, 20) == [(5, 10), (15, 20)]


def test_header_round_trip_and_ledger_order_split() -> None:
    groups = [LedgerGroup("client/app/host/loki sink", "e;1", [(0, 10), (12, 14)]),
              LedgerGroup("agent-x/file:ab", "f|2", [(5, 6)])]
    value = encode_ledger(groups)
    assert decode_ledger(value) == groups
    head, tail = split_ledger_order(groups, 11)
    assert [g.runs for g in head] == [[(0, 10), (12, 13)]]
    assert [(g.source, g.runs) for g in tail] == [(groups[0].source, [(13, 14)]),
                                                  (groups[1].source, [(5, 6)])]
    # the producer's convention is the server's: the lost lines are the last ones
    assert lost_tail(groups, 2) == tail


@pytest.mark.parametrize("bad", ["", "2;s;e;0+1", "1;s;e", "1;s;e;0-3", "1;;e;0+1",
                                 "1;s;e;0+0", "1;s;e;" + "1+1," * 400 + "1+1"])
def test_a_bad_header_is_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(LedgerHeaderError):
        decode_ledger(bad)


def test_groups_of_numbered_records_start_a_group_per_epoch() -> None:
    got = groups_of("s", [("a", 1), ("a", 2), ("a", 5), ("b", 0), ("a", 6)])
    assert [(g.epoch, g.runs) for g in got] == [("a", [(1, 3), (5, 6)]), ("b", [(0, 1)]),
                                                ("a", [(6, 7)])]
    assert len(encode_ledger(got)) < MAX_HEADER
