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
from pathlib import Path
from typing import Any

import httpx
import orjson

from sluiceway.model import parse_labels
from tests.procs import REPO, ServerProcess

DATA = REPO / "tests" / "data"
START = 1_709_251_200 * 10**9  # 2024-03-01T00:00:00Z: the data covers three days from here
END = START + 4 * 86_400 * 10**9
LIMIT = 5000  # the default max_entries_limit_per_query; every stream holds fewer lines

Entry = tuple[int, str, tuple[tuple[str, str], ...]]


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
    srv = ServerProcess(data).start()
    try:
        _check_every_line(srv, expected)
        # Whatever the first start changed (recovered chunks, a migration, the WAL's
        # heads flushed at shutdown) holds at the next start too.
        srv.stop()
        srv.start()
        _check_every_line(srv, expected)
    finally:
        srv.stop()
