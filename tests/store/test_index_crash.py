"""A store SIGKILLed between the steps that move lines from the ingest log into chunks
and the index: chunk objects written → index object written → checkpoint written → log
released; and inside compaction (merged chunk → its index object), index compaction
(compacted object → superseded objects deleted) and garbage collection. Each crash is a
real SIGKILL of a child process, fired by an object store (or WAL) hook at that step; the
next start serves every acked line exactly once and counts no damage. A crash between a
chunk and the index object naming it leaves an orphan: the compactor's sweep deletes it
(and nothing else) once it is older than `retention_delete_delay`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sluiceway.model import Matcher
from sluiceway.store import CompactorConfig, LocalDir, Store, StoreConfig
from sluiceway.store._index import decode
from tests.inproc import wait_for
from tests.procs import REPO

CHILD = r"""
import os, signal, sys, time
import numpy as np
from pathlib import Path
from sluiceway.model import EntryBlock
from sluiceway.store import CompactorConfig, FileWal, LocalDir, Store, StoreConfig

data, step = Path(sys.argv[1]), sys.argv[2]
armed = False

def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

class Hooked(LocalDir):
    def put_many(self, items):
        out = super().put_many(items)
        keys = [k for k, _ in items]
        if armed and step == "after-chunks" and any(k.endswith(".chunk") for k in keys):
            die()
        if armed and step in ("after-index", "after-merge-index") and any(
                k.endswith(".idx") for k in keys):
            die()
        return out

    def put(self, key, data):
        super().put(key, data)
        if armed and step == "after-merged-chunk" and key.endswith(".chunk"):
            die()
        if armed and step == "after-index-compaction" and "/c-" in key:
            die()

    def delete_many(self, keys):
        keys = list(keys)
        if armed and step == "mid-gc" and any(k.endswith(".idx") for k in keys):
            super().delete_many(keys[: len(keys) // 2])
            die()
        super().delete_many(keys)

if step == "after-checkpoint":
    real = FileWal.release
    def release(self, upto):
        if armed:
            die()
        return real(self, upto)
    FileWal.release = release

cfg = StoreConfig(data_dir=data, compaction_enabled=False, chunk_target_size=1 << 30,
                  index_sync_period=0, compaction_level=3)
st = Store(cfg, objects=Hooked(data / "tenants"),
           compactor=CompactorConfig(retention_delete_delay=0))
base = int(sys.argv[3])
merge = step in ("after-merged-chunk", "after-merge-index", "after-index-compaction", "mid-gc")
for k in range(4):
    blocks = [EntryBlock.from_lines({"app": app}, np.arange(50, dtype=np.int64) + base + k * 100,
                                    [f"{app} {k} {i}".encode() for i in range(50)])
              for app in ("a", "b")]
    st.push("fake", blocks).result()  # acked: durable and applied
    print("acked", k, flush=True)
    if merge or k == 0:
        # One small chunk (and index object) per push and stream; at least the first, so
        # the index exists (a chunk left unnamed is then an orphan, not a lost index).
        st.flush_all()
armed = True
if merge:
    st.compact(min_age_s=0)  # merges, then folds the index objects
    st.compact(min_age_s=0)  # deletes what the first pass took out of service
else:
    st.flush_all()
print("no crash", flush=True)
"""

# The steps that leave chunks no index object names, and how many: a flush's two streams;
# the one merge the compactor (one at a time) had written.
ORPHANS = {"after-chunks": 2, "after-merged-chunk": 1}
STEPS = ["after-chunks", "after-index", "after-checkpoint", "after-merged-chunk",
         "after-merge-index", "after-index-compaction", "mid-gc"]


def _chunk_files(data: Path) -> set[str]:
    return {p.relative_to(data / "tenants" / "t-fake").as_posix()
            for p in (data / "tenants" / "t-fake" / "chunks").glob("*/*.chunk")}


def _unnamed(data: Path) -> set[str]:
    """Chunk files no index object on disk names (adding or deleting it): read from the
    objects' records directly."""
    named: set[str] = set()
    for p in (data / "tenants" / "index").rglob("*.idx"):
        d = decode(p.read_bytes(), str(p))
        named.update(e.ref.path for e in d.adds)
        named.update(path for path, _ in d.dels)
    return _chunk_files(data) - named


def _lines(st: Store) -> list[bytes]:
    return sorted(ln for ref in st.series(["fake"], [Matcher("app", "=~", ".+")], 0, 2**62)
                  for b in st.blocks(ref, 0, 2**62, "forward") for ln in b.lines())


@pytest.mark.parametrize("step", STEPS)
def test_every_acked_line_once_after_a_crash_at(step: str, tmp_path: Path) -> None:
    import time

    data = tmp_path / "data"
    base = time.time_ns() - 600 * 10**9
    r = subprocess.run([sys.executable, "-c", CHILD, str(data), step, str(base)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, (r.returncode, r.stdout, r.stderr[-3000:])
    assert r.stdout.split("\n")[:4] == [f"acked {k}" for k in range(4)]
    want = sorted(f"{app} {k} {i}".encode() for app in ("a", "b") for k in range(4)
                  for i in range(50))
    cfg = StoreConfig(data_dir=data, compaction_enabled=False, index_sync_period=0)
    for _ in range(2):  # the start after the crash, and the one after that
        st = Store(cfg, objects=LocalDir(data / "tenants"))
        try:
            assert _lines(st) == want
            ts = st.tenants["fake"]
            assert ts.index_records_lost == 0 and not ts.chunks_quarantined
        finally:
            st.close()
    # The compactor's orphan sweep, with a short delay: what no index object names goes,
    # the rest stays, and every line is still there once.
    orphans = _unnamed(data)
    assert len(orphans) == ORPHANS.get(step, 0), orphans
    st = Store(cfg, objects=LocalDir(data / "tenants"),
               compactor=CompactorConfig(retention_delete_delay=1))
    try:
        wait_for(lambda: (st.compact(), not orphans & _chunk_files(data))[1],
                 "the orphans deleted")
        assert st.orphans_deleted == len(orphans)
        live = {e.ref.path for e in st.tenants["fake"].index.live()}
        assert live <= _chunk_files(data)
        assert _lines(st) == want
    finally:
        st.close()
