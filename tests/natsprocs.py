"""Real `nats-server` processes for cluster tests: one server with JetStream, or a
cluster of them (routes on loopback ports), each with its JetStream store in a temp dir.
Reusable by every cluster test: `nats_or_skip()`, `NatsNode`, `NatsCluster`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.objservers import nats_server_binary
from tests.procs import POLL, ServerProcess, _die_with_test_process, free_port


def nats_or_skip() -> str:
    """The nats-server binary; the test is skipped only when there is none (CI installs
    it: scripts/install-system-deps.sh)."""
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server is not installed (scripts/install-system-deps.sh)")
    return binary


class NatsNode:
    """One nats-server with JetStream; in a cluster when `routes` are given. Restartable
    over the same store dir and ports (`start` after `kill`)."""

    def __init__(self, binary: str, tmp: Path, name: str = "n1", cluster: str = "",
                 cluster_port: int = 0, routes: list[int] | None = None) -> None:
        self.binary, self.dir, self.name = binary, tmp, name
        tmp.mkdir(parents=True, exist_ok=True)
        self.port, self.monitor = free_port(), free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        lines = [f"server_name: {name}", f"listen: 127.0.0.1:{self.port}",
                 f"http: 127.0.0.1:{self.monitor}",
                 f'jetstream {{ store_dir: "{tmp / "js"}" }}']
        if cluster:
            peers = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes or [])
            lines.append(f"cluster {{ name: {cluster}, listen: 127.0.0.1:{cluster_port}, "
                         f"routes: [{peers}] }}")
        self.conf = tmp / "nats.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        out = open(self.dir / "nats.log", "ab")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_test_process)

    def healthy(self, js: bool = True) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        url = f"http://127.0.0.1:{self.monitor}/healthz"
        try:
            return POLL.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server {self.name} not healthy:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return (self.dir / "nats.log").read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class NatsCluster:
    """`n` nats-servers with JetStream forming one cluster over loopback routes."""

    def __init__(self, binary: str, tmp: Path, n: int = 3, name: str = "sw") -> None:
        ports = [free_port() for _ in range(n)]
        self.nodes = [NatsNode(binary, tmp / f"n{i + 1}", f"n{i + 1}", name, ports[i],
                               [p for j, p in enumerate(ports) if j != i]) for i in range(n)]
        for node in self.nodes:
            node.wait_healthy()

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def single_node(binary: str, tmp: Path) -> NatsNode:
    node = NatsNode(binary, tmp)
    node.wait_healthy()
    return node


def cluster_config(path: Path, urls: str, sections: dict[str, object] | None = None,
                   **cluster: object) -> Path:
    """A server config for a cluster process: fast failover and index sync for tests,
    no ingest worker processes (fewer processes on a shared 2-core machine); `sections`:
    more top-level sections (`limits`, `ruler`, ...)."""
    import yaml

    section: dict[str, object] = {"urls": urls, "partitions": 6, "partitions_per_stream": 2,
                                  "lease_ttl": "3s", "timeout": "3s"}
    section.update(cluster)
    path.write_text(yaml.safe_dump({
        "cluster": section,
        "storage": {"index_sync_period": "2s"},
        "server": {"ingest_workers": 0},
        **(sections or {}),
    }))
    return path


class ProcCluster:
    """One nats-server and a `sluiceway server --cluster` process on it for each
    `(name, role)` (role None: the default, `all`), started; `sections` and `cluster` as
    `cluster_config` takes them, for every process."""

    def __init__(self, tmp: Path, nodes: list[tuple[str, str | None]], name_prefix: str,
                 sections: dict[str, object] | None = None, **cluster: object) -> None:
        self.nats = single_node(nats_or_skip(), tmp / "nats")
        self.nodes: list[ServerProcess] = []
        for name, role in nodes:
            more = dict(cluster, **({"role": role} if role else {}))
            cfg = cluster_config(tmp / f"{name}.yaml", self.nats.url, sections,
                                 name_prefix=name_prefix, replicas=1, **more)
            self.nodes.append(ServerProcess(tmp / name, config=cfg))
        for n in self.nodes:
            n.start(90)

    def logs(self) -> str:
        return "\n".join(n.log()[-3000:] for n in self.nodes)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        self.nats.stop()
