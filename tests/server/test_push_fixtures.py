"""Push the bytes captured from real shippers and read them back through the Loki API."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.inproc import ThreadServer
from tests.procs import FIXTURES, ServerProcess

PUSH = FIXTURES / "push"
NAMES = sorted(p.stem for p in PUSH.glob("*.body"))
# The fixtures were recorded on 2026-11-23; query a window wide enough around any run date.
WINDOW = (str(time.time_ns() - 600 * 86400 * 10**9), str(time.time_ns() + 86400 * 10**9))


def _push(srv: ServerProcess, name: str) -> httpx.Response:
    meta = json.loads((PUSH / f"{name}.json").read_text())
    headers = {k: v for k, v in meta["headers"]
               if k.lower() in ("content-type", "content-encoding", "x-scope-orgid")}
    return httpx.post(f"{srv.url}/loki/api/v1/push", content=(PUSH / f"{name}.body").read_bytes(),
                      headers=headers, timeout=10)


def _query_all(srv: ServerProcess, tenant: str | None, selector: str,
               categorize: bool = False) -> list[dict[str, Any]]:
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    if categorize:
        headers["X-Loki-Response-Encoding-Flags"] = "categorize-labels"
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", headers=headers, timeout=10, params={
        "query": selector, "start": WINDOW[0], "end": WINDOW[1], "limit": "5000",
        "direction": "forward"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "streams"
    return list(body["data"]["result"])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # The fixtures carry real 2026-11-23 timestamps: accept old samples as the README says.
    # What Loki stored was recorded with its discover_log_levels off: no detected_level.
    cfg = tmp_path_factory.mktemp("cfg") / "s.yaml"
    cfg.write_text("limits:\n  reject_old_samples: false\n  creation_grace_period: 1000d\n"
                   "  max_query_length: 0s\n  discover_log_levels: false\n")
    srv = ThreadServer(tmp_path_factory.mktemp("srv") / "data", config=cfg).start()
    statuses = {name: _push(srv, name).status_code for name in NAMES}
    yield srv, statuses
    srv.stop()


def _tenant(name: str) -> str | None:
    meta = json.loads((PUSH / f"{name}.json").read_text())
    return next((v for k, v in meta["headers"] if k.lower() == "x-scope-orgid"), None)


def _stored(srv: ServerProcess, tenant: str | None, labels: dict[str, str]) -> Counter[Any]:
    sel = "{" + ", ".join(f'{k}="{json.dumps(v)[1:-1]}"' for k, v in labels.items()) + "}"
    got = _query_all(srv, tenant, sel, categorize=True)
    # categorize-labels keeps stream labels exact and metadata in the third element,
    # which is how the expected files were recorded from Loki.
    return Counter(
        (v[0], v[1], json.dumps((v[2] if len(v) > 2 else {}).get("structuredMetadata") or {},
                                sort_keys=True))
        for r in got if r["stream"] == labels for v in r["values"])


def _expected(name: str) -> dict[str, Counter[Any]]:
    expected = json.loads((PUSH / f"{name}.expected.json").read_text())
    return {json.dumps(s["labelsMap"], sort_keys=True): Counter(
        (e["ts"], e["line"], json.dumps(e.get("structuredMetadata") or {}, sort_keys=True))
        for e in s["entries"]) for s in expected["streams"]}


@pytest.mark.parametrize("name", NAMES)
def test_fixture_push_is_accepted_and_readable(loaded: Any, name: str) -> None:
    srv, statuses = loaded
    meta = json.loads((PUSH / f"{name}.json").read_text())
    assert statuses[name] == 204 == meta.get("lokiPushStatus", 204)
    for key, want in _expected(name).items():
        got = _stored(srv, _tenant(name), json.loads(key))
        assert not (want - got), f"missing from the store: {want - got}"


def test_every_stream_holds_exactly_what_was_pushed(loaded: Any) -> None:
    srv, _ = loaded
    union: dict[tuple[str | None, str], Counter[Any]] = {}
    for name in NAMES:
        for key, want in _expected(name).items():
            union.setdefault((_tenant(name), key), Counter()).update(want)
    for (tenant, key), want in union.items():
        # An exact duplicate (same stream, ts and line) is stored once, as Loki does.
        want = Counter(dict.fromkeys(want, 1))
        assert _stored(srv, tenant, json.loads(key)) == want


def test_pushing_the_same_body_again_stores_nothing_twice(loaded: Any) -> None:
    srv, _ = loaded
    before = _query_all(srv, "fixture-tenant", '{job=~".+"}')
    assert _push(srv, "promtail-1").status_code == 204
    after = _query_all(srv, "fixture-tenant", '{job=~".+"}')
    assert sum(len(r["values"]) for r in after) == sum(len(r["values"]) for r in before)


def test_labels_and_series_endpoints(loaded: Any) -> None:
    srv, _ = loaded
    h = {"X-Scope-OrgID": "fixture-tenant"}
    names = httpx.get(f"{srv.url}/loki/api/v1/labels", headers=h,
                      params={"start": WINDOW[0], "end": WINDOW[1]}).json()["data"]
    assert "job" in names and names == sorted(names)
    series = httpx.get(f"{srv.url}/loki/api/v1/series", headers=h, params={
        "match[]": '{job=~".+"}', "start": WINDOW[0], "end": WINDOW[1]}).json()["data"]
    assert series and all("job" in s for s in series)
    jobs = httpx.get(f"{srv.url}/loki/api/v1/label/job/values", headers=h,
                     params={"start": WINDOW[0], "end": WINDOW[1]}).json()["data"]
    assert jobs == sorted({s["job"] for s in series})
