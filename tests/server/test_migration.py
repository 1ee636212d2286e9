"""A data dir written by the release before the storage formats change (issue 11) opens
in this release, and every line it held comes back exactly once through the Loki API.

`tests/data/store-v1/` was written once by `tests/data/make_store_v1.py` (see there for
what it holds: compacted chunks, "del" records of compaction and retention, an unflushed
WAL, torn index tails, three kinds of tenant directory) and is never regenerated; its
lines are listed in `tests/data/store-v1.expected.json`. A later format must read the
directory as it is or migrate it; either way this test must keep passing.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from sluiceway.model import parse_labels
from sluiceway.store import IndexReader, LocalDir
from tests.inproc import ThreadServer
from tests.procs import REPO, ServerProcess

DATA = REPO / "tests" / "data"
START = 1_709_251_200 * 10**9  # 2024-03-01T00:00:00Z: the data covers three days from here
END = START + 4 * 86_400 * 10**9
LIMIT = 5000  # the default max_entries_limit_per_query; every stream holds fewer lines

Entry = tuple[int, str, tuple[tuple[str, str], ...]]
# The lines as stored: no `detected_level` worked out at read time.
_LIMITS = "limits:\n  discover_log_levels: false\n"


def _expected() -> dict[str, dict[str, list[Entry]]]:
    manifest = orjson.loads((DATA / "store-v1.expected.json").read_bytes())
    return {tenant: {labels: sorted((int(ts), line, tuple(sorted((md or {}).items())))
                                    for ts, line, md in entries)
                     for labels, entries in streams.items()}
            for tenant, streams in manifest["tenants"].items()}


def _series(srv: ServerProcess, tenant: str) -> list[dict[str, str]]:
    r = httpx.get(f"{srv.url}/loki/api/v1/series", timeout=30, headers={
        "X-Scope-OrgID": tenant}, params={"match[]": '{app=~".+"}', "start": str(START),
                                          "end": str(END)})
    assert r.status_code == 200, r.text
    data: list[dict[str, str]] = r.json()["data"]
    return data


def _stream(srv: ServerProcess, tenant: str, selector: str) -> list[Entry]:
    """Every entry of one stream, with its structured metadata (categorize-labels)."""
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=30, params={
        "query": selector, "start": str(START), "end": str(END), "limit": str(LIMIT),
        "direction": "forward"}, headers={
        "X-Scope-OrgID": tenant, "X-Loki-Response-Encoding-Flags": "categorize-labels"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert not body.get("warnings"), body["warnings"]
    out: list[Entry] = []
    for s in body["data"]["result"]:
        for v in s["values"]:
            md = v[2].get("structuredMetadata", {}) if len(v) > 2 else {}
            out.append((int(v[0]), v[1], tuple(sorted(md.items()))))
    assert len(out) < LIMIT
    assert [e[0] for e in out] == sorted(e[0] for e in out), "not in time order"
    return out


def _check_every_line(srv: ServerProcess, expected: dict[str, dict[str, list[Entry]]]) -> None:
    for tenant, streams in expected.items():
        got_series = sorted(orjson.dumps(s, option=orjson.OPT_SORT_KEYS)
                            for s in _series(srv, tenant))
        want_series = sorted(orjson.dumps(parse_labels(k), option=orjson.OPT_SORT_KEYS)
                             for k in streams)
        assert got_series == want_series, tenant
        for labels, want in streams.items():
            got = sorted(_stream(srv, tenant, labels))
            missing = sorted(set(want) - set(got))
            assert not missing, f"{tenant} {labels}: {len(missing)} lines missing, " \
                                f"first {missing[:3]}"
            assert got == want, f"{tenant} {labels}: lines twice or not written ever"


def test_a_version_1_data_dir_opens_with_every_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DATA / "store-v1", data)
    expected = _expected()
    assert sum(len(v) for s in expected.values() for v in s.values()) == 870
    cfg = tmp_path / "s.yaml"
    cfg.write_text(_LIMITS)
    srv = ServerProcess(data, config=cfg).start()
    try:
        # Chunks read as they are, index logs migrated to index objects; the marker says
        # so (an older release refuses the dir instead of quarantining format-2 chunks or
        # finding every chunk unindexed), and the log says so.
        assert orjson.loads((data / "FORMAT").read_bytes()) == {
            "format": "sluiceway-store", "version": 3}
        assert "format version 1 raised to 3: its chunks are read as they are" in srv.log()
        assert "the index logs of 3 tenants are index objects now" in srv.log()
        assert not list(data.glob("tenants/*/index.log"))
        _check_every_line(srv, expected)
        # Whatever the first start changed (recovered chunks, a migration, the WAL's
        # heads flushed at shutdown) holds at the next start too.
        srv.stop()
        srv.start()
        _check_every_line(srv, expected)
    finally:
        srv.stop()


def _live_chunks(data: Path) -> dict[str, dict[str, Any]]:
    """Chunk path (below `tenants/`) -> its index record, for every chunk the index
    objects name now."""
    reader = IndexReader(LocalDir(data / "tenants"))
    reader.sync()
    return reader.records()


def _format_of(data: Path, rel: str) -> int:
    with open(data / "tenants" / rel, "rb") as f:
        head = f.read(5)
    assert head[:4] == b"SLWC", rel
    return head[4]


def _push_json(srv: ServerProcess, tenant: str, streams: list[dict[str, Any]]) -> None:
    r = httpx.post(f"{srv.url}/loki/api/v1/push", content=orjson.dumps({"streams": streams}),
                   headers={"Content-Type": "application/json", "X-Scope-OrgID": tenant},
                   timeout=30)
    assert r.status_code == 204, r.text


def test_format_2_chunks_join_the_format_1_chunks_of_a_version_1_data_dir(
        tmp_path: Path) -> None:
    """New lines land in the old streams in format 2 (between old lines, and exact
    repeats of old lines), beside the format-1 chunks; every line comes back once, and
    again after the compactor merged fresh chunks of both formats."""
    data = tmp_path / "data"
    shutil.copytree(DATA / "store-v1", data)
    expected = _expected()
    cfg = tmp_path / "s.yaml"
    limits = _LIMITS + "  reject_old_samples: false\n  unordered_window: 100000h\n"
    cfg.write_text(limits + "storage:\n  compaction_enabled: false\n")
    srv = ThreadServer(data, config=cfg).start()
    try:
        old_chunks = _live_chunks(data)
        assert {_format_of(data, p) for p in old_chunks} == {1}
        for tenant, streams in expected.items():
            body = []
            for labels, entries in streams.items():
                values: list[list[Any]] = []
                for k, (ts, line, md) in enumerate(entries):
                    if k % 3 == 0:  # a new line 1 ns after an old one
                        new = (ts + 1, f"v2 after {ts} {k}", ())
                        values.append([str(new[0]), new[1]])
                        streams[labels] = [*streams[labels], new]
                    if k % 5 == 0:  # an exact repeat of an old line: merged away
                        values.append([str(ts), line, dict(md)] if md else [str(ts), line])
                body.append({"stream": parse_labels(labels), "values": values})
            _push_json(srv, tenant, body)
            for labels in streams:
                streams[labels] = sorted(streams[labels])
        assert httpx.post(f"{srv.url}/flush", timeout=60).status_code == 204
        mixed = _live_chunks(data)
        formats = {p: _format_of(data, p) for p in mixed}
        assert {f for p, f in formats.items() if p in old_chunks} == {1}
        new_chunks = [p for p in mixed if p not in old_chunks]
        assert new_chunks and {formats[p] for p in new_chunks} == {2}
        # Every tenant has both formats, and some streams a format-2 chunk whose time
        # range overlaps a format-1 chunk of the same stream.
        for tenant_dir in {p.split("/", 1)[0] for p in mixed}:
            assert {f for p, f in formats.items() if p.startswith(tenant_dir + "/")} == {1, 2}
        assert any(a["fp"] == b["fp"] and a["mint"] <= b["maxt"] and b["mint"] <= a["maxt"]
                   for pa, a in mixed.items() for pb, b in mixed.items()
                   if formats[pa] == 1 and formats[pb] == 2)
        _check_every_line(srv, expected)
    finally:
        srv.stop()
    cfg.write_text(limits + "storage:\n  compaction_interval: 200ms\n  "
                   "compaction_min_age: 0s\n")
    srv.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(
                r.get("lvl", 1) < 17 for r in _live_chunks(data).values()):
            time.sleep(0.2)
        live = _live_chunks(data)
        assert all(r.get("lvl", 1) >= 17 for r in live.values()), "compaction did not run"
        formats = {p: _format_of(data, p) for p in live}
        # Chunks the old release compacted stay format 1 (compaction does not touch
        # them again); what was compacted now is format 2.
        assert set(formats.values()) == {1, 2}
        assert all(f == 1 for p, f in formats.items() if p in old_chunks)
        _check_every_line(srv, expected)
    finally:
        srv.stop()
