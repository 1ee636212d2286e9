"""`HeartbeatRelay`: other processes' heartbeats passed on with a sender's identity; while
the target does not answer, only the newest of each reporter waits (bounded), and what a
failure left unsent is sent once the target answers. A real server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from sluiceway.ship import HeartbeatRelay, HeartbeatSender
from tests.inproc import inproc_server

log = logging.getLogger("test-relay")


def body(rid: str, name: str) -> bytes:
    return json.dumps({"id": rid, "kind": "client", "name": name, "token": f"t-{rid}",
                       "ts": time.time(), "queue": {"capacity": 1, "depth": 0,
                                                    "when_full": "drop"}}).encode()


def sender(url: str, tenant: str) -> HeartbeatSender:
    return HeartbeatSender(url, dict, lambda: httpx.Client(
        headers={"X-Scope-OrgID": tenant}, timeout=2), 1.0, threading.Event(), auto=True,
        log=log)


def names(srv: Any, tenant: str) -> dict[str, str]:
    rows = srv.http.get("/sluiceway/api/v1/pipeline",
                        headers={"X-Scope-OrgID": tenant}).json()["data"]
    return {r["id"]: r["name"] for r in rows}


def test_the_newest_of_each_reporter_waits_and_goes_once_the_target_answers(
        tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nobody listens on: the target is down
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"
    stop = threading.Event()
    relay = HeartbeatRelay(sender(down, "relay"), log, max_pending=3)
    for i in range(5):
        relay.offer("a", body("a", f"a{i}"))
    relay.offer("b", body("b", "b0"))
    relay.offer("c", body("c", "c0"))
    relay.offer("d", body("d", "d0"))  # a fourth reporter past max_pending: not kept
    assert relay.pending() == 3
    with relay.http() as client:
        assert relay.forward(client, stop)  # fails: everything is put back
    assert relay.pending() == 3
    relay.offer("b", body("b", "b1"))  # newer than what the failure put back
    with inproc_server(tmp_path / "data") as srv:
        relay.sender = sender(srv.url, "relay")
        with relay.http() as client:
            assert relay.forward(client, stop)
        assert relay.pending() == 0 and relay.relayed == 3
        assert names(srv, "relay") == {"a": "a4", "b": "b1", "c": "c0"}
        # The sender's identity: the tenant is the sender's, not the reporter's.
        assert names(srv, "fake") == {}


def test_a_plain_loki_turns_the_relay_off(tmp_path: Path) -> None:
    with inproc_server(tmp_path / "data") as srv:
        s = sender(srv.url + "/nowhere", "relay")  # answers 404, as a Loki would
        relay = HeartbeatRelay(s, log)
        relay.offer("a", body("a", "a0"))
        with relay.http() as client:
            assert relay.forward(client, threading.Event()) is False
