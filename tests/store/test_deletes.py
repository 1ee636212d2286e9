"""Delete requests in the object store (issue 15): two stores sharing one object store, as
two servers sharing a bucket: what one makes, processes or cancels is applied by the
other's reads after its next sync, and moves the other's generation (its cached results
are stale)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sluiceway.model import EntryBlock, Matcher
from sluiceway.server._deletion import compile_delete
from sluiceway.store import CompactorConfig, LocalDir, Store, StoreConfig
from tests.inproc import wait_for


def _lines(st: Store) -> list[bytes]:
    return sorted(ln for ref in st.series(["fake"], [Matcher("app", "=", "x")], 0, 2**62)
                  for b in st.blocks(ref, 0, 2**62, "forward") for ln in b.lines())


@pytest.fixture
def two_stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    objects = LocalDir(tmp_path / "objects")
    a = Store(StoreConfig(data_dir=tmp_path / "a", compaction_enabled=False,
                          index_sync_period=0), objects=objects,
              compactor=CompactorConfig(delete_request_cancel_period=0))
    b = Store(StoreConfig(data_dir=tmp_path / "b", compaction_enabled=False,
                          index_sync_period=0.1),
              objects=objects)
    for st in (a, b):
        st.deletes.compile = compile_delete
    yield a, b
    b.close()
    a.close()


def test_another_store_applies_requests_made_cancelled_and_processed(
        two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    base = time.time_ns() - 600 * 10**9
    lines = [f"{'secret' if i % 2 else 'plain'} {i}".encode() for i in range(20)]
    a.push("fake", [EntryBlock.from_lines({"app": "x"}, np.arange(20, dtype=np.int64) + base,
                                          lines)]).result()
    a.flush_all()
    wait_for(lambda: len(_lines(b)) == 20, "b to serve a's chunk")
    gen = b.generation
    ms = base // 10**6
    req = a.deletes.add("fake", '{app="x"} |= "secret"', ms, ms + 1000, time.time())
    assert len(_lines(a)) == 10  # at once where it was made
    wait_for(lambda: len(_lines(b)) == 10, "b to apply a's request")
    assert b.generation > gen
    a.deletes.cancel("fake", req.id)
    wait_for(lambda: len(_lines(b)) == 20, "b to forget the cancelled request")

    done = a.deletes.add("fake", '{app="x"} |= "secret"', ms, ms + 1000, time.time())
    assert a.process_deletes() == 10
    wait_for(lambda: (r := b.deletes.get("fake", done.id)) is not None
             and r.status == "processed", "b to see the request processed")
    wait_for(lambda: _lines(b) == sorted(x for x in lines if b"plain" in x),
             "b to serve the rewritten chunk")
