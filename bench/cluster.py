"""Cluster mode figures (not test assertions), on this machine:

1. ingest: the same pushes (Loki protobuf+snappy, `--conns` connections, closed loop: the
   stated rate is as fast as the processes take them) into single-node mode and into a
   cluster of 1, 2 and 3 `sluiceway server --cluster` processes on one nats-server
   (JetStream, replicas 1); the connections are spread over the processes. Reported:
   MB/s and lines/s until every push was answered 204, and until every line is visible
   to a query on the first process; CPU-seconds of the Sluiceway processes and of NATS;
2. failover: in the 2-process cluster, one process is SIGKILLed right after a burst of
   acked lines; the time until every partition has a live owner again, and until a query
   on the survivor returns every line of the burst (its partitions replayed);
3. 204-to-visible: single lines pushed through one process and polled for on another
   (a query 5 ms after the previous answer): the delay from the 204 to the start of the
   first query whose answer holds the line, p50/p99 (its resolution is one query's time).

Usage: python bench/cluster.py [--bytes 40MB] [--conns 6] [--samples 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.ingest import count_lines, cpu_seconds, prepare, send_all  # noqa: E402
from sluiceway.model import parse_size  # noqa: E402
from tests.natsprocs import NatsNode, cluster_config, nats_or_skip  # noqa: E402
from tests.procs import ServerProcess  # noqa: E402

S = 10**9


def _push_spread(urls: list[str], bodies: list[bytes], conns: int) -> float:
    """Every body pushed, `conns` connections spread over `urls`; seconds taken."""
    groups: list[list[bytes]] = [[] for _ in urls]
    for i, b in enumerate(bodies):
        groups[i % len(urls)].append(b)
    per = max(1, conns // len(urls))
    started = time.perf_counter()
    threads = [threading.Thread(target=send_all, args=(u, g, per))
               for u, g in zip(urls, groups, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def _wait_visible(url: str, lines: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while count_lines(url) < lines:
        if time.monotonic() > deadline:
            raise SystemExit(f"not every line became visible on {url} in {timeout:g}s")
        time.sleep(0.2)


def _cpu(procs: list[int]) -> float:
    return sum(sum(cpu_seconds(p)) for p in procs)


def _nats(tmp: Path) -> NatsNode:
    node = NatsNode(nats_or_skip(), tmp)
    node.wait_healthy()
    return node


def _cluster(tmp: Path, n: int, nats: NatsNode, prefix: str) -> list[ServerProcess]:
    nodes = []
    tmp.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cfg = cluster_config(tmp / f"s{i}.yaml", nats.url, name_prefix=prefix, replicas=1,
                             partitions=16, partitions_per_stream=4)
        nodes.append(ServerProcess(tmp / f"s{i}", config=cfg))
    for node in nodes:
        node.start(120)
    return nodes


def _ingest(label: str, urls: list[str], pids: list[int], nats_pid: int | None,
            bodies: list[bytes], raw: int, lines: int, conns: int) -> None:
    cpu0 = _cpu(pids)
    ncpu0 = _cpu([nats_pid]) if nats_pid else 0.0
    started = time.perf_counter()
    acked = _push_spread(urls, bodies, conns)
    _wait_visible(urls[0], lines)
    visible = time.perf_counter() - started
    cpu = _cpu(pids) - cpu0
    ncpu = (_cpu([nats_pid]) - ncpu0) if nats_pid else 0.0
    print(f"{label:<22} acked {raw / acked / 1e6:6.1f} MB/s {lines / acked:9,.0f} lines/s"
          f" | visible {raw / visible / 1e6:6.1f} MB/s | CPU s: sluiceway {cpu:6.1f}"
          f" nats {ncpu:5.1f}", flush=True)


def _probe(url: str, tag: str) -> int:
    """Lines of the probe `tag` a query on `url` returns (-1: no answer)."""
    try:
        r = httpx.get(f"{url}/loki/api/v1/query_range", timeout=10, params={
            "query": f'{{job="probe"}} |= "{tag}"', "limit": "5000",
            "start": str(time.time_ns() - 600 * S), "end": str(time.time_ns() + S)})
    except httpx.HTTPError:
        return -1
    if r.status_code != 200:
        return -1
    return sum(len(s["values"]) for s in r.json()["data"]["result"])


def _push_probe(url: str, tag: str, n: int, app: str = "p") -> None:
    t = time.time_ns()
    body = {"streams": [{"stream": {"job": "probe", "app": f"{app}{k % 32}"},
                         "values": [[str(t + k), f"{tag} {k}"]]} for k in range(n)]}
    r = httpx.post(f"{url}/loki/api/v1/push", json=body, timeout=30)
    if r.status_code != 204:
        raise SystemExit(f"probe push: {r.status_code} {r.text}")


def _balanced(url: str, n: int) -> bool:
    try:
        doc = httpx.get(f"{url}/cluster/status", timeout=10).json()["data"]
    except (httpx.HTTPError, KeyError, ValueError):
        return False
    parts = doc.get("partitions") or []
    owners: dict[str, int] = {}
    for p in parts:
        owners[p["owner"]] = owners.get(p["owner"], 0) + 1
    return len(owners) == n and None not in owners and \
        min(owners.values()) >= len(parts) // n - 1


def _failover(nodes: list[ServerProcess]) -> None:
    survivor, victim = nodes
    deadline = time.monotonic() + 120
    while not _balanced(survivor.url, 2):  # the victim owns its share of partitions
        if time.monotonic() > deadline:
            raise SystemExit("partitions not balanced over the 2 processes in 120 s")
        time.sleep(0.5)
    tag = f"burst-{time.time_ns()}"
    _push_probe(victim.url, tag, 400, "burst")  # 32 streams: most partitions
    victim.kill()
    died = time.perf_counter()
    owned_at = served_at = None
    first_short: tuple[float, int] | None = None
    while owned_at is None or served_at is None:
        if time.perf_counter() - died > 300:
            raise SystemExit("failover took over 300 s")
        if served_at is None:
            seen = _probe(survivor.url, tag)
            answered = time.perf_counter()  # a query waits for a dead member's heads
            if seen == 400:
                served_at = answered
            elif first_short is None:
                first_short = (answered - died, seen)
        if owned_at is None:
            asked = time.perf_counter()
            try:
                doc = httpx.get(f"{survivor.url}/cluster/status", timeout=10).json()["data"]
                live = {m["id"] for m in doc["members"] or []}
                parts = doc["partitions"] or []
                if parts and all(p["owner"] in live for p in parts) and len(live) == 1:
                    owned_at = asked
            except (httpx.HTTPError, KeyError, TypeError):
                pass
        time.sleep(0.05)
    print(f"failover (SIGKILL of 1 of 2): /cluster/status shows every partition owned by "
          f"the survivor after {owned_at - died:.1f} s (read every 5 s); every acked line "
          f"of the burst in an answer by {served_at - died:.1f} s (lease_ttl 3 s, heads timeout "
          "3 s)" + (f"; an answer at {first_short[0]:.1f} s held {first_short[1]} of 400"
                    if first_short else "; the first answer after the kill held all 400"),
          flush=True)


def _delays(push_url: str, read_url: str, samples: int, label: str) -> None:
    out: list[float] = []
    for i in range(samples):
        tag = f"vis-{time.time_ns()}-{i}"
        _push_probe(push_url, tag, 1)
        acked = time.perf_counter()
        while True:
            asked = time.perf_counter()
            if _probe(read_url, tag) == 1:
                break
            if asked - acked > 60:
                raise SystemExit(f"{tag} not visible in 60 s")
            time.sleep(0.005)
        out.append(asked - acked)  # when the query that found it was sent
    out.sort()
    p99 = out[min(len(out) - 1, int(len(out) * 0.99))]
    print(f"204-to-visible {label}: p50 {statistics.median(out) * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms ({samples} lines; the start of the query that found it, "
          "polled every 5 ms after the previous answer)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bytes", default=os.environ.get("BENCH_BYTES", "40MB"))
    ap.add_argument("--batch-lines", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=6)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--sizes", default="1,2,3", help="cluster sizes to run")
    args = ap.parse_args()
    bodies, raw, lines = prepare(parse_size(args.bytes), args.batch_lines)
    print(f"{lines:,} lines, {raw / 1e6:.1f} MB raw, {len(bodies)} pushes over {args.conns} "
          f"connections; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as d:
        tmp = Path(d)
        single = ServerProcess(tmp / "single").start(120)
        try:
            assert single.proc is not None
            _ingest("single-node", [single.url], [single.proc.pid], None, bodies, raw,
                    lines, args.conns)
            _delays(single.url, single.url, args.samples, "single-node")
        finally:
            single.stop()
        for n in (int(x) for x in args.sizes.split(",")):
            nats = _nats(tmp / f"nats{n}")
            nodes = _cluster(tmp / f"c{n}", n, nats, f"b{n}-")
            try:
                assert nats.proc is not None
                _ingest(f"cluster, {n} process{'es' if n > 1 else ''}",
                        [x.url for x in nodes], [x.proc.pid for x in nodes if x.proc],
                        nats.proc.pid, bodies, raw, lines, args.conns)
                if n >= 2:
                    _delays(nodes[0].url, nodes[1].url, args.samples,
                            f"cluster of {n}, pushed to one, read on another")
                if n == 2:
                    _failover(nodes)
            finally:
                for x in nodes:
                    x.stop()
                nats.stop()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
