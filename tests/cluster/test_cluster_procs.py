"""Cluster mode with real processes: nats-server (JetStream, store dirs in tmp) and
`sluiceway server --cluster` processes on loopback ports.

- two Sluiceway processes on one nats-server answer every query the same, unflushed
  lines included, and the data of a process that is SIGKILLed is served by the other
  (its partitions move and replay from the recorded sequence);
- `/ready` answers 503 while NATS is unreachable and 200 once it is up;
- THE test of issue 13: a 3-node nats-server cluster and 3 Sluiceway processes,
  concurrent pushes through all of them, one NATS node and one Sluiceway process
  SIGKILLed mid-stream: every acked line is returned exactly once by a query on each
  surviving process, pushes go on being accepted (the seconds of non-204 answers are
  printed), and the killed process, restarted, rejoins and serves the same answers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.natsprocs import NatsCluster, NatsNode, cluster_config, nats_or_skip
from tests.procs import ServerProcess

pytestmark = pytest.mark.timeout(240)
S = 10**9


def _push(url: str, lines: list[tuple[str, int, str]], timeout: float = 10) -> int:
    """Push (app, ts, line) entries as Loki JSON; the HTTP status (0: no answer)."""
    streams: dict[str, list[list[str]]] = {}
    for app, ts, line in lines:
        streams.setdefault(app, []).append([str(ts), line])
    body = {"streams": [{"stream": {"app": app, "job": "cluster-test"}, "values": v}
                        for app, v in streams.items()]}
    try:
        return httpx.post(f"{url}/loki/api/v1/push", json=body, timeout=timeout).status_code
    except httpx.HTTPError:
        return 0


def _lines(url: str, start: int, end: int) -> Counter[str] | None:
    """Every line of {job="cluster-test"} in [start, end) with its count (None: no
    answer). Forward, in pages, so no limit cuts it."""
    out: Counter[str] = Counter()
    since = start
    while True:
        try:
            r = httpx.get(f"{url}/loki/api/v1/query_range", timeout=30, params={
                "query": '{job="cluster-test"}', "start": str(since), "end": str(end),
                "limit": "5000", "direction": "forward"})
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            assert r.status_code in (429, 503, 504), r.text  # never a 500 or a 400
            return None
        values = sorted((int(ts), line) for s in r.json()["data"]["result"]
                        for ts, line in s["values"])
        for _, line in values:
            out[line] += 1
        if len(values) < 5000:
            return out
        # Next page after the last whole timestamp (lines at the cut one come again).
        last = values[-1][0]
        for ts, line in values:
            if ts == last:
                out[line] -= 1
        since = last


def _meta(url: str, start: int, end: int) -> tuple[object, ...]:
    p = {"start": str(start), "end": str(end)}
    q = {**p, "query": '{job="cluster-test"}'}
    labels = httpx.get(f"{url}/loki/api/v1/labels", params=p, timeout=30).json()["data"]
    values = httpx.get(f"{url}/loki/api/v1/label/app/values", params=p,
                       timeout=30).json()["data"]
    series = sorted(tuple(sorted(s.items())) for s in httpx.get(
        f"{url}/loki/api/v1/series", params={**p, "match[]": '{job="cluster-test"}'},
        timeout=30).json()["data"])
    count = httpx.get(f"{url}/loki/api/v1/query", timeout=30, params={
        "query": 'sum by (app) (count_over_time({job="cluster-test"}[1h]))',
        "time": str(end)}).json()["data"]["result"]
    volume = httpx.get(f"{url}/loki/api/v1/index/volume", params=q, timeout=30).json()
    return (labels, values, series, sorted((r["metric"]["app"], r["value"][1]) for r in count),
            sorted((r["metric"].get("app", ""), r["value"][1])
                   for r in volume["data"]["result"]))


def _poll(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not in {timeout:g}s: {what}"
        time.sleep(0.5)


def _node(tmp: Path, name: str, urls: str, **cluster: object) -> ServerProcess:
    cfg = cluster_config(tmp / f"{name}.yaml", urls, **cluster)
    return ServerProcess(tmp / name, config=cfg)


def test_two_processes_answer_the_same_including_unflushed_lines(
        nats: NatsNode, tmp_path: Path) -> None:
    a = _node(tmp_path, "a", nats.url).start(60)
    b = _node(tmp_path, "b", nats.url).start(60)
    try:
        t0 = time.time_ns()
        sent: set[str] = set()
        for i in range(40):
            url = (a, b)[i % 2].url
            batch = [(f"app{(i + k) % 5}", t0 + i * 1000 + k, f"line {i}-{k}") for k in range(3)]
            assert _push(url, batch) == 204
            sent |= {line for _, _, line in batch}
        start, end = t0 - S, t0 + 60 * S
        # Nothing was flushed (chunks are cut after 30 min idle): every line is in some
        # process's heads, and each process sees the other's through NATS.
        for srv in (a, b):
            _poll(lambda s=srv: _lines(s.url, start, end) == Counter(dict.fromkeys(sent, 1)),
                  30, f"all {len(sent)} lines once on {srv.url}")
        assert _meta(a.url, start, end) == _meta(b.url, start, end)
        def cluster_figures(srv: ServerProcess) -> dict[str, float]:
            text = httpx.get(f"{srv.url}/metrics", timeout=10).text
            return {k: float(v) for k, v in (x.split() for x in text.splitlines()
                                             if x.startswith("sluiceway_cluster_"))}

        for srv in (a, b):
            figures = cluster_figures(srv)
            assert figures["sluiceway_cluster_published_total"] >= 20  # 20 pushes each
            assert figures["sluiceway_cluster_publish_failures_total"] == 0
        # Every partition has one owner (once a partition moving from a to b as b joined
        # has been taken: released by one, not yet acquired by the other, it has none).
        _poll(lambda: sum(cluster_figures(srv)["sluiceway_cluster_partitions_owned"]
                          for srv in (a, b)) == 6, 30, "6 partitions owned")
        # One flushes to the object store: the answers stay the same on both.
        assert httpx.post(f"{a.url}/flush", timeout=60).status_code == 204
        for srv in (a, b):
            got = _lines(srv.url, start, end)
            assert got == Counter(dict.fromkeys(sent, 1)), (srv.url, a.url, len(got or ()))
        assert _meta(a.url, start, end) == _meta(b.url, start, end)
        # SIGKILL b: the lines it held in memory only are replayed by a from JetStream.
        b.kill()
        _poll(lambda: _lines(a.url, start, end) == Counter(dict.fromkeys(sent, 1)), 60,
              "all lines once on a after b died")
        assert _push(a.url, [("app0", t0 + 10**6, "after the kill")]) == 204
        _poll(lambda: (_lines(a.url, start, end) or Counter())["after the kill"] == 1, 30,
              "a new line on a")
    finally:
        a.stop()
        b.stop()


def test_ready_is_503_until_nats_is_reachable(tmp_path: Path) -> None:
    binary = nats_or_skip()
    late = NatsNode(binary, tmp_path / "late")
    late.stop()  # its port is known; NATS comes up only later
    srv = _node(tmp_path, "s", late.url)
    with pytest.raises(RuntimeError, match="not ready"):
        srv.start(4)
    try:
        def answers() -> bool:
            try:
                return httpx.get(f"{srv.url}/ready", timeout=5).status_code == 503
            except httpx.HTTPError:
                return False  # not listening yet (a slow start on a loaded machine)

        _poll(answers, 60, "/ready answering 503")
        _poll(lambda: "retrying" in srv.log(), 30, "the retry log line")
        r = httpx.get(f"{srv.url}/loki/api/v1/labels", timeout=5)
        assert r.status_code == 503, r.text
        assert "NATS at" in srv.log() and "unreachable" in srv.log()
        late.start()
        srv.wait_ready(60)
        assert _push(srv.url, [("x", time.time_ns(), "hello")]) == 204
    finally:
        srv.stop()
        late.stop()


def test_three_nats_three_sluiceway_sigkill_one_of_each(tmp_path: Path) -> None:
    nc = NatsCluster(nats_or_skip(), tmp_path / "nats", 3)
    nodes = [_node(tmp_path, f"s{i}", nc.urls) for i in range(3)]
    try:
        for n in nodes:
            n.start(90)
        t0 = time.time_ns()
        acked: set[str] = set()
        lock = threading.Lock()
        stop = threading.Event()
        outage: dict[int, float] = {}  # pusher -> seconds without a 204
        alive = [True, True, True]

        def pusher(w: int) -> None:
            i = 0
            down_since: float | None = None
            outage[w] = 0.0
            while not stop.is_set():
                batch = [(f"app{(w + k) % 4}", t0 + (i * 8 + k) * 1000 + w, f"w{w}-{i}-{k}")
                         for k in range(5)]
                # Through "its" node while it lives, else the next one (a load balancer).
                target = next(n for j, n in enumerate(nodes[w:] + nodes[:w])
                              if alive[(w + j) % 3])
                status = _push(target.url, batch, timeout=15)
                now = time.monotonic()
                if status == 204:
                    with lock:
                        acked.update(line for _, _, line in batch)
                    if down_since is not None:
                        outage[w] += now - down_since
                        down_since = None
                    i += 1
                else:  # retried as it was (same ids: deduplicated if it was stored)
                    down_since = down_since if down_since is not None else now
                    time.sleep(0.2)
            if down_since is not None:
                outage[w] += time.monotonic() - down_since

        threads = [threading.Thread(target=pusher, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        _poll(lambda: len(acked) >= 150, 60, "pushes acked before the kills")
        nc.nodes[1].kill()  # a NATS server: streams keep a quorum of 2 of 3
        alive[2] = False
        nodes[2].kill()  # a Sluiceway process: its partitions move to the others
        before = len(acked)
        _poll(lambda: len(acked) >= before + 200, 90, "pushes acked after the kills")
        stop.set()
        for t in threads:
            t.join(60)
        print(f"\nseconds without a 204, per pusher: "
              f"{', '.join(f'{s:.1f}' for s in outage.values())}; "
              f"{len(acked)} lines acked")
        start, end = t0 - S, time.time_ns() + 60 * S
        want = Counter(dict.fromkeys(acked, 1))

        def exactly_once(srv: ServerProcess) -> bool:
            got = _lines(srv.url, start, end)
            if got is None:
                return False
            missing = [x for x in acked if got[x] != 1]
            twice = [x for x, n in got.items() if n > 1]
            return not missing and not twice

        for srv in nodes[:2]:
            _poll(lambda s=srv: exactly_once(s), 90, f"every acked line once on {srv.url}")
        # The killed process comes back (same data dir), rejoins and serves.
        nodes[2].start(90)
        _poll(lambda: exactly_once(nodes[2]), 90, "every acked line once on the restarted")
        # Still once on the first node after the rejoin (a busy machine may time a query
        # out meanwhile: asked again).
        _poll(lambda: exactly_once(nodes[0]), 90, "every acked line once after the rejoin")
        assert set(want) <= set(_lines(nodes[0].url, start, end) or want)
        assert _push(nodes[2].url, [("app0", t0 + 10**6, "after rejoining")]) == 204
        for srv in nodes:
            _poll(lambda s=srv: (_lines(s.url, start, end) or Counter())["after rejoining"] == 1,
                  30, f"the new line on {srv.url}")
    finally:
        for n in nodes:
            n.stop()
        nc.stop()
