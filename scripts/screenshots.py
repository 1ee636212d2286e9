"""Take the README screenshots of the web UI: docs/img/explore.png, metric.png, patterns.png,
pipeline.png, ledger.png, agent-view.png.

Starts a throwaway `sluiceway server`, pushes an hour of realistic sample logs, posts
heartbeats for a few agents and clients in different states (healthy, spilling with the
backend down, dropping, stale), then drives Debian's /usr/bin/chromium with Playwright.
For agent-view.png it runs a real agent and an app whose client reports to the agent,
stops the server with SIGSTOP and loads the agent's own pipeline view.

    .venv/bin/python scripts/screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.agent.agentproc import AgentProcess  # noqa: E402
from tests.procs import ServerProcess  # noqa: E402
from tests.ui._support import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

PATHS = ["/api/v1/orders", "/api/v1/orders/{id}", "/api/v1/cart", "/api/v1/users/{id}",
         "/healthz", "/api/v1/search", "/api/v1/payments"]


def _api_line(rnd: random.Random, level: str) -> str:
    path = rnd.choice(PATHS).replace("{id}", str(rnd.randint(1000, 9999)))
    method = rnd.choice(["GET", "GET", "GET", "POST", "PUT"])
    if level == "error":
        status, msg = rnd.choice([(500, "upstream payments timed out"),
                                  (502, "bad gateway from inventory"),
                                  (500, "database connection reset by peer")])
    elif level == "debug":
        status, msg = 200, "cache lookup"
    elif level == "warn":
        status, msg = rnd.choice([(429, "rate limited"), (404, "not found"), (200, "slow request")])
    else:
        status, msg = 200, "request completed"
    dur = rnd.randint(3, 90) if level == "info" else rnd.randint(400, 5000)
    return (f'level={level} method={method} path={path} status={status} duration={dur}ms '
            f'trace_id={rnd.getrandbits(64):016x} msg="{msg}"')


def _worker_line(rnd: random.Random, level: str) -> str:
    job = rnd.choice(["send-invoice", "resize-image", "sync-inventory", "nightly-report"])
    msg = {"info": "job finished", "warn": "job retried", "debug": "job picked up",
           "error": "job failed: connection refused"}[level]
    return json.dumps({"level": level, "msg": msg, "job": job, "attempt": rnd.randint(1, 3),
                       "queue": rnd.choice(["default", "critical"]),
                       "took_ms": rnd.randint(10, 4000)})


def sample_streams(now_ns: int, seconds: int = 3600, seed: int = 7) -> list[dict]:
    """About an hour of lines from two apps; errors cluster in an incident 15 minutes ago."""
    rnd = random.Random(seed)
    streams: dict[tuple[str, str, str], list[list[str]]] = {}
    incident = (now_ns - 17 * 60 * 10**9, now_ns - 11 * 60 * 10**9)
    for _ in range(2400):
        ts = now_ns - rnd.randint(0, seconds * 1000) * 10**6
        app = rnd.choice(["api", "api", "worker"])
        in_incident = incident[0] <= ts <= incident[1]
        level = rnd.choices(["info", "warn", "error", "debug"],
                            [60, 12, 30 if in_incident else 3, 10])[0]
        line = _api_line(rnd, level) if app == "api" else _worker_line(rnd, level)
        key = (app, level, rnd.choice(["eu-west-1", "us-east-1"]))
        streams.setdefault(key, []).append([str(ts), line])
    out = []
    for (app, level, region), values in streams.items():
        values.sort(key=lambda v: int(v[0]))
        out.append({"stream": {"app": app, "env": "prod", "level": level, "region": region},
                    "values": values})
    return out


def heartbeats(now: float) -> list[dict]:
    def hb(id_: str, kind: str, name: str, **kw: object) -> dict:
        base = {"id": id_, "kind": kind, "name": name, "host": kw.pop("host", "web-01"),
                "pid": kw.pop("pid", 4242), "ts": now, "interval_s": 5.0,
                "lost_by_reason": {}, "spill_bytes": 0,
                "backend": {"ok": True, "last_error": None, "url": "http://loki.internal:3100",
                            "last_success_ts": now - 1}}
        base.update(kw)
        return base

    return [
        hb("agent-a", "agent", "edge-nginx", host="edge-01", pid=811,
           view_url="http://edge-01:9080/",
           queue={"depth": 1200, "capacity": 3200, "bytes": 96_000, "max_bytes": 16 << 20,
                  "when_full": "spill", "high_watermark": 2200, "in_flight": 1000,
                  "spill_max_bytes": 1 << 30},
           lines={"read": 1_284_220, "enqueued": 1_284_220, "shipped": 1_284_208,
                  "dropped": 0, "spilled": 0, "lost": 0},
           files=[{"path": "/var/log/nginx/access.log", "lag_bytes": 22_000,
                   "lag_lines": 0, "waiting": False}]),
        hb("agent-b", "agent", "payments-host", host="pay-02", pid=1290,
           view_url="http://pay-02:9080/",
           queue={"depth": 3200, "capacity": 3200, "bytes": 14_900_000, "max_bytes": 16 << 20,
                  "when_full": "spill", "high_watermark": 3200, "spill_lines": 58_400,
                  "spill_bytes": 41_800_000, "spill_max_bytes": 1 << 30},
           lines={"read": 602_118, "enqueued": 602_118, "shipped": 540_002, "dropped": 0,
                  "spilled": 58_400, "lost": 0},
           spill_bytes=41_800_000,
           backend={"ok": False, "state": "retrying", "url": "http://loki.internal:3100",
                    "last_error": "POST /loki/api/v1/push: connect timeout after 10s",
                    "last_success_ts": now - 95}),
        hb("agent-f", "agent", "ledger-db", host="db-01", pid=2077,
           view_url="http://db-01:9080/",
           queue={"depth": 2900, "capacity": 3200, "bytes": 1_900_000, "max_bytes": 16 << 20,
                  "when_full": "block", "high_watermark": 3200, "in_flight": 300,
                  "waiting_s": 41.0},
           lines={"read": 88_002, "enqueued": 88_002, "shipped": 84_802, "dropped": 0,
                  "spilled": 0, "lost": 0},
           files=[{"path": "/var/log/postgresql/postgresql-main.log", "lag_bytes": 9_800_000,
                   "lag_lines": 41_230, "waiting": True}],
           backend={"ok": False, "state": "retrying", "url": "http://loki.internal:3100",
                    "last_error": "HTTP 503: ingester unavailable",
                    "last_status": 503, "last_success_ts": now - 41}),
        hb("client-c", "client", "checkout-api", host="web-03", pid=5120,
           queue={"depth": 10_000, "capacity": 10_000, "bytes": 3_100_000,
                  "max_bytes": 8 << 20, "when_full": "drop", "high_watermark": 10_000},
           lines={"read": 95_672, "enqueued": 88_311, "shipped": 80_950, "dropped": 7_361,
                  "spilled": 0, "lost": 7_361},
           lost_by_reason={"full": 7_361}, latency_us={"enqueue_p99": 14.0},
           backend={"ok": False, "state": "retrying", "url": "http://loki.internal:3100",
                    "last_error": "HTTP 429: ingestion rate limit exceeded",
                    "last_status": 429, "last_success_ts": now - 12}),
        hb("client-d", "client", "billing-worker", host="web-04", pid=733,
           queue={"depth": 40, "capacity": 10_000, "bytes": 12_000, "max_bytes": 8 << 20,
                  "when_full": "block", "high_watermark": 310},
           lines={"read": 21_004, "enqueued": 21_004, "shipped": 20_964, "dropped": 0,
                  "spilled": 0, "lost": 0}, latency_us={"enqueue_p99": 6.5}),
    ]


def advance(reports: list[dict], n: int) -> list[dict]:
    """The n-th heartbeat of each reporter: counters move, so the page shows rates."""
    for rep in reports:
        moving = ["enqueued", "shipped"] + (["read"] if rep["kind"] == "agent" else [])
        rep["lines"] = {k: v + n * 400 if k in moving else v for k, v in rep["lines"].items()}
        if rep["id"] == "agent-b":  # its backend went down: overflow goes to disk
            rep["lines"]["spilled"] += n * 380
            rep["queue"]["spill_lines"] += n * 380
            rep["spill_bytes"] += n * 200_000
            rep["queue"]["spill_bytes"] = rep["spill_bytes"]
        if rep["id"] == "agent-f":  # blocked: nothing moves, the file falls behind
            rep["lines"] = {**rep["lines"], "read": 88_002, "enqueued": 88_002,
                            "shipped": 84_802}
            rep["files"][0]["lag_lines"] += n * 300
        if rep["id"] == "client-c":
            rep["lines"]["dropped"] += n * 150
            rep["lines"]["lost"] += n * 150
            rep["lost_by_reason"] = {"full": rep["lines"]["lost"]}
    return reports


# The ledger: numbered lines pushed for a few sources, and what their producers report.
# (source, epoch, stored, reporter, emitted, lost by reason, in flight by where)
LEDGER = [
    ("client/checkout-api/web-03/loki", "18c4a2f9e10-1400", 6_000, "client-c", 6_450,
     {"full": 410}, {"queue": 40}),
    ("agent-edge-01-3be1/file:9a1f22c0", "b71c0e9f2a44", 9_000, "agent-a", 9_120, {},
     {"sending": 120}),
    ("agent-pay-02-77d0/file:51ce0b8d", "0d3f9a6c1e27", 4_000, "agent-b", 7_300, {},
     {"disk": 3_263}),
    ("client/billing-worker/web-04/loki", "18c4a1b7d02-2dd", 3_000, "client-d", 3_000, {},
     {}),
]


def push_numbered(url: str) -> None:
    """Numbered lines for the ledger table (the header a client or agent sends)."""
    from sluiceway.model import LEDGER_HEADER, LedgerGroup, encode_ledger

    now = time.time_ns() - 60 * 10**9
    for n, (source, epoch, stored, *_rest) in enumerate(LEDGER):
        for start in range(0, stored, 1000):
            values = [[str(now + n * 10**8 + start + i), f"level=info msg=\"ledger {i}\""]
                      for i in range(min(1000, stored - start))]
            header = encode_ledger([LedgerGroup(source, epoch,
                                                [(start, start + len(values))])])
            httpx.post(f"{url}/loki/api/v1/push",
                       json={"streams": [{"stream": {"app": "ledger-demo"}, "values": values}]},
                       headers={LEDGER_HEADER: header}).raise_for_status()


def with_ledger(reports: list[dict]) -> list[dict]:
    by = {r["id"]: r for r in reports}
    for source, epoch, _stored, rid, emitted, lost, in_flight in LEDGER:
        by[rid]["ledger"] = [{"in_flight": in_flight, "entries": [
            {"source": source, "epoch": epoch, "emitted": emitted, "lost": lost}]}]
    return reports


def post_heartbeats(url: str, reports: list[dict]) -> None:
    for r in reports:
        # One token per reporter, as each real process makes one: the server keeps a
        # card for the token that made it.
        body = {**r, "token": f"screenshots-{r['id']}"}
        httpx.post(f"{url}/sluiceway/api/v1/heartbeat", json=body).raise_for_status()


# An app using the in-app client: ships to the server, reports to the agent.
CLIENT_APP = """\
import sys, time
from sluiceway import client
client.configure(sinks=[client.LokiSink(sys.argv[1], labels={"app": "checkout"})],
                 queue_size=2000, when_full="drop", name="checkout-api",
                 report_url=sys.argv[2], report_interval=1, capture_stdlib=False)
log = client.get_logger("orders")
i = 0
while True:
    log.info("order placed", order_id=i)
    i += 1
    time.sleep(0.002)
"""


def agent_view(srv: ServerProcess, tmp: Path, browser: object, out: Path) -> None:
    """A real agent and a client reporting to it; the server stopped; the agent's view."""
    agent = AgentProcess(tmp, {
        "url": srv.url, "name": "edge-nginx", "timeout": "2s", "heartbeat_interval": "1s",
        "queue": {"capacity": 3200, "when_full": "spill"},
        "inputs": [{"type": "demo", "rate": 400, "labels": {"job": "nginx"}}]}).start()
    app = subprocess.Popen([sys.executable, "-c", CLIENT_APP, srv.url, agent.url], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            rows = httpx.get(f"{agent.url}/sluiceway/api/v1/pipeline").json()["data"]
            if len(rows) == 2 and all(r["lines"]["shipped"] for r in rows):
                break
            time.sleep(0.2)
        srv.signal(signal.SIGSTOP)
        page = browser.new_page(viewport={"width": 1440, "height": 900},  # type: ignore[attr-defined]
                                device_scale_factor=1)
        page.goto(f"{agent.url}/")
        page.wait_for_selector('[data-testid=reporter][data-status="DROPPING"]', timeout=30_000)
        page.wait_for_selector('[data-testid=reporter] .backend.down', timeout=30_000)
        page.wait_for_timeout(3000)
        page.screenshot(path=str(out / "agent-view.png"), full_page=True)
        page.close()
    finally:
        srv.signal(signal.SIGCONT)
        app.kill()
        app.wait()
        agent.stop(10)


def wait_mined(url: str, deadline_s: float = 60.0) -> None:
    """The pattern ingester mines behind the pushes: wait until it has patterns."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        r = httpx.get(f"{url}/loki/api/v1/patterns", params={"query": '{app="api"}'})
        if r.status_code == 200 and r.json()["data"]:
            return
        time.sleep(0.5)
    raise SystemExit("no patterns were mined within a minute")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProcess(Path(tmp) / "data").start()
        try:
            now_ns = time.time_ns()
            r = httpx.post(f"{srv.url}/loki/api/v1/push", json={"streams": sample_streams(now_ns)})
            r.raise_for_status()
            # The stale ones report once with a short interval, then fall silent.
            stale = [heartbeats(time.time())[4] | {"id": "agent-e", "kind": "agent",
                                                   "name": "batch-cron", "interval_s": 0.2,
                                                   "host": "cron-01"},
                     heartbeats(time.time())[4] | {"id": "client-g", "name": "report-job",
                                                   "interval_s": 0.2, "host": "cron-02"}]
            post_heartbeats(srv.url, stale)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 1000},
                                        device_scale_factor=1)
                query = quote('{env="prod"} != "healthz"', safe="")
                page.goto(f"{srv.url}/#/explore?query={query}")
                page.wait_for_selector(".log-row")
                page.wait_for_selector(".histogram .uplot")
                # The fields sidebar with one field's spread open.
                page.wait_for_selector("[data-testid=fields-sidebar] .field-row")
                page.locator('.field-name[data-field="detected_level"]').click()
                page.wait_for_selector('.field-row[data-field="detected_level"] .value-row')
                page.locator(".log-row.lvl-error .line").first.click()  # an expanded line
                page.wait_for_timeout(300)
                page.screenshot(path=str(args.out / "explore.png"))

                wait_mined(srv.url)
                query = quote('{app="api"}', safe="")
                page.goto(f"{srv.url}/#/explore?query={query}&tab=patterns")
                page.wait_for_selector(".pattern-row")
                page.wait_for_timeout(300)
                page.screenshot(path=str(args.out / "patterns.png"), clip={
                    "x": 0, "y": 0, "width": 1440, "height": 760})

                query = quote('sum by (app, level) (rate({env="prod"} [2m]))', safe="")
                page.goto(f"{srv.url}/#/explore?query={query}")
                page.wait_for_selector("[data-testid=metric-chart] .uplot")
                page.wait_for_timeout(300)
                page.screenshot(path=str(args.out / "metric.png"), clip={
                    "x": 0, "y": 0, "width": 1440, "height": 620})

                push_numbered(srv.url)
                page.goto(f"{srv.url}/#/pipeline")
                # Heartbeats a second apart, so the cards show rates and sparklines move.
                for i in range(7):
                    reports = with_ledger(advance(heartbeats(time.time()), 1 + i))
                    post_heartbeats(srv.url, reports)
                    page.wait_for_timeout(1000)
                page.wait_for_selector("[data-testid=reporter]")
                page.wait_for_selector("[data-testid=ledger-row]")
                page.locator("[data-testid=stale-row] summary").click()
                page.wait_for_timeout(300)
                page.screenshot(path=str(args.out / "pipeline.png"), full_page=True)
                page.locator("[data-testid=ledger]").screenshot(
                    path=str(args.out / "ledger.png"))
                agent_view(srv, Path(tmp), browser, args.out)
                browser.close()
        finally:
            srv.signal(signal.SIGCONT)
            srv.stop()
    print(f"wrote explore.png, metric.png, patterns.png, pipeline.png, ledger.png and "
          f"agent-view.png in "
          f"{args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
