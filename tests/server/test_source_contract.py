"""The `LogSource` contract, run against every implementation.

`LogSource` (`sluiceway/logql/_source.py`) is the one way into data for every read
endpoint: `series`, `blocks` (with the query's line prefilter and deadline),
`label_names`, `label_values`, `stats` and `volume`. Every test takes the `backend`
fixture, parametrized over `BACKENDS`: a factory that loads the same entries (`ROUNDS`,
pushed in rounds that overlap in time and repeat some lines) into one implementation
and says how it labels series (multi-tenant reads add `__tenant_id__`) and whether it
holds more than one tenant. An implementation joins the suite by adding one entry (a
remote one: a test server loaded with the rounds); every test then runs against it.

What every implementation must do, checked against a reference computed here from the
raw entries:
- `series`: the series of the tenants asked with data in [start, end), matching all
  matchers; `fp` is the fingerprint of the stored labels.
- `blocks`: exactly the series' entries in [start, end), each once (exact duplicates
  removed), in blocks labelled as the series, ascending inside, time-disjoint and in
  `direction` order; with a prefilter, at least every entry that holds its literals;
  past the deadline, `QueryTimeout` before a block is handed out.
- `label_names`, `label_values`: those of the series `series` gives.
- `stats`: the series `series` gives, and (whole) chunks overlapping the range: at least
  the entries and bytes of the range, exactly those when nothing was pushed twice.
- `volume`: per series, the exact bytes of its lines per bucket.

The single-node store runs with the first round flushed to chunks and the second in
memory, so its reads merge chunks with the head.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from sluiceway.cluster import ClusterSource
from sluiceway.logql import (
    Deadline,
    LinePrefilter,
    LogSource,
    MemorySource,
    QueryTimeout,
    SeriesRef,
)
from sluiceway.model import (
    EntryBlock,
    Matcher,
    StreamBatch,
    fingerprint,
    in_read_order,
    merge_blocks,
    sort_dedupe,
)
from sluiceway.server._querier import LookbackSource, StoreSource
from sluiceway.server._tail import BlocksSource
from sluiceway.server._tenants import MultiTenantSource, with_tenant_label
from sluiceway.store import Store, StoreConfig

S = 10**9
B = 1_700_000_000 * S  # the data's base time
WEB_PROD = {"app": "web", "env": "prod"}
WEB_DEV = {"app": "web", "env": "dev"}
DB = {"app": "db", "__tenant_id__": "stored"}  # a stored label multi-tenant reads rename
Entry = tuple[int, str, tuple[tuple[str, str], ...] | None]  # ts, line, metadata


def _web_prod(first: int, n: int, tag: str) -> list[Entry]:
    return [(B + i * S // 2, f"GET /{i} {tag}" + (" needle" if i % 3 == 0 else ""), None)
            for i in range(first, first + n)]


# Rounds of pushes: tenant -> labels -> entries (each push in arrival order).
ROUND_1: dict[str, list[tuple[dict[str, str], list[Entry]]]] = {
    "a": [(WEB_PROD, _web_prod(0, 20, "one")),
          (DB, [(B + 3 * S, "db start needle", (("trace", "t1"),)), (B + 4 * S, "db q", None)]),
          (WEB_DEV, [(B + 2 * S, "dev 1", None), (B + 1 * S, "dev 0", None)])],
    "b": [(WEB_PROD, [(B + i * S, f"b only {i}", None) for i in range(5)])],
}
ROUND_2: dict[str, list[tuple[dict[str, str], list[Entry]]]] = {
    # Overlaps round 1 in time, repeats some of its lines exactly, and has other lines
    # at times round 1 used.
    "a": [(WEB_PROD, _web_prod(5, 5, "one") + _web_prod(8, 10, "two")[::-1]),
          (DB, [(B + 4 * S, "db q", None), (B + 20 * S, "db late", None)])],
    "b": [(WEB_PROD, [(B + 10 * S, "b only 10", None)])],
}
ROUNDS = [ROUND_1, ROUND_2]
TENANTS = ("a", "b")


def _reference() -> dict[tuple[str, int], tuple[dict[str, str], list[Entry]]]:
    """(tenant, fp) -> labels and the entries sorted by (ts, line), each once."""
    out: dict[tuple[str, int], tuple[dict[str, str], set[Entry]]] = {}
    for rnd in ROUNDS:
        for tenant, pushes in rnd.items():
            for labels, entries in pushes:
                out.setdefault((tenant, fingerprint(labels)), (labels, set()))[1].update(entries)
    return {k: (labels, sorted(es, key=lambda e: (e[0], e[1]))) for k, (labels, es)
            in out.items()}


REF = _reference()


def _block(labels: dict[str, str], entries: list[Entry]) -> EntryBlock:
    md = [dict(m) if m else None for _, _, m in entries]
    return EntryBlock.from_lines(dict(labels), np.array([t for t, _, _ in entries],
                                                        dtype=np.int64),
                                 [line.encode() for _, line, _ in entries],
                                 md if any(md) else None)


def _batches(pushes: list[tuple[dict[str, str], list[Entry]]]) -> list[StreamBatch]:
    return [StreamBatch(dict(labels), [t for t, _, _ in es], [line for _, line, _ in es],
                        [dict(m) if m else None for _, _, m in es])
            for labels, es in pushes]


@dataclass
class Backend:
    source: LogSource
    relabel: Callable[[Mapping[str, str], str], dict[str, str]]  # stored labels, tenant
    tenants: tuple[str, ...]  # the tenants it holds


def _same(labels: Mapping[str, str], _tenant: str) -> dict[str, str]:
    return dict(labels)


def _memory(_: Path, prefilter: bool = False) -> Iterator[Backend]:
    src = MemorySource(block_size=4, prefilter=prefilter)
    for rnd in ROUNDS:
        for tenant, pushes in rnd.items():
            src.push(tenant, _batches(pushes))
    yield Backend(src, _same, TENANTS)


def _store(path: Path) -> Iterator[Store]:
    st = Store(StoreConfig(data_dir=path, compaction_enabled=False, flush_on_shutdown=False))
    try:
        for k, rnd in enumerate(ROUNDS):
            for tenant, pushes in rnd.items():
                st.push(tenant, [_block(labels, es) for labels, es in pushes]).result()
            if k == 0:
                st.flush_all()  # round 1 in chunks, round 2 in the heads
        yield st
    finally:
        st.close()


def _store_source(path: Path) -> Iterator[Backend]:
    for st in _store(path):
        yield Backend(StoreSource(st), _same, TENANTS)


def _lookback(path: Path) -> Iterator[Backend]:
    for st in _store(path):  # a floor below every entry: reads as the source it wraps
        yield Backend(LookbackSource(StoreSource(st), B - 3600 * S), _same, TENANTS)


def _multi_tenant(path: Path) -> Iterator[Backend]:
    for st in _store(path):
        yield Backend(MultiTenantSource(StoreSource(st)), with_tenant_label, TENANTS)


def _tail(_: Path) -> Iterator[Backend]:
    # Live tail's source holds the blocks of one tenant's pushes (here: all rounds).
    blocks = [_block(labels, es) for rnd in ROUNDS for labels, es in rnd["a"]]
    yield Backend(BlocksSource("a", blocks), _same, ("a",))


def _cluster(path: Path) -> Iterator[Backend]:
    # A cluster process: its own store (round 1 in chunks, round 2 in its heads) merged
    # with another ingester's heads, which hold round 2 again (a partition replayed by
    # its new owner): every entry must still come once. The other ingester's answer is
    # `Store.memory_blocks`, what `HeadsServer` sends over NATS (tests/cluster run that).
    other = Store(StoreConfig(data_dir=path.parent / "other", compaction_enabled=False,
                              flush_on_shutdown=False))
    try:
        for tenant, pushes in ROUND_2.items():
            other.push(tenant, [_block(labels, es) for labels, es in pushes]).result()
        for st in _store(path):
            yield Backend(ClusterSource(StoreSource(st), other.memory_blocks), _same, TENANTS)
    finally:
        other.close()


# name -> factory(fresh empty directory) -> the rounds loaded into one implementation.
BACKENDS: dict[str, Callable[[Path], Iterator[Backend]]] = {
    "MemorySource": _memory,
    "MemorySource(prefilter)": lambda p: _memory(p, prefilter=True),
    "StoreSource": _store_source,
    "LookbackSource": _lookback,
    "MultiTenantSource": _multi_tenant,
    "BlocksSource": _tail,
    "ClusterSource": _cluster,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from BACKENDS[request.param](tmp_path / "data")


ALL = (B - 3600 * S, B + 3600 * S)
MATCHERS = {
    "web": [Matcher("app", "=", "web")],
    "any": [Matcher("app", "=~", ".+")],
    "not-prod": [Matcher("app", "=~", "web|db"), Matcher("env", "!=", "prod")],
    "none": [Matcher("app", "=", "nothing")],
}
RANGES = {"all": ALL, "early": (B, B + 2 * S), "middle": (B + 3 * S, B + 5 * S),
          "late": (B + 10 * S, ALL[1]), "empty": (B + 30 * S, B + 40 * S)}


def _tenants(be: Backend) -> list[str]:
    return list(be.tenants)


def _expected_series(be: Backend, tenants: list[str], matchers: list[Matcher], start: int,
                     end: int) -> dict[tuple[str, int], dict[str, str]]:
    out = {}
    for (tenant, fp), (labels, entries) in REF.items():
        if tenant in tenants and all(m.matches(labels.get(m.name, "")) for m in matchers) \
                and any(start <= t < end for t, _, _ in entries):
            out[(tenant, fp)] = be.relabel(labels, tenant)
    return out


def _entries(blocks: list[EntryBlock]) -> list[Entry]:
    out: list[Entry] = []
    for b in blocks:
        for i, (t, line) in enumerate(zip(b.ts.tolist(), b.lines(), strict=True)):
            md = b.metadata[i] if b.metadata is not None else None
            out.append((t, line.decode(), tuple(sorted(md.items())) if md else None))
    return out


def _in_range(key: tuple[str, int], start: int, end: int) -> list[Entry]:
    return [e for e in REF[key][1] if start <= e[0] < end]


@pytest.mark.parametrize("rng", sorted(RANGES))
@pytest.mark.parametrize("sel", sorted(MATCHERS))
def test_series_are_those_with_data_in_the_range(backend: Backend, sel: str,
                                                 rng: str) -> None:
    start, end = RANGES[rng]
    tenants = _tenants(backend)
    got = backend.source.series(tenants, MATCHERS[sel], start, end)
    assert len(got) == len({(r.tenant, r.fp) for r in got})  # each once
    assert {(r.tenant, r.fp): dict(r.labels) for r in got} == _expected_series(
        backend, tenants, MATCHERS[sel], start, end)


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("rng", sorted(RANGES))
def test_blocks_hold_each_entry_once_time_disjoint_in_direction_order(
        backend: Backend, rng: str, direction: str) -> None:
    start, end = RANGES[rng]
    refs = backend.source.series(_tenants(backend), MATCHERS["any"], start, end)
    for ref in refs:
        blocks = list(backend.source.blocks(ref, start, end, direction))
        assert blocks, f"{ref} has data in the range, no block came"
        for b in blocks:
            assert len(b) and b.labels == dict(ref.labels)
            assert bool((np.diff(b.ts) >= 0).all()), "a block is not ascending"
        for prev, nxt in itertools.pairwise(blocks):  # touching at most
            if direction == "forward":
                assert prev.ts[-1] <= nxt.ts[0]
            else:
                assert prev.ts[0] >= nxt.ts[-1]
        ordered = blocks if direction == "forward" else blocks[::-1]
        got = _entries(ordered)
        assert sorted(got, key=lambda e: (e[0], e[1])) == _in_range((ref.tenant, ref.fp),
                                                                     start, end)
        assert [t for t, _, _ in got] == sorted(t for t, _, _ in got)


def test_blocks_of_a_series_without_data_in_the_range_are_none(backend: Backend) -> None:
    ref = backend.source.series(_tenants(backend), MATCHERS["web"], *ALL)[0]
    assert list(backend.source.blocks(ref, *RANGES["empty"], "forward")) == []


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_a_prefilter_keeps_every_entry_with_its_literals(backend: Backend,
                                                         direction: str) -> None:
    pf = LinePrefilter((b"needle",))
    for ref in backend.source.series(_tenants(backend), MATCHERS["any"], *ALL):
        got = _entries(list(backend.source.blocks(ref, *ALL, direction, prefilter=pf)))
        everything = _in_range((ref.tenant, ref.fp), *ALL)
        assert set(got) <= set(everything) and len(got) == len(set(got))
        assert {e for e in everything if "needle" in e[1]} <= set(got)


def test_past_the_deadline_no_block_is_handed_out(backend: Backend) -> None:
    ref = backend.source.series(_tenants(backend), MATCHERS["web"], *ALL)[0]
    blocks = backend.source.blocks(ref, *ALL, "forward", deadline=Deadline(-1.0))
    with pytest.raises(QueryTimeout):
        next(iter(blocks))


@pytest.mark.parametrize("rng", ["all", "middle", "empty"])
@pytest.mark.parametrize("sel", ["any", "not-prod", "none"])
def test_label_names_and_values_are_those_of_the_series(backend: Backend, sel: str,
                                                         rng: str) -> None:
    start, end = RANGES[rng]
    tenants = _tenants(backend)
    series = _expected_series(backend, tenants, MATCHERS[sel], start, end).values()
    names = sorted({k for labels in series for k in labels})
    assert backend.source.label_names(tenants, MATCHERS[sel], start, end) == names
    for name in [*names, "missing"]:
        assert backend.source.label_values(tenants, name, MATCHERS[sel], start, end) == \
            sorted({labels[name] for labels in series if name in labels})


def test_stats_count_series_and_at_least_the_entries_of_the_range(backend: Backend) -> None:
    tenants = _tenants(backend)
    want = _expected_series(backend, tenants, MATCHERS["any"], *ALL)
    got = backend.source.stats(tenants, MATCHERS["any"], *ALL)
    entries = [e for key in want for e in _in_range(key, *ALL)]
    assert got.streams == len(want)
    assert got.chunks >= got.streams
    assert got.entries >= len(entries)
    assert got.bytes >= sum(len(e[1].encode()) for e in entries)
    assert backend.source.stats(tenants, MATCHERS["none"], *ALL).streams == 0


def test_stats_of_entries_pushed_once_are_exact(backend: Backend) -> None:
    # {env="dev"} got one push, no line twice: chunks hold exactly its entries.
    got = backend.source.stats(["a"], [Matcher("env", "=", "dev")], *ALL)
    entries = _in_range(("a", fingerprint(WEB_DEV)), *ALL)
    assert (got.streams, got.entries, got.bytes) == (
        1, len(entries), sum(len(e[1].encode()) for e in entries))
    assert backend.source.stats(["a"], [Matcher("env", "=", "dev")],
                                *RANGES["empty"]).streams == 0


@pytest.mark.parametrize("rng", ["all", "middle"])
def test_volume_is_the_bytes_of_each_series_per_bucket(backend: Backend, rng: str) -> None:
    start, end = RANGES[rng]
    inner = [B + 4 * S] if rng == "middle" else [B + 2 * S, B + 9 * S]
    edges = np.array([start, *inner, end], dtype=np.int64)
    tenants = _tenants(backend)
    got = backend.source.volume(tenants, MATCHERS["any"], start, end, edges)
    want = _expected_series(backend, tenants, MATCHERS["any"], start, end)
    assert {(r.tenant, r.fp): dict(r.labels) for r, _ in got} == want
    for ref, sums in got:
        expect = np.zeros(len(edges) - 1, dtype=np.int64)
        for t, line, _ in _in_range((ref.tenant, ref.fp), start, end):
            i = min(int(np.searchsorted(edges, t, "right")) - 1, len(edges) - 2)
            expect[i] += len(line.encode())
        assert sums.tolist() == expect.tolist(), ref


def test_tenants_are_kept_apart(backend: Backend) -> None:
    if "b" not in backend.tenants:
        pytest.skip("holds one tenant")
    for tenant in TENANTS:
        refs = backend.source.series([tenant], MATCHERS["web"], *ALL)
        assert {r.tenant for r in refs} == {tenant}
        lines = [e[1] for r in refs for e in _entries(list(
            backend.source.blocks(r, *ALL, "forward")))]
        assert lines and all(line.startswith("b only") == (tenant == "b") for line in lines)
    assert backend.source.series(["c"], MATCHERS["any"], *ALL) == []


# --- the one merge (`sluiceway.model.merge_blocks`), which every source above uses ----

def _random_blocks(seed: int, n: int) -> list[EntryBlock]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t0 = rng.randint(0, 60)
        rows = [(t0 + rng.randint(0, 25), rng.choice(["a", "b", "cc"])) for _ in
                range(rng.randint(0, 12))]
        out.append(sort_dedupe(EntryBlock.from_lines(
            {"s": "1"}, np.array([t for t, _ in rows], dtype=np.int64),
            [line.encode() for _, line in rows])))
    return out


@settings(max_examples=300, deadline=None)
@given(hs.integers(0, 10**6), hs.integers(0, 6), hs.sampled_from(["forward", "backward"]),
       hs.integers(0, 90), hs.integers(0, 90))
def test_merge_blocks_is_a_sorted_dedupe_cut_into_disjoint_blocks(
        seed: int, n: int, direction: str, start: int, end: int) -> None:
    blocks = [b for b in _random_blocks(seed, n) if len(b)]
    spans = in_read_order(((int(b.ts[0]), int(b.ts[-1]), b) for b in blocks), direction)
    out = list(merge_blocks([(a, z) for a, z, _ in spans], (b for _, _, b in spans),
                            direction, start, end))
    want = sorted({(t, line) for b in blocks
                   for t, line in zip(b.ts.tolist(), b.lines(), strict=True)
                   if start <= t < end})
    ordered = out if direction == "forward" else out[::-1]
    got = [(t, line) for b in ordered for t, line in zip(b.ts.tolist(), b.lines(),
                                                          strict=True)]
    assert sorted(got) == want and len(got) == len(want)
    assert [t for t, _ in got] == sorted(t for t, _ in got)
    for prev, nxt in itertools.pairwise(ordered):
        assert prev.ts[-1] < nxt.ts[0]  # strictly disjoint: equal times are merged
    assert all(len(b) for b in out)


def test_merge_blocks_copies_no_block_that_overlaps_nothing() -> None:
    a = EntryBlock.from_lines({"s": "1"}, np.array([1, 2], dtype=np.int64), [b"x", b"y"])
    b = EntryBlock.from_lines({"s": "1"}, np.array([5, 6], dtype=np.int64), [b"z", b"w"])
    out = list(merge_blocks([(1, 2), (5, 6)], [a, b], "forward", 0, 10))
    assert [o.blob is x.blob for o, x in zip(out, [a, b], strict=True)] == [True, True]


def test_a_series_ref_is_one_type() -> None:
    import sluiceway.logql as logql
    import sluiceway.model as model

    assert logql.SeriesRef is model.SeriesRef
    ref = SeriesRef("a", 1, {"x": "1"})
    assert ref == SeriesRef("a", 1, {"x": "relabelled"})  # labels are not its identity
