"""End to end: the Loki metric fixtures through a real server's HTTP API."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.logql_metric.helpers import load_json
from tests.logql_metric.test_fixtures import NAMES, ORIG_BASE, _shift_times
from tests.procs import ServerProcess

STEP_PHASE = 600 * 10**9


def _base() -> int:
    """Two hours ago, with the original base's phase against the 300 s / 600 s steps."""
    now = time.time_ns() - 2 * 3600 * 10**9
    return now - now % STEP_PHASE + ORIG_BASE % STEP_PHASE


TENANT = "fixtures"  # its own tenant, so the CLI tests on the same server never see it


@pytest.fixture(scope="module")
def served(shared_server: ServerProcess) -> tuple[str, int]:
    base = _base()
    data = load_json("dataset.json")
    streams = [{"stream": s["stream"],
                "values": [[str(base + int(v[0])), *v[1:]] for v in s["values"]]}
               for s in data["streams"]]
    r = httpx.post(f"{shared_server.url}/loki/api/v1/push", json={"streams": streams},
                   headers={"X-Scope-OrgID": TENANT})
    assert r.status_code == 204, r.text
    return shared_server.url, base


@pytest.mark.parametrize("name", NAMES)
def test_fixture_over_http(served: tuple[str, int], name: str) -> None:
    url, base = served
    req = load_json(f"{name}.request.json")
    params = dict(req["params"])
    for k, rel in req["relativeParams"].items():
        params[k] = str(base + int(rel))
    r = httpx.get(url + req["path"], params=params, headers={"X-Scope-OrgID": TENANT})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["status"] == "success"
    got["data"].pop("stats")
    want = load_json(f"{name}.response.json")["data"]
    want.pop("stats")
    assert got["data"] == _shift_times(want, (base - ORIG_BASE) // 10**9, name)
