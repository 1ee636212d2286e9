"""Replay the deletion group recorded against a real Loki (fixtures README, "Recorded
2026-12-04"), in its order, against a real server with the same kind of config: the
data set pushed at our own base (an hour or two ago, in Loki's phase), requests made,
listed, cancelled and refused with Loki's statuses, texts and shapes, the compactor run
until the request is `processed`, then the queries after it compared with Loki's.

One difference is deliberate: Loki's querier learns of a request late (its answer right
after the request, `delete_query_range_pending`, still holds the 18 lines); here the
lines leave every answer as soon as the request is accepted, so that recording is
compared with Loki's answer after processing. Loki's cancel period was 10 s; ours is 1 s
to keep the test short (what it changes is only when the compactor may remove)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import FIXTURES, ServerProcess
from tests.replay import base_near_now, push_dataset

RESP = FIXTURES / "responses"
DATASET = json.loads((RESP / "dataset.json").read_text())
CONFIG = """limits:
  discover_log_levels: false
  deletion_mode: filter-and-delete
compactor:
  retention_enabled: true
  delete_request_cancel_period: 1s
  retention_delete_delay: 1m
"""


def _recorded(name: str) -> dict[str, Any]:
    req: dict[str, Any] = json.loads((RESP / f"{name}.request.json").read_text())
    return req


LOKI_BASE = int(_recorded("delete_create")["baseNs"])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    base = base_near_now(LOKI_BASE)
    tmp = tmp_path_factory.mktemp("deletion")
    (tmp / "loki.yaml").write_text(CONFIG)
    srv = ServerProcess(tmp / "data", config=tmp / "loki.yaml").start()
    push_dataset(srv.url, DATASET, base)
    assert httpx.post(f"{srv.url}/flush").status_code == 204  # as Loki's recording did
    yield srv, base
    srv.stop()


def _send(srv: ServerProcess, base: int, name: str,
          ids: dict[str, str] | None = None) -> tuple[dict[str, Any], httpx.Response]:
    """The recorded request at our base: times Loki got in seconds are sent in seconds,
    those it got in ns (to be refused) in ns; request ids are ours for Loki's."""
    req = _recorded(name)
    params = dict(req["params"])
    for k, rel in req.get("relativeParams", {}).items():
        ns = base + int(rel)
        params[k] = str(ns // 10**9) if len(str(params.get(k, ""))) == 10 else str(ns)
    if "request_id" in params and ids is not None:
        params["request_id"] = ids.get(params["request_id"], params["request_id"])
    r = httpx.request(req["method"], f"{srv.url}{req['path']}", params=params)
    assert r.status_code == req["status"], (name, r.text)
    return req, r


def _text(req: dict[str, Any]) -> str:
    return (RESP / req["responseFile"]).read_text()


def _list_relative(reqs: list[dict[str, Any]], base_s: int, ids: dict[str, str]
                   ) -> list[dict[str, Any]]:
    """A request list with Loki's ids as keys, times from the base, no `created_at`."""
    back = {ours: loki for loki, ours in ids.items()}
    return [{**r, "request_id": back.get(r["request_id"], r["request_id"]),
             "start_time": r["start_time"] - base_s, "end_time": r["end_time"] - base_s,
             "created_at": None} for r in reqs]


def _streams_relative(answer: dict[str, Any], base: int) -> list[dict[str, Any]]:
    out = [{"stream": s["stream"], "values": [[int(v[0]) - base, v[1]] for v in s["values"]]}
           for s in answer["data"]["result"]]
    return sorted(out, key=lambda s: sorted(s["stream"].items()))


def _compare_query(srv: ServerProcess, base: int, name: str, loki_name: str) -> None:
    req, r = _send(srv, base, name)
    loki = json.loads(_text(_recorded(loki_name)))
    assert r.json()["data"]["resultType"] == loki["data"]["resultType"]
    assert _streams_relative(r.json(), base) == _streams_relative(loki, LOKI_BASE)


def test_deletion_group_replays(loaded: tuple[ServerProcess, int]) -> None:
    srv, base = loaded
    base_s, loki_s = base // 10**9, LOKI_BASE // 10**9
    ids: dict[str, str] = {}
    for name in ("delete_create", "delete_create_second"):
        req, r = _send(srv, base, name)
        assert r.text == _text(req) == ""
        ours = r.headers["X-Delete-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{8}", ours)
        ids[req["responseHeaders"]["X-Delete-Request-Id"]] = ours

    for name in ("delete_list_received",):
        req, r = _send(srv, base, name)
        assert r.headers["content-type"].startswith(req["contentType"])
        got = r.json()
        assert all(abs(x["created_at"] - time.time()) < 600 for x in got)
        assert _list_relative(got, base_s, ids) == _list_relative(
            json.loads(_text(req)), loki_s, {k: k for k in ids})

    req, r = _send(srv, base, "delete_cancel", ids)
    assert r.text == _text(req) == ""
    req, r = _send(srv, base, "delete_list_after_cancel")
    assert _list_relative(r.json(), base_s, ids) == _list_relative(
        json.loads(_text(req)), loki_s, {k: k for k in ids})

    for name in ("delete_cancel_unknown", "delete_create_future", "delete_create_no_query",
                 "delete_create_ns_time"):
        req, r = _send(srv, base, name)
        assert r.text == _text(req), name
        assert r.headers["content-type"].startswith("text/plain")

    # Loki still answered with the 18 lines here (see the module's doc); ours are gone.
    _compare_query(srv, base, "delete_query_range_pending",
                   "delete_query_range_filtered_after")

    deadline = time.monotonic() + 60
    while True:
        (mine,) = httpx.get(f"{srv.url}/loki/api/v1/delete").json()
        if mine["status"] == "processed":
            break
        assert time.monotonic() < deadline, "the request was never processed"
        time.sleep(0.2)
        assert httpx.post(f"{srv.url}/sluiceway/api/v1/compact", timeout=120).status_code == 200

    req, r = _send(srv, base, "delete_list_processed")
    assert _list_relative(r.json(), base_s, ids) == _list_relative(
        json.loads(_text(req)), loki_s, {k: k for k in ids})
    for name in ("delete_query_range_after", "delete_query_range_filtered_after"):
        _compare_query(srv, base, name, name)
    _, after = _send(srv, base, "delete_query_range_after")
    assert sum(len(s["values"]) for s in after.json()["data"]["result"]) == 82
    req, r = _send(srv, base, "delete_cancel_processed", ids)
    assert r.text == _text(req)


def test_every_deletion_recording_is_replayed() -> None:
    """A new recording of the group must be added to the replay above."""
    here = Path(__file__).read_text()
    names = sorted(p.name.removesuffix(".request.json")
                   for p in RESP.glob("delete_*.request.json"))
    before = ("delete_query_range_before", "delete_query_range_filtered_before")
    assert [n for n in names if f'"{n}"' not in here and n not in before] == []
