"""In-app logger benchmark: CPU per line to Loki, per-call latency and delivery, then a
FastAPI app under load.

    .venv/bin/python bench/client.py            # the whole run, about 3 minutes
    .venv/bin/python bench/client.py --part cpu    # or calls, or http: one part
    .venv/bin/python bench/client.py --part cpu --against /tmp/base   # before/after
    .venv/bin/python bench/client.py --quick    # smaller counts

Part 0 (`cpu`): an app process logs N records through a `LokiSink` (protobuf + snappy,
`when_full="block"` so every record is delivered) to a null Loki receiver in this
process that answers 204 at once; the figure is the app process's user+system CPU from
/proc, from its first log call until the receiver has every line, per million lines —
the client's whole cost: the log call, the worker's encoding and the pushes. With
`--against DIR` the app of another source tree runs in turn with this one.

Part 1 runs each logger in its own subprocess (no shared threads or global state) with
two sinks: `fast` serialises every record to a JSON line and discards it; `stalled`
sleeps 200 ms per write (per record for the loggers that write one record at a time,
per batch for sluiceway). The caller logs N records in a tight loop from one thread;
every call is timed with perf_counter_ns. "delivered" counts records the sink got
before the drain deadline; "deliv/s" is delivered over the time from the first call
until the last record reached the sink.

Part 2 starts two uvicorn subprocesses serving the same FastAPI app, one without
logging and one with sluiceway (middleware + 2 log lines per request, the stalled sink),
and drives them with an open-loop httpx load (fixed request rate), alternating short
rounds so a noisy neighbour on the shared cores hits both alike. It then times the app
in-process (direct ASGI calls, no sockets) for the CPU the logging adds per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
STALL_S = 0.2
BUDGET_S = 5.0
RATE = 100.0
MSG = "Fetching order"


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.last = 0.0

    def add(self, k: int) -> None:
        self.n += k
        self.last = time.perf_counter()


# ---- one setup per logger: returns (log_one, shutdown) ------------------------------------

Setup = tuple[Callable[[int], None], Callable[[], None]]


def setup_stdlib(kind: str, got: Counter, queued: bool) -> Setup:
    import logging
    import logging.handlers
    import queue

    class JsonHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if kind == "stalled":
                time.sleep(STALL_S)
            orjson.dumps({"ts": record.created, "level": record.levelname,
                          "logger": record.name, "msg": record.getMessage(),
                          "order_id": getattr(record, "order_id", None)})
            got.add(1)

    log = logging.getLogger("bench")
    log.propagate = False
    log.setLevel(logging.INFO)
    listener = None
    if queued:
        q: queue.Queue[Any] = queue.Queue()  # unbounded, as dictConfig builds it
        listener = logging.handlers.QueueListener(q, JsonHandler())
        listener.start()
        log.addHandler(logging.handlers.QueueHandler(q))
    else:
        log.addHandler(JsonHandler())

    def one(i: int) -> None:
        log.info(MSG, extra={"order_id": i})

    def stop() -> None:
        if listener is not None:
            listener._thread = None  # noqa: SLF001 - do not wait for a stalled backlog
    return one, stop


def setup_loguru(kind: str, got: Counter) -> Setup:
    from loguru import logger

    def sink(message: Any) -> None:
        if kind == "stalled":
            time.sleep(STALL_S)
        got.add(1)  # serialize=True: loguru built the JSON line on the caller's side

    logger.remove()
    logger.add(sink, enqueue=True, serialize=True, level="INFO")

    def one(i: int) -> None:
        logger.info(MSG, order_id=i)

    return one, lambda: None


def setup_fapilog(kind: str, got: Counter) -> Setup:
    import fapilog

    class Sink:
        name = "bench"

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            pass

        async def write(self, entry: dict[str, Any]) -> None:
            if kind == "stalled":
                await asyncio.sleep(STALL_S)  # the kindest stall for an async worker
            orjson.dumps(entry, default=str)
            got.add(1)

    log = fapilog.get_logger("bench", sinks=[Sink()], reuse=False)

    def one(i: int) -> None:
        log.info(MSG, order_id=i)

    return one, lambda: None


def setup_sluiceway(kind: str, got: Counter, spill: bool = False) -> Setup:
    import tempfile

    from sluiceway import client

    class Sink:
        name = "bench"

        def write_batch(self, records: list[dict[str, Any]]) -> None:
            if kind == "stalled":
                time.sleep(STALL_S)
            for r in records:
                orjson.dumps(r)
            got.add(len(records))

    spill_opts: dict[str, Any] = {}
    if spill:  # overflow goes to disk; the directory is thrown away with the run
        spill_opts = {"when_full": "spill", "spill_dir": tempfile.mkdtemp(prefix="bench-")}
    client.configure(sinks=[Sink()], capture_stdlib=False, flush_timeout=0.1, **spill_opts)
    log = client.get_logger("bench")

    def one(i: int) -> None:
        log.info(MSG, order_id=i)

    def stop() -> None:
        s = client.stats()
        print(json.dumps({"dropped": s["dropped"], "spilled": s["spilled"],
                          "spill_bytes": s["spill_bytes"]}), file=sys.stderr)
        if spill:
            import shutil

            shutil.rmtree(spill_opts["spill_dir"], ignore_errors=True)
    return one, stop


def run_case(name: str, kind: str, n: int, drain_s: float) -> dict[str, Any]:
    got = Counter()
    if name == "stdlib-sync":
        one, stop = setup_stdlib(kind, got, queued=False)
    elif name == "stdlib-queue":
        one, stop = setup_stdlib(kind, got, queued=True)
    elif name == "loguru-enqueue":
        one, stop = setup_loguru(kind, got)
    elif name == "fapilog":
        one, stop = setup_fapilog(kind, got)
    else:
        one, stop = setup_sluiceway(kind, got, spill=name == "sluiceway-spill")
    # Warm up imports, threads and caches. Few calls into a stalled sink: a logger that
    # blocks its caller (loguru's pipe fills) would spend minutes here.
    warm = min(1000, n) if kind == "fast" else min(20, n // 2)
    for _ in range(warm):
        one(-1)
    deadline = time.perf_counter() + 10
    while got.n < warm and time.perf_counter() < deadline and kind == "fast":
        time.sleep(0.01)
    base = got.n
    times = [0] * n
    clock = time.perf_counter_ns
    t0 = time.perf_counter()
    stop_ns = clock() + int(BUDGET_S * 1e9)  # a logger that blocks its caller ends early
    for i in range(n):
        a = clock()
        one(i)
        b = clock()
        times[i] = b - a
        if b > stop_ns:
            n = i + 1
            del times[n:]
            break
    elapsed = time.perf_counter() - t0
    deadline = time.perf_counter() + drain_s
    while got.n - base < n and time.perf_counter() < deadline:
        time.sleep(0.005)
    delivered = got.n - base
    span = (got.last - t0) if delivered else float("nan")
    stop()
    times.sort()

    def q(p: float) -> float:
        return times[min(n - 1, int(n * p))] / 1000

    return {"logger": name, "sink": kind, "n": n, "p50": q(0.5), "p99": q(0.99),
            "p999": q(0.999), "max": times[-1] / 1000, "calls_s": n / elapsed,
            "delivered": delivered, "deliv_s": delivered / span if delivered else 0.0}


# ---- part 2: FastAPI under load -------------------------------------------------------------

def make_app(mode: str, handler_sleep: float = 0.002) -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    if mode == "sluiceway":
        from sluiceway import client

        class Stalled:
            def write_batch(self, records: list[dict[str, Any]]) -> None:
                time.sleep(STALL_S)

        client.configure(sinks=[Stalled()], capture_stdlib=False, flush_timeout=0.1)
        app.add_middleware(client.RequestContextMiddleware)
        log = client.get_logger("api")

        @app.get("/orders/{order_id}")
        async def get_order(order_id: int) -> dict[str, int]:
            log.info(MSG, order_id=order_id)
            await asyncio.sleep(handler_sleep)
            log.info("Fetched order", order_id=order_id)
            return {"id": order_id}
    else:
        @app.get("/orders/{order_id}")
        async def get_order(order_id: int) -> dict[str, int]:
            await asyncio.sleep(handler_sleep)
            return {"id": order_id}
    return app


def serve(mode: str, port: int) -> None:
    import uvicorn

    uvicorn.run(make_app(mode), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)


def asgi_cost_us(n: int, rounds: int = 7) -> dict[str, float]:
    """CPU cost of one request inside the app (no sockets, no sleep), the two apps
    alternating round by round so a noisy neighbour hits both alike; best round, µs."""
    apps = {m: make_app(m, handler_sleep=0) for m in ("none", "sluiceway")}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    async def run() -> dict[str, float]:
        best = {m: float("inf") for m in apps}
        for _ in range(rounds):
            for mode, app in apps.items():
                t0 = time.perf_counter()
                for i in range(n):
                    path = f"/orders/{i}"
                    scope = {"type": "http", "asgi": {"version": "3.0"},
                             "http_version": "1.1", "method": "GET", "scheme": "http",
                             "path": path, "raw_path": path.encode(), "query_string": b"",
                             "root_path": "", "headers": [(b"host", b"t")],
                             "client": ("127.0.0.1", 5000), "server": ("t", 80)}
                    await app(scope, receive, send)
                best[mode] = min(best[mode], (time.perf_counter() - t0) / n * 1e6)
        return best

    return asyncio.run(run())


async def load(url: str, total: int, rate: float) -> list[float]:
    """Open loop: one request every 1/rate s whatever the answers do, so the figures
    show service time, not a queue of our own making (a closed loop on 2 shared cores
    measures mostly the load generator)."""
    import httpx

    lat: list[float] = []
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as c:
        async def one(i: int) -> None:
            t = time.perf_counter()
            try:
                r = await c.get(f"/orders/{i}")
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            # a failed request counts as slow as the run's timeout: it is not hidden
            lat.append(time.perf_counter() - t if ok else 30.0)

        tasks = []
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return lat


def start_server(mode: str) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    p = subprocess.Popen([sys.executable, __file__, "--serve", mode, str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/orders/0", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return p, url


def run_http(rounds: int, per_round: int, rate: float) -> dict[str, list[float]]:
    """Both servers up at once; short rounds alternate between them. Returns every
    request latency (s) per mode."""
    servers = {m: start_server(m) for m in ("none", "sluiceway")}
    lat: dict[str, list[float]] = {m: [] for m in servers}
    try:
        for _, url in servers.values():
            asyncio.run(load(url, 200, rate))  # warm-up
        for _ in range(rounds):
            for mode, (_, url) in servers.items():
                lat[mode] += asyncio.run(load(url, per_round, rate))
    finally:
        for p, _ in servers.values():
            p.terminate()
            p.wait(10)
    return lat


# ---- part 0: CPU per line to a null Loki -------------------------------------------------

def cpu_child(url: str, n: int) -> None:
    """The app: configure, say ready, wait for "go", log `n` records, then idle."""
    from sluiceway import client

    client.configure(sinks=[client.LokiSink(url, labels={"app": "bench"})],
                     when_full="block", capture_stdlib=False, report_url=None)
    log = client.get_logger("orders")
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(n):
        log.info("request served", method="GET", path=f"/api/v1/orders/{i}", status=200,
                 duration_ms=12, user_id=i % 5000)
    sys.stdin.readline()  # killed by the parent


def cpu_run(tree: Path, n: int) -> tuple[float, float]:
    """(CPU-s of the app from its first log call until every line arrived, wall s)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from agent import NullReceiver, cpu_s  # noqa: PLC0415 - the agent bench's receiver

    sink = NullReceiver()
    sink.want = n
    p = subprocess.Popen([sys.executable, str(ROOT / "bench" / "client.py"), "--cpu-child",
                          sink.url, str(n)], cwd=tree, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(tree)})
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline().strip() == "ready"
        cpu0, t0 = cpu_s(p.pid), time.monotonic()
        p.stdin.write("go\n")
        p.stdin.flush()
        if not sink.done.wait(600):
            raise TimeoutError(f"{sink.lines} of {n} lines after 600 s")
        return cpu_s(p.pid) - cpu0, time.monotonic() - t0
    finally:
        p.kill()
        p.wait(10)
        sink.close()


def cpu(args: argparse.Namespace) -> None:
    import statistics

    n = 100_000 if args.quick else 300_000
    trees = {"this tree": ROOT}
    if args.against:
        trees = {args.against: Path(args.against).resolve(), **trees}
    print(f"client CPU bench: {n:,} records through a LokiSink to a null receiver, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {args.runs} "
          "interleaved runs")
    got: dict[str, list[float]] = {name: [] for name in trees}
    for i in range(args.runs):
        for name, tree in trees.items():
            cpu_used, wall = cpu_run(tree, n)
            per_m = cpu_used / n * 1e6
            got[name].append(per_m)
            print(f"  run {i + 1} {name}: {cpu_used:.2f} CPU-s = {per_m:.2f} per million "
                  f"lines, wall {wall:.1f} s, load average {os.getloadavg()[0]:.1f}",
                  flush=True)
    for name, xs in got.items():
        med = statistics.median(xs)
        print(f"{name}: median {med:.2f} CPU-s per million lines ({1e6 / med:,.0f} lines "
              f"per CPU-second; runs {min(xs):.2f}–{max(xs):.2f})")


# ---- driver -------------------------------------------------------------------------------

LOGGERS = ["stdlib-sync", "stdlib-queue", "loguru-enqueue", "fapilog", "sluiceway",
           "sluiceway-spill"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--part", choices=["all", "cpu", "calls", "http"], default="all")
    ap.add_argument("--case", nargs=4, metavar=("LOGGER", "SINK", "N", "DRAIN"))
    ap.add_argument("--serve", nargs=2, metavar=("MODE", "PORT"))
    ap.add_argument("--cpu-child", nargs=2, metavar=("URL", "N"))
    ap.add_argument("--against", help="cpu part: another source tree run in turn")
    ap.add_argument("--runs", type=int, default=3, help="cpu part: interleaved runs")
    args = ap.parse_args()
    if args.cpu_child:
        cpu_child(args.cpu_child[0], int(args.cpu_child[1]))
        return
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if args.case:
        name, kind, n, drain = args.case
        print(json.dumps(run_case(name, kind, int(n), float(drain))), flush=True)
        sys.stderr.flush()
        os._exit(0)  # a stalled backlog must not hold the exit (loguru joins its writer)
    if args.part in ("all", "cpu"):
        cpu(args)
    if args.part in ("all", "calls"):
        calls(args.quick)
    if args.part in ("all", "http"):
        http(args.quick)


def calls(quick: bool) -> None:
    n_fast = 20_000 if quick else 100_000
    n_stall = 5_000 if quick else 20_000
    rows = []
    for kind in ("fast", "stalled"):
        for name in LOGGERS:
            n = n_fast if kind == "fast" else (10 if name == "stdlib-sync" else n_stall)
            drain = 5.0 if kind == "fast" else 1.0
            out = subprocess.run([sys.executable, __file__, "--case", name, kind, str(n),
                                  str(drain)], cwd=ROOT, capture_output=True, text=True,
                                 timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if out.returncode != 0:
                print(f"{name}/{kind} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            if name.startswith("sluiceway"):
                notes = [x for x in out.stderr.splitlines() if x.startswith("{")]
                rows[-1]["note"] = notes[-1] if notes else "(no figures)"
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print(f"{'logger':<16}{'sink':<9}{'calls':>8}{'p50 µs':>9}{'p99 µs':>9}{'p99.9 µs':>10}"
          f"{'max µs':>10}{'calls/s':>11}{'delivered':>11}{'deliv/s':>10}")
    for r in rows:
        print(f"{r['logger']:<16}{r['sink']:<9}{r['n']:>8}{r['p50']:>9.1f}{r['p99']:>9.1f}"
              f"{r['p999']:>10.1f}{r['max']:>10.0f}{r['calls_s']:>11,.0f}"
              f"{r['delivered']:>11,}{r['deliv_s']:>10,.0f}")
    for r in rows:
        if "note" in r:
            print(f"{r['logger']}/{r['sink']}: {r['note']}")


def http(quick: bool) -> None:
    rounds, per_round = (4, 150) if quick else (8, 150)
    total = rounds * per_round
    print(f"\nFastAPI under uvicorn, {total} requests per mode at {RATE:.0f}/s (open loop), "
          f"2 ms handler, {rounds} alternating rounds; sluiceway: middleware + 2 lines per "
          "request into a sink stalled 200 ms per write")
    lat = run_http(rounds, per_round, RATE)
    print(f"{'mode':<12}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    p99 = {}
    for mode, xs in lat.items():
        xs.sort()

        def q(f: float, xs: list[float] = xs) -> float:
            return xs[min(len(xs) - 1, int(len(xs) * f))] * 1000

        p99[mode] = q(0.99)
        print(f"{mode:<12}{q(0.5):>9.2f}{q(0.9):>9.2f}{q(0.99):>9.2f}{xs[-1] * 1000:>9.2f}")
    print(f"request p99: sluiceway {(p99['sluiceway'] / p99['none'] - 1) * 100:+.1f}% vs none; "
          f"load average {os.getloadavg()[0]:.1f}")
    cost = asgi_cost_us(1000)
    print(f"in-app CPU per request (ASGI call, no sockets, best of 7 alternating rounds): "
          f"none {cost['none']:.0f} µs, sluiceway {cost['sluiceway']:.0f} µs "
          f"(+{cost['sluiceway'] - cost['none']:.0f} µs for the middleware and 3 records)")

if __name__ == "__main__":
    main()
