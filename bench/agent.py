"""Agent throughput: a growing file shipped to a local `sluiceway server`, then a stall.

Phase 1 (flowing): a writer appends N lines of ~200 bytes to a file the agent tails;
timed from the first write until the agent reports every line acked. Reports lines/s,
MB/s, the agent's CPU seconds (so lines per CPU-second, i.e. on one core) and RSS.
Phase 2 (stalled): the server is SIGSTOPped while M more lines are written; reports the
spill rate to disk and the agent's peak RSS, then SIGCONT and the drain rate.
The agent runs as its own process; figures come from /proc/<pid> and its /status.

Usage: python bench/agent.py [--lines 600000] [--stall-lines 600000] [--format protobuf]
"""

from __future__ import annotations

import argparse
import os
import signal
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.procs import REPO, ServerProcess, free_port, sluiceway_cmd  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
WORKERS = 4
PIN: int | None = None
LINE = ('2026-11-23T18:00:00.000Z level=info caller=orders/api.go:212 msg="request served" '
        'method=GET path=/api/v1/orders/{n} status=200 bytes=5123 duration_ms=12 trace={t}')


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def block(start: int, n: int) -> bytes:
    return "".join(LINE.format(n=start + i, t=f"{start + i:016x}") + "\n"
                   for i in range(n)).encode()


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


class NullSink:
    """Answers every push 204 at once: shows what the agent alone can do."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def flowing(agent: Agent, tmp: Path, fmt: str, lines: int, start: int = 0) -> dict[str, Any]:
    pid = agent.proc.pid
    shipped0 = agent.status()["lines"]["shipped"]
    w = Writer(tmp / "logs" / "app.log", start, lines)
    rss0, cpu0, t0 = rss_mb(pid), cpu_s(pid), time.monotonic()
    w.start()
    _, peak = agent.wait(lambda s: s["lines"]["shipped"] - shipped0 >= lines)
    wall, cpu = time.monotonic() - t0, cpu_s(pid) - cpu0
    w.join()
    return {"format": fmt, "lines": lines, "bytes": w.bytes, "wall_s": wall,
            "lines_per_s": lines / wall, "mb_per_s": w.bytes / wall / 1e6,
            "agent_cpu_s": cpu, "lines_per_cpu_s": lines / cpu,
            "rss_start_mb": rss0, "rss_peak_mb": peak}


def null_run(fmt: str, lines: int, queue: dict[str, Any]) -> dict[str, Any]:
    sink = NullSink()
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as d:
        tmp = Path(d)
        (tmp / "logs").mkdir()
        agent = Agent(tmp, sink.url, fmt, queue)
        try:
            return flowing(agent, tmp, fmt, lines)
        finally:
            agent.stop()
            sink.httpd.shutdown()


class Agent:
    def __init__(self, tmp: Path, server_url: str, fmt: str, queue: dict[str, Any]) -> None:
        self.port = free_port()
        cfg = {"url": server_url, "data_dir": str(tmp / "agent-data"), "format": fmt,
               "listen": f"127.0.0.1:{self.port}", "timeout": "2s", "report_url": "off",
               "workers": WORKERS,
               "retry": {"min_backoff": "100ms", "max_backoff": "1s"},
               "batch": {"max_lines": 5000, "max_bytes": "2MiB", "max_wait": "200ms"},
               "queue": queue,
               "inputs": [{"type": "file", "paths": [str(tmp / "logs" / "*.log")],
                           "start_at": "beginning", "labels": {"job": "bench"},
                           "poll_interval": "50ms"}]}
        (tmp / "agent.yaml").write_text(yaml.safe_dump(cfg))
        self.log = open(tmp / "agent.log", "ab")  # noqa: SIM115
        cmd = sluiceway_cmd("agent", "-c", str(tmp / "agent.yaml"), "--log-level", "warning")
        if PIN is not None:  # the agent on one core, everything else on the other(s)
            cmd = ["taskset", "-c", str(PIN), *cmd]
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


def run(fmt: str, lines: int, stall_lines: int, queue: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as d:
        tmp = Path(d)
        (tmp / "logs").mkdir()
        srv = ServerProcess(tmp / "data").start()
        agent = Agent(tmp, srv.url, fmt, queue)
        pid = agent.proc.pid
        try:
            out = flowing(agent, tmp, fmt, lines)
            s = agent.status()
            if queue["when_full"] != "spill" or not stall_lines:
                return out
            # Phase 2: backend stalled, the file keeps growing.
            srv.signal(signal.SIGSTOP)
            shipped0 = s["lines"]["shipped"]
            w = Writer(tmp / "logs" / "app.log", lines, stall_lines)
            spilled0, cpu0, t0 = s["lines"]["spilled"], cpu_s(pid), time.monotonic()
            w.start()
            w.join()
            s, peak = agent.wait(lambda s: s["lines"]["read"] >= lines + stall_lines
                                 and s["queue"]["depth"] - s["queue"]["spill_pending"] <= 2)
            wall = time.monotonic() - t0
            s, peak2 = agent.wait(lambda s: s["lines"]["spilled"] - spilled0 >= stall_lines)
            peak = max(peak, peak2)
            wall = time.monotonic() - t0
            out.update({
                "stall_lines": stall_lines, "stall_wall_s": wall,
                "spilled": s["lines"]["spilled"] - spilled0,
                "spill_lines_per_s": (s["lines"]["spilled"] - spilled0) / wall,
                "spill_mb_on_disk": s["spill_bytes"] / 1e6,
                "stall_cpu_s": cpu_s(pid) - cpu0, "stall_rss_peak_mb": peak})
            srv.signal(signal.SIGCONT)
            t0 = time.monotonic()
            s, _ = agent.wait(lambda s: s["lines"]["shipped"] >= shipped0 + stall_lines)
            out["drain_lines_per_s"] = stall_lines / (time.monotonic() - t0)
            out["rss_end_mb"] = rss_mb(pid)
            out["rss_hwm_mb"] = rss_mb(pid, "VmHWM")
            return out
        except Exception:
            print("server log tail:\n" + srv.log()[-3000:], file=sys.stderr)
            raise
        finally:
            agent.stop()
            srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=600_000)
    ap.add_argument("--stall-lines", type=int, default=600_000)
    ap.add_argument("--format", default="both", choices=["protobuf", "json", "both"])
    ap.add_argument("--capacity", type=int, default=20_000)
    ap.add_argument("--when-full", default="spill", choices=["spill", "block", "drop"])
    ap.add_argument("--workers", type=int, default=4, help="concurrent pushes")
    ap.add_argument("--pin", type=int, default=None, help="run the agent on this CPU only")
    args = ap.parse_args()
    global WORKERS, PIN
    WORKERS, PIN = args.workers, args.pin
    if PIN is not None:  # keep this process (writer, sink) and the server off that core
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) - {PIN} or {PIN})
    queue = {"capacity": args.capacity, "max_bytes": "32MiB", "when_full": args.when_full}
    print(f"agent bench: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"line ~{len(LINE) + 10} B, queue {queue}, batch 5000 lines, {WORKERS} workers"
          + (f", agent pinned to CPU {PIN}" if PIN is not None else ""))
    for fmt in (["protobuf", "json"] if args.format == "both" else [args.format]):
        n = null_run(fmt, args.lines, queue)
        print(f"\n[{fmt}] to a null sink (agent alone): {n['lines_per_s']:,.0f} lines/s, "
              f"{n['mb_per_s']:.1f} MB/s; agent CPU {n['agent_cpu_s']:.2f}s = "
              f"{n['lines_per_cpu_s']:,.0f} lines per CPU-second; RSS peak "
              f"{n['rss_peak_mb']:.0f} MB")
        r = run(fmt, args.lines, args.stall_lines, queue)
        print(f"[{fmt}] to the local server: {r['lines']:,} lines ({r['bytes'] / 1e6:.0f} MB) in "
              f"{r['wall_s']:.2f}s = {r['lines_per_s']:,.0f} lines/s, {r['mb_per_s']:.1f} MB/s")
        print(f"  agent CPU {r['agent_cpu_s']:.2f}s = {r['lines_per_cpu_s']:,.0f} lines per "
              f"CPU-second; RSS {r['rss_start_mb']:.0f} MB at start, peak "
              f"{r['rss_peak_mb']:.0f} MB")
        if "spilled" not in r:
            continue
        print(f"  stalled: {r['spilled']:,} lines spilled in {r['stall_wall_s']:.2f}s = "
              f"{r['spill_lines_per_s']:,.0f} lines/s to disk, {r['spill_mb_on_disk']:.0f} MB "
              f"on disk, CPU {r['stall_cpu_s']:.2f}s, RSS peak {r['stall_rss_peak_mb']:.0f} MB")
        print(f"  recovered: drained at {r['drain_lines_per_s']:,.0f} lines/s; RSS "
              f"{r['rss_end_mb']:.0f} MB (high-water {r['rss_hwm_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
