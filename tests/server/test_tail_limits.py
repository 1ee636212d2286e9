"""Live tail limits, on the server's own websocket stack (uvicorn on a real socket, in
process): Loki's `max_concurrent_tail_requests`, the history query under `query_timeout`,
and a client that stops reading: its session holds a bounded number of bytes, the client
later gets Loki's `dropped_entries`, and the buffer is freed when the client goes."""

from __future__ import annotations

import itertools
import json
import socket
import struct
from contextlib import ExitStack
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.inproc import InProcServer, inproc_server, wait_for

LOKI_TIMEOUT = ("request timed out, decrease the duration of the request or add more label "
                "matchers (prefer exact match over regex match) to reduce the amount of data "
                "processed")


def _tail(srv: InProcServer, query: str, tenant: str | None = None,
          **kw: object) -> ClientConnection:
    headers = {"X-Scope-OrgID": tenant} if tenant else None
    return connect(srv.ws_url({"query": query}), additional_headers=headers, open_timeout=10,
                   **kw)  # type: ignore[arg-type]


def _sessions(srv: InProcServer, tenant: str = "fake") -> float:
    return srv.metric("sluiceway_tail_sessions", f'tenant="{tenant}"')


def _lines(frame: dict[str, object]) -> list[str]:
    return [v[1] for s in frame["streams"] for v in s["values"]]  # type: ignore[attr-defined]


def _closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as err:
        ws.recv(timeout=10)
    assert err.value.rcvd is not None
    return err.value.rcvd.code, err.value.rcvd.reason


def test_the_eleventh_tail_of_a_tenant_is_refused(tmp_path: Path) -> None:
    with inproc_server(tmp_path / "data") as srv, ExitStack() as stack:
        tails = [stack.enter_context(_tail(srv, '{app="t"}', "a")) for _ in range(10)]
        srv.push({"app": "t"}, ["for tenant a"], tenant="a")
        for ws in tails:  # each of the ten is open and gets the line
            assert _lines(json.loads(ws.recv(timeout=10))) == ["for tenant a"]
        with _tail(srv, '{app="t"}', "a") as eleventh:  # an open tail would get it as well
            assert _closed_with(eleventh) == (
                1011, "max concurrent tail requests limit exceeded, count > limit (11 > 10)")
        assert srv.metric("sluiceway_tail_refused_total", 'tenant="a"') == 1
        with _tail(srv, '{app="t"}', "b") as other:  # another tenant is not limited
            srv.push({"app": "t"}, ["for tenant b"], tenant="b")
            assert _lines(json.loads(other.recv(timeout=10))) == ["for tenant b"]
        tails[0].close()  # a place is free again
        wait_for(lambda: _sessions(srv, "a") == 9, "a tail of tenant a to end")
        with _tail(srv, '{app="t"}', "a") as again:
            assert _lines(json.loads(again.recv(timeout=10))) == ["for tenant a"]  # history
            srv.push({"app": "t"}, ["again"], tenant="a")
            assert _lines(json.loads(again.recv(timeout=10))) == ["again"]


def test_the_history_query_honours_query_timeout(tmp_path: Path) -> None:
    with inproc_server(tmp_path / "data", query_timeout=60.0) as srv:
        srv.push({"app": "h"}, [f"line {i}" for i in range(10)])
        with _tail(srv, '{app="h"}') as ws:  # the history is there...
            assert len(_lines(json.loads(ws.recv(timeout=10)))) == 10
        wait_for(lambda: _sessions(srv) == 0, "the first tail to end")
        clock = itertools.count(0, 100)  # ...but time now runs 100 s per look at the clock
        srv.ctx.clock = lambda: float(next(clock))
        with _tail(srv, '{app="h"}') as ws:
            code, reason = _closed_with(ws)
        assert code == 1011 and reason == LOKI_TIMEOUT.encode()[:123].decode()
        wait_for(lambda: _sessions(srv) == 0, "the timed-out tail to be closed")


LINES_PER_PUSH = 64  # of 1 KB: 64 KB per push


def _stalling_tail(srv: InProcServer, query: str) -> tuple[ClientConnection, socket.socket]:
    """A tail client that reads nothing while a frame waits for recv() (max_queue=1), over
    a socket with a small fixed receive buffer and no compression, so the server's
    socket buffers fill after a few MB instead of tens."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", srv.port))
    ws = connect(srv.ws_url({"query": query}), sock=sock, open_timeout=10, max_queue=1,
                 max_size=None, compression=None, close_timeout=1)
    return ws, sock


def _push_stalled(srv: InProcServer, pushed: list[int], tag: str) -> None:
    pushed += srv.push({"job": "stall"}, [f"{tag} {i} " + "x" * 1000
                                          for i in range(LINES_PER_PUSH)])


def _push_until_dropping(srv: InProcServer, pushed: list[int], tag: str) -> None:
    """Push until the session has dropped something: the client reads nothing, so the
    socket buffers fill, then the session's own buffer."""
    before = srv.metric("sluiceway_tail_dropped_entries_total", 'tenant="fake"')
    for n in itertools.count():
        assert n < 1000, "the session never dropped anything"
        _push_stalled(srv, pushed, f"{tag} {n}")
        if srv.metric("sluiceway_tail_dropped_entries_total", 'tenant="fake"') > before:
            return


def test_a_stalled_client_holds_a_bounded_buffer_and_gets_dropped_entries(
        tmp_path: Path) -> None:
    limit = 256 * 1024
    with inproc_server(tmp_path / "data", max_tail_buffer_size=limit) as srv:
        ws, _ = _stalling_tail(srv, '{job="stall"}')
        with ws:
            wait_for(lambda: _sessions(srv) == 1, "the tail session")
            pushed: list[int] = []
            _push_until_dropping(srv, pushed, "a")
            for n in range(30):  # still stalled: the session's bytes stay within the bound
                _push_stalled(srv, pushed, f"b {n}")
                assert 0 < srv.metric("sluiceway_tail_buffered_bytes") <= limit
            pushed += srv.push({"job": "stall"}, ["the end"])
            dropped = srv.metric("sluiceway_tail_dropped_entries_total", 'tenant="fake"')
            assert dropped >= 30 * LINES_PER_PUSH - limit // 1000  # nearly all of those

            got: list[str] = []
            listed: list[dict[str, object]] = []
            while "the end" not in got:  # the client reads again
                frame = json.loads(ws.recv(timeout=30))
                got += _lines(frame)
                listed += frame.get("dropped_entries", [])
        # Every line is either delivered or counted as dropped; Loki's dropped_entries
        # name them (labels, ns timestamp), at most 1,000 per frame.
        assert len(got) + dropped == len(pushed)
        assert 0 < len(listed) <= dropped
        assert all(e["labels"] == {"job": "stall"} for e in listed)
        assert {int(str(e["timestamp"])) for e in listed} <= set(pushed)
        wait_for(lambda: _sessions(srv) == 0 and srv.metric("sluiceway_tail_buffered_bytes")
                 == 0, "the session and its buffer to go")

        # A stalled client that dies (its socket is reset, as when its process is killed
        # with unread data): its session and buffer go with it.
        gone, sock = _stalling_tail(srv, '{job="stall"}')
        with gone:
            wait_for(lambda: _sessions(srv) == 1, "the second tail session")
            _push_until_dropping(srv, pushed, "c")
            assert srv.metric("sluiceway_tail_buffered_bytes") > 0
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            wait_for(lambda: _sessions(srv) == 0 and
                     srv.metric("sluiceway_tail_buffered_bytes") == 0,
                     "the vanished client's session and buffer to go")
