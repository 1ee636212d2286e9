"""Push the bytes captured from real shippers and read them back through the Loki API."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.procs import FIXTURES, ServerProcess

PUSH = FIXTURES / "push"
NAMES = sorted(p.stem for p in PUSH.glob("*.body"))


def _push(srv: ServerProcess, name: str) -> httpx.Response:
    meta = json.loads((PUSH / f"{name}.json").read_text())
    headers = {k: v for k, v in meta["headers"].items()
               if k.lower() in ("content-type", "content-encoding", "x-scope-orgid")}
    return httpx.post(f"{srv.url}/loki/api/v1/push", content=(PUSH / f"{name}.body").read_bytes(),
                      headers=headers, timeout=10)


def _query_all(srv: ServerProcess, tenant: str | None, selector: str) -> list[dict[str, Any]]:
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", headers=headers, timeout=10, params={
        "query": selector, "start": "1", "end": str(4 * 10**18), "limit": "5000",
        "direction": "forward"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "streams"
    return list(body["data"]["result"])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # The fixtures carry real 2026-11-23 timestamps: accept old samples as the README says.
    cfg = tmp_path_factory.mktemp("cfg") / "s.yaml"
    cfg.write_text("limits:\n  reject_old_samples: false\n  creation_grace_period: 1000d\n")
    srv = ServerProcess(tmp_path_factory.mktemp("srv") / "data", config=cfg).start()
    statuses = {name: _push(srv, name).status_code for name in NAMES}
    yield srv, statuses
    srv.stop()


@pytest.mark.parametrize("name", NAMES)
def test_fixture_push_is_stored_exactly(loaded: Any, name: str) -> None:
    srv, statuses = loaded
    meta = json.loads((PUSH / f"{name}.json").read_text())
    assert statuses[name] == 204 == meta.get("lokiPushStatus", 204)
    expected = json.loads((PUSH / f"{name}.expected.json").read_text())
    tenant = next((v for k, v in meta["headers"].items() if k.lower() == "x-scope-orgid"), None)
    for stream in expected["streams"]:
        sel = "{" + ", ".join(f'{k}="{json.dumps(v)[1:-1]}"'
                              for k, v in stream["labelsMap"].items()) + "}"
        got = _query_all(srv, tenant, sel)
        # Structured metadata comes back merged into the labels, one stream per label set.
        entries = sorted(
            ((ts, line, {k: v for k, v in r["stream"].items() if k not in stream["labelsMap"]})
             for r in got for ts, line in r["values"]),
            key=lambda e: int(e[0]))
        want = [(e["ts"], e["line"], e.get("structuredMetadata") or {})
                for e in stream["entries"]]
        assert sorted(entries, key=lambda e: (int(e[0]), e[1])) == \
            sorted(want, key=lambda e: (int(e[0]), e[1]))


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
                      params={"start": "1", "end": str(4 * 10**18)}).json()["data"]
    assert "job" in names and names == sorted(names)
    series = httpx.get(f"{srv.url}/loki/api/v1/series", headers=h, params={
        "match[]": '{job=~".+"}', "start": "1", "end": str(4 * 10**18)}).json()["data"]
    assert series and all("job" in s for s in series)
    jobs = httpx.get(f"{srv.url}/loki/api/v1/label/job/values", headers=h,
                     params={"start": "1", "end": str(4 * 10**18)}).json()["data"]
    assert jobs == sorted({s["job"] for s in series})
