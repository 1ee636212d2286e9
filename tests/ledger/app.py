"""An application for the ledger tests: logs `count` records through the client (a
LokiSink, and optionally a file sink), `rate` a second, then flushes and exits cleanly.

    python -m tests.ledger.app '{"url": ..., "when_full": "spill", "count": 2000, ...}'
"""

from __future__ import annotations

import sys
import time

import orjson

from sluiceway import client


def main() -> None:
    cfg = orjson.loads(sys.argv[1])
    sinks: list[object] = [client.LokiSink(cfg["url"], labels={"app": cfg["name"]},
                                           timeout=cfg.get("timeout", 1.0), batch_wait=0.05,
                                           max_batch=cfg.get("batch", 100))]
    if cfg.get("file"):
        sinks.append(client.RotatingFileSink(cfg["file"], max_bytes=1 << 30))
    client.configure(sinks, when_full=cfg["when_full"], spill_dir=cfg.get("spill_dir", "spill"),
                     queue_size=cfg.get("queue_size", 1000), when_spill_full="block",
                     capture_stdlib=False, batch_size=cfg.get("batch", 100),
                     max_retries=cfg.get("max_retries", 100_000), name=cfg["name"],
                     report_interval=cfg.get("report_interval", 0.3),
                     shutdown_timeout=cfg.get("shutdown_timeout", 5.0))
    log = client.get_logger("app")
    rate = cfg.get("rate", 0)
    t0 = time.monotonic()
    for i in range(cfg["count"]):
        log.info("record", i=i)
        if rate and i % 10 == 9:
            ahead = (i + 1) / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    if cfg.get("flush", 0):
        ok = client.flush(cfg["flush"])
        print("flushed", ok, flush=True)
    client.shutdown()
    print("done", flush=True)


if __name__ == "__main__":
    main()
