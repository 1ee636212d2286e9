"""The results cache and chunks that cannot be read: a damaged chunk is quarantined,
which bumps the store's generation (cached splits computed with it are not reused); a
split read while a chunk could not be read (the answer's `warnings`) is never cached, so
once the chunk reads again its lines are counted again. In process, real store on disk."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from tests.inproc import InProcessServer

S = 10**9
H = 3600 * S
LINES = 100
QUERY = 'sum by (job) (count_over_time({job="c"}[5m]))'


def _chunks(data: Path) -> set[Path]:
    return set((data / "tenants" / "t-fake" / "chunks").glob("*/*.chunk"))


def _setup(data: Path) -> tuple[int, Path]:
    """Two flushed chunks of one stream, in two closed hours; returns (t0, the second)."""
    t0 = time.time_ns() // H * H - 4 * H
    app = InProcessServer(data)
    try:
        for k, at in enumerate((t0 + 600 * S, t0 + 2 * H + 600 * S)):
            body = orjson.dumps({"streams": [{"stream": {"job": "c"}, "values": [
                [str(at + i), f"part={k} i={i}"] for i in range(LINES)]}]})
            r = app.post("/loki/api/v1/push", content=body,
                         headers={"Content-Type": "application/json"})
            assert r.status_code == 204, r.text
            before = _chunks(data)
            assert app.post("/flush").status_code == 204
            [new] = _chunks(data) - before
    finally:
        app.close()
    return t0, new


def _run(app: InProcessServer, t0: int) -> tuple[float, list[str], tuple[int, int, int]]:
    """(lines counted, warnings, the cache's requested/found/stored) of QUERY."""
    r = app.get("/loki/api/v1/query_range", params={
        "query": QUERY, "start": str(t0), "end": str(t0 + 3 * H), "step": "300"})
    assert r.status_code == 200, r.text
    body = r.json()
    total = sum(float(v) for s in body["data"]["result"] for _, v in s["values"])
    c = body["data"]["stats"]["cache"]["result"]
    return total, body.get("warnings", []), (c["entriesRequested"], c["entriesFound"],
                                            c["entriesStored"])


def test_a_quarantined_chunk_bumps_the_generation(tmp_path: Path) -> None:
    # Cached splits counted the chunk's lines; once it is found damaged (here by a log
    # query) and quarantined, the store no longer serves them, and the metric query must
    # not answer them from the cache either.
    data = tmp_path / "data"
    t0, second = _setup(data)
    app = InProcessServer(data, **{"storage.cache_size": 0})  # every read goes to disk
    try:
        total, warnings, (requested, found, stored) = _run(app, t0)
        assert (total, warnings, found, stored) == (2 * LINES, [], 0, requested)
        raw = bytearray(second.read_bytes())
        raw[len(raw) // 2] ^= 0xFF  # damage inside the compressed lines
        second.write_bytes(bytes(raw))
        before = app.store.generation
        r = app.get("/loki/api/v1/query_range", params={
            "query": '{job="c"}', "start": str(t0), "end": str(t0 + 3 * H), "limit": "1000"})
        assert r.status_code == 200 and "quarantined" in r.json()["warnings"][0], r.text
        assert app.store.generation == before + 1
        total, warnings, (requested, found, stored) = _run(app, t0)
        assert (total, warnings, found, stored) == (LINES, [], 0, requested)
    finally:
        app.close()


def test_a_split_read_while_a_chunk_was_unreadable_is_not_cached(tmp_path: Path) -> None:
    data = tmp_path / "data"
    t0, second = _setup(data)
    saved = second.with_suffix(".saved")
    second.rename(saved)
    second.symlink_to(second.name)  # reading it fails with ELOOP: left out, not quarantined
    app = InProcessServer(data)
    try:
        before = app.store.generation
        total, warnings, (requested, _, stored) = _run(app, t0)
        assert total == LINES and len(warnings) == 1 and "could not be read" in warnings[0]
        assert stored < requested  # not the split of the chunk that was left out
        assert app.store.generation == before  # nothing changed on disk
        second.unlink()
        saved.rename(second)
        total, warnings, _ = _run(app, t0)
        assert (total, warnings) == (2 * LINES, [])
    finally:
        app.close()
