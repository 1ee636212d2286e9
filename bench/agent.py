"""Agent CPU per line: tail a 1,000,000-line, 218 MB file from the beginning to a null Loki
receiver that answers 204 at once, no pipeline stages; the figure is the agent process's
user+system CPU from /proc, from its start until the receiver has every line.

Issue 14 measured on this machine: Sluiceway 8.0 CPU-s, Fluent Bit 5.1.1 3.1 CPU-s,
promtail 3.6.15 12.2 CPU-s per million such lines; the target is <= 3.3.

    .venv/bin/python bench/agent.py                  # 5 runs, the median
    .venv/bin/python bench/agent.py --against /tmp/base   # interleaved with another tree
    .venv/bin/python bench/agent.py --part server    # the old flowing + stall phases
    .venv/bin/python bench/agent.py --pipeline '[{multiline: {firstline: "^20"}}]'
                                                     # the joining-stage path

`--against DIR` runs the agent of another source tree (e.g. `git archive <rev> | tar -x
-C DIR`) in turn with this one, run by run, so a neighbour's load hits both alike.
The machine is shared: CPU-seconds are less sensitive to load than wall time, but not
immune (caches, frequency), so the load average is printed with every run.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sluiceway.wire import decode_push_blocks  # noqa: E402
from tests.procs import REPO, ServerProcess, free_port, sluiceway_cmd  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
# 217 characters and a newline: 1,000,000 lines make the 218 MB file.
LINE = ('2026-11-23T18:00:00.000Z level=info caller=orders/api.go:212 msg="request served" '
        'method=GET path=/api/v1/orders/{n:08d} status=200 bytes=5123 duration_ms=12 '
        'user=u{n:07d} region=eu-west-1 az=b trace={t}')
FLUENT_BIT, PROMTAIL, TARGET = 3.1, 12.2, 3.3


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def block(start: int, n: int) -> bytes:
    return "".join(LINE.format(n=i, t=f"{i * 2654435761 % 2**64:016x}") + "\n"
                   for i in range(start, start + n)).encode()


def make_file(lines: int) -> Path:
    """The test file, made once per size and kept in the temp dir between runs."""
    path = Path(tempfile.gettempdir()) / f"sluiceway-bench-agent-{lines}.log"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for s in range(0, lines, 10_000):
                f.write(block(s, min(10_000, lines - s)))
        tmp.rename(path)
    return path


class NullReceiver:
    """Answers every push 204 at once and counts the lines it got (decoded here, in the
    bench process, so the count proves delivery and costs the agent nothing)."""

    def __init__(self) -> None:
        self.lines = 0
        self.done = threading.Event()
        self.want = 0
        me = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.wfile.flush()
                blocks = decode_push_blocks(body, self.headers.get("Content-Type"),
                                            self.headers.get("Content-Encoding"))
                with lock:
                    me.lines += sum(len(b.ts) for b in blocks)
                    if me.want and me.lines >= me.want:
                        me.done.set()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a sender killed mid-request (the bench ends it): nothing to say

        lock = threading.Lock()
        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def cpu_run(tree: Path, path: Path, lines: int, fmt: str, extra: dict[str, Any],
            pipeline: list[Any] | None = None) -> dict[str, Any]:
    """One agent process of `tree` ships `path` to a null receiver; its CPU until done.
    `pipeline`: the input's stages (they must keep every line: the receiver counts)."""
    sink = NullReceiver()
    sink.want = lines
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as d:
        tmp = Path(d)
        cfg = {"url": sink.url, "data_dir": str(tmp / "agent-data"), "format": fmt,
               "listen": None, "report_url": "off",
               "inputs": [{"type": "file", "paths": [str(path)], "start_at": "beginning",
                           "labels": {"job": "bench"},
                           **({"pipeline": pipeline} if pipeline else {})}], **extra}
        (tmp / "agent.yaml").write_text(yaml.safe_dump(cfg))
        log = open(tmp / "agent.log", "wb")  # noqa: SIM115 - closed below
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "sluiceway", "agent", "-c",
                                 str(tmp / "agent.yaml"), "--log-level", "warning"],
                                cwd=tree, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(tree)})
        try:
            peak = 0.0
            while not sink.done.wait(0.2):
                if proc.poll() is not None:
                    raise RuntimeError(f"agent exited {proc.returncode}: "
                                       + (tmp / "agent.log").read_text()[-2000:])
                peak = max(peak, rss_mb(proc.pid))
                if time.monotonic() - t0 > 600:
                    raise TimeoutError(f"{sink.lines} of {lines} lines after 600 s")
            cpu, wall = cpu_s(proc.pid), time.monotonic() - t0
            peak = max(peak, rss_mb(proc.pid, "VmHWM"))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            sink.close()
    return {"cpu_s": cpu, "wall_s": wall, "rss_peak_mb": peak, "got": sink.lines,
            "load": os.getloadavg()[0]}


def cpu_part(args: argparse.Namespace) -> None:
    path = make_file(args.lines)
    size = path.stat().st_size
    trees = {"this tree": REPO}
    if args.against:
        trees = {f"{args.against}": Path(args.against).resolve(), **trees}
    extra = yaml.safe_load(args.agent_yaml) if args.agent_yaml else {}
    pipeline = yaml.safe_load(args.pipeline) if args.pipeline else None
    print(f"agent CPU bench: {args.lines:,} lines, {size / 1e6:.0f} MB "
          f"({size / args.lines:.0f} B a line), {args.format}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, {args.runs} interleaved runs"
          + (f", config {extra}" if extra else "")
          + (f", pipeline {pipeline}" if pipeline else ""))
    got: dict[str, list[float]] = {name: [] for name in trees}
    for i in range(args.runs):
        for name, tree in trees.items():
            r = cpu_run(tree, path, args.lines, args.format, extra, pipeline)
            per_m = r["cpu_s"] / args.lines * 1e6
            got[name].append(per_m)
            print(f"  run {i + 1} {name}: {r['cpu_s']:.2f} CPU-s ({per_m:.2f} per million "
                  f"lines), wall {r['wall_s']:.1f} s, RSS peak {r['rss_peak_mb']:.0f} MB, "
                  f"load average {r['load']:.1f}", flush=True)
    print()
    for name, xs in got.items():
        med = statistics.median(xs)
        print(f"{name}: median {med:.2f} CPU-s per million lines "
              f"({1e6 / med:,.0f} lines per CPU-second; runs {min(xs):.2f}–{max(xs):.2f})")
    print(f"issue 14's figures on this machine: Fluent Bit 5.1.1 {FLUENT_BIT} CPU-s, "
          f"promtail 3.6.15 {PROMTAIL} CPU-s; target <= {TARGET}")


# ---- part "server": a growing file to a local server, then a stall ------------------------

class Writer(threading.Thread):
    """Appends `total` lines in 10k-line blocks as fast as the disk takes them."""

    def __init__(self, path: Path, start: int, total: int) -> None:
        super().__init__(daemon=True)
        self.path, self.start_no, self.total, self.bytes = path, start, total, 0
        # Built before timing starts, so the writer is never what limits the rate.
        self.blocks = [block(s, min(10_000, start + total - s))
                       for s in range(start, start + total, 10_000)]

    def run(self) -> None:
        with open(self.path, "ab") as f:
            for data in self.blocks:
                f.write(data)
                f.flush()
                self.bytes += len(data)


class Agent:
    def __init__(self, tmp: Path, server_url: str, fmt: str, queue: dict[str, Any]) -> None:
        self.port = free_port()
        cfg = {"url": server_url, "data_dir": str(tmp / "agent-data"), "format": fmt,
               "listen": f"127.0.0.1:{self.port}", "timeout": "2s", "report_url": "off",
               "workers": 4, "retry": {"min_backoff": "100ms", "max_backoff": "1s"},
               "batch": {"max_lines": 5000, "max_bytes": "2MiB", "max_wait": "200ms"},
               "queue": queue,
               "inputs": [{"type": "file", "paths": [str(tmp / "logs" / "*.log")],
                           "start_at": "beginning", "labels": {"job": "bench"},
                           "poll_interval": "50ms"}]}
        (tmp / "agent.yaml").write_text(yaml.safe_dump(cfg))
        self.log = open(tmp / "agent.log", "ab")  # noqa: SIM115
        cmd = sluiceway_cmd("agent", "-c", str(tmp / "agent.yaml"), "--log-level", "warning")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("agent did not start")

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = httpx.get(self.url + "/status", timeout=10).json()
        return out

    def wait(self, pred: Any, timeout: float = 300) -> tuple[dict[str, Any], float]:
        deadline = time.monotonic() + timeout
        peak = 0.0
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb(self.proc.pid))
            s = self.status()
            if pred(s):
                return s, peak
            time.sleep(0.05)
        raise TimeoutError(str(self.status()))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def server_run(fmt: str, lines: int, stall_lines: int) -> None:
    capacity = 20_000
    queue = {"capacity": capacity, "max_bytes": "32MiB", "when_full": "spill"}
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as d:
        tmp = Path(d)
        (tmp / "logs").mkdir()
        srv = ServerProcess(tmp / "data").start()
        agent = Agent(tmp, srv.url, fmt, queue)
        pid = agent.proc.pid
        try:
            w = Writer(tmp / "logs" / "app.log", 0, lines)
            cpu0, t0 = cpu_s(pid), time.monotonic()
            w.start()
            s, peak = agent.wait(lambda s: s["lines"]["shipped"] >= lines)
            wall, cpu = time.monotonic() - t0, cpu_s(pid) - cpu0
            print(f"[{fmt}] growing file to the local server: {lines:,} lines in {wall:.2f}s "
                  f"= {lines / wall:,.0f} lines/s; agent CPU {cpu:.2f}s; RSS peak {peak:.0f} MB")
            # The backend stalls while the file keeps growing: the overflow goes to disk.
            srv.signal(signal.SIGSTOP)
            spilled0, cpu0, t0 = s["lines"]["spilled"], cpu_s(pid), time.monotonic()
            w = Writer(tmp / "logs" / "app.log", lines, stall_lines)
            w.start()
            w.join()
            s, peak = agent.wait(lambda s: s["lines"]["spilled"] - spilled0 >= stall_lines
                                 - capacity)
            wall = time.monotonic() - t0
            n = s["lines"]["spilled"] - spilled0
            print(f"  stalled: {n:,} lines spilled in {wall:.2f}s = {n / wall:,.0f} lines/s, "
                  f"{s['spill_bytes'] / 1e6:.0f} MB on disk, CPU {cpu_s(pid) - cpu0:.2f}s, "
                  f"RSS peak {peak:.0f} MB")
            srv.signal(signal.SIGCONT)
            t0 = time.monotonic()
            agent.wait(lambda s: s["lines"]["shipped"] >= lines + stall_lines)
            print(f"  recovered: drained at {stall_lines / (time.monotonic() - t0):,.0f} "
                  f"lines/s; RSS high-water {rss_mb(pid, 'VmHWM'):.0f} MB")
        finally:
            agent.stop()
            srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["cpu", "server"], default="cpu")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--format", default="protobuf", choices=["protobuf", "json"])
    ap.add_argument("--against", help="another source tree to run in turn with this one")
    ap.add_argument("--agent-yaml", help="extra agent config (YAML mapping) for the cpu part")
    ap.add_argument("--pipeline", help="the file input's stages (YAML list) for the cpu part")
    ap.add_argument("--stall-lines", type=int, default=600_000)
    args = ap.parse_args()
    if args.part == "cpu":
        cpu_part(args)
    else:
        server_run(args.format, args.lines, args.stall_lines)


if __name__ == "__main__":
    main()
