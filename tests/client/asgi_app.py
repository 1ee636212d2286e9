"""A small FastAPI app for the shutdown tests, run by a real uvicorn or gunicorn.

Configured from the environment: SLW_URL (the LokiSink's server), SLW_APP (its `app`
label), SLW_WHEN_FULL, SLW_SPILL_DIR, SLW_SHUTDOWN_TIMEOUT, SLW_MIDDLEWARE=1 to add the
request middleware, SLW_RUN (a field on every record). It logs one record at import and
one per request to /r/{i}; /ready logs nothing.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from sluiceway import client

env = os.environ
client.configure(
    sinks=[client.LokiSink(env["SLW_URL"], labels={"app": env["SLW_APP"]}, batch_wait=5.0,
                           timeout=1.0)],
    when_full=env.get("SLW_WHEN_FULL", "drop"), spill_dir=env.get("SLW_SPILL_DIR", ".spill"),
    shutdown_timeout=float(env.get("SLW_SHUTDOWN_TIMEOUT", "5")), max_retries=1000,
    capture_stdlib=False, report_url=None)
log = client.get_logger("app", run=env.get("SLW_RUN", "1"))
log.info("started", i=-1)

app = FastAPI()
if env.get("SLW_MIDDLEWARE") == "1":
    app.add_middleware(client.RequestContextMiddleware, access_log=False)


@app.get("/ready")
def ready() -> str:
    return "ok"


@app.get("/r/{i}")
def request(i: int) -> dict[str, int]:
    log.info("request", i=i)
    return {"i": i}
