"""Write `tests/data/store-v1/`: a small data dir as the store of format version 1 leaves
it, and `store-v1.expected.json`, the lines each stream must hold when it is opened.

This was run ONCE, with the code of the commit that added it (the release before the
storage formats change, issue 11), and its output is committed. Do not run it again after
a format change: the point of the data is that an older release wrote it. Later releases
must open it (read it as it is, or migrate it with a log line) and serve every line:
`tests/server/test_migration.py`.

What the directory holds, and why:
- three tenants: `acme` (`t-acme`), `team.eu` (`x-<hex>`, an id with a dot) and a
  150-character id (`b-<base32>`, too long for hex);
- several streams per tenant, JSON, logfmt and plain lines, unicode, empty lines, long
  lines, structured metadata on some lines (and `null` on others), equal timestamps, a
  push whose lines arrive newest first, and late lines that fall between the lines of a
  flushed chunk (a chunk and the replayed head overlap in time);
- level-1 chunks, and chunks the compactor merged at level 17 (two passes: the files
  the second pass replaced are still on disk, as after a restart; their "del" records
  name them);
- "del" records from retention (the stream `{app="old"}` lost all its chunks, every
  stream lost its oldest chunk), and from compaction;
- an unflushed WAL: records after the last flush, some of whose streams were flushed
  and some not (replay must skip exactly what chunks hold);
- a torn index tail in two forms: `team.eu`'s last append cut in the middle of a frame
  (its chunk file is on disk and its lines are in the WAL too), and half a "del" frame
  naming a live chunk appended to the long tenant's index.

Every line is unique, so "exactly once" can be checked. The manifest maps tenant →
stream labels (Loki's text form) → `[ts (string, ns), line, structured metadata or
null]` in timestamp order (ties in push order).

Usage: python tests/data/make_store_v1.py [--out tests/data]
"""

from __future__ import annotations

import argparse
import random
import shutil
import struct
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sluiceway.model import Matcher, format_labels  # noqa: E402
from sluiceway.server import Config  # noqa: E402
from sluiceway.server._distributor import validate, wal_record  # noqa: E402
from sluiceway.store import Store, StoreConfig  # noqa: E402
from sluiceway.wire import decode_push_blocks  # noqa: E402

T0 = 1_709_251_200 * 10**9  # 2024-03-01T00:00:00Z
HOUR = 3600 * 10**9
ROUND_NS = 8 * HOUR  # rounds 0..6 span three days (three chunk directories)
RETENTION_S = 86_400.0
RETENTION_CUTOFF = T0 + 4 * HOUR  # deletes every chunk of round 0, nothing after it
LINES_PER_PUSH = 12
PUSHES_PER_ROUND = 2
LONG_TENANT = "long.tenant-" + "x" * 138  # 150 characters, Loki's limit

TENANTS: dict[str, list[dict[str, str]]] = {
    "acme": [{"app": "api", "env": "prod"}, {"app": "worker", "env": "prod"},
             {"app": "old", "env": "prod"}],
    "team.eu": [{"app": "web", "region": "eu-west"}, {"app": "db", "region": "eu-west"}],
    LONG_TENANT: [{"app": "batch"}, {"app": "cron", "host": "h1"}],
}
_UNICODE = ["grüße aus köln", "日本語のログ行", "émoji 🚀 ok", "naïve café", "Ελληνικά"]
Entry = tuple[int, str, dict[str, str] | None]


def _line(rng: random.Random, labels: dict[str, str], tag: str) -> str:
    app = labels["app"]
    trace = f"{rng.getrandbits(64):016x}"
    if app in ("api", "db"):
        return (f'{{"level":"{rng.choice(["info", "warn", "error"])}","msg":"request done",'
                f'"path":"/v1/{rng.choice(["orders", "users", "cart"])}","status":'
                f'{rng.choice([200, 404, 500])},"ms":{rng.randrange(1, 900)},'
                f'"trace":"{trace}","seq":"{tag}"}}')
    if app in ("worker", "cron"):
        return (f"level=info msg=\"job ran\" job={rng.choice(['sync', 'gc', 'mail'])} "
                f"duration={rng.randrange(1, 5000)}ms trace={trace} seq={tag}")
    if app == "web":
        return f"{rng.choice(_UNICODE)} · GET /{rng.choice(['a', 'b'])} {tag} {trace}"
    if app == "batch" and rng.random() < 0.1:
        return f"batch {tag} payload=" + "".join(rng.choice("abcdef0123456789")
                                                  for _ in range(rng.randrange(800, 2000)))
    return f"{app} {tag} trace={trace}"


def _entries(rng: random.Random, labels: dict[str, str], rnd: int, push: int,
             start: int) -> list[Entry]:
    out: list[Entry] = []
    t = start
    for k in range(LINES_PER_PUSH):
        tag = f"r{rnd}p{push}k{k:02d}"
        line = _line(rng, labels, tag)
        if labels["app"] == "web" and k == 5:
            line = ""  # an empty line: valid in Loki, and only its timestamp tells it apart
        md: dict[str, str] | None = None
        if labels["app"] == "api" and k % 3 == 0:
            md = {"trace_id": f"{rng.getrandbits(64):016x}", "user": f"u{rng.randrange(999)}"}
        elif labels["app"] == "db":
            md = {"shard": str(k % 4), "note": rng.choice(["primär", "replica", "日本"])}
        out.append((t, line, md))
        # Equal timestamps for pairs of worker lines; otherwise a step of 1.5 s.
        if not (labels["app"] == "worker" and k % 2 == 0):
            t += 1_500_000_000
    if labels["app"] == "worker" and push == 1:
        out.reverse()  # a push whose entries arrive newest first
    return out


def _push_body(streams: list[tuple[dict[str, str], list[Entry]]]) -> bytes:
    body = {"streams": [{"stream": labels, "values": [
        [str(ts), line, md] if md is not None else [str(ts), line] for ts, line, md in ents]}
        for labels, ents in streams]}
    return orjson.dumps(body)


class Builder:
    def __init__(self, data: Path) -> None:
        self.cfg = StoreConfig(data, flush_on_shutdown=False, compaction_enabled=False,
                               retention_period_s=RETENTION_S, max_chunk_age_s=1e9,
                               chunk_idle_s=1e9, flush_check_interval_s=1e9,
                               wal_segment_bytes=64 << 10)
        self.store = Store(self.cfg)
        self.limits = Config().limits
        self.rng = random.Random(20240301)
        self.pushed: dict[str, dict[str, list[Entry]]] = {
            t: {format_labels(s): [] for s in streams} for t, streams in TENANTS.items()}

    def push(self, tenant: str, streams: list[tuple[dict[str, str], list[Entry]]]) -> None:
        """The server's ingest path without HTTP: decode, validate, WAL record, store."""
        blocks = decode_push_blocks(_push_body(streams), "application/json", None)
        v = validate(blocks, self.limits, now_ns=T0 + 3 * 86_400 * 10**9)
        assert not v.total_rejected, v.message()
        payload, crc = wal_record(tenant, v.blocks)
        self.store.push(tenant, v.blocks, payload, crc).result()
        for labels, ents in streams:
            self.pushed[tenant][format_labels(labels)] += ents

    def round(self, rnd: int) -> None:
        for tenant, streams in TENANTS.items():
            for p in range(PUSHES_PER_ROUND):
                batch = []
                for labels in streams:
                    if labels["app"] == "old" and rnd > 0:
                        continue
                    start = T0 + rnd * ROUND_NS + p * LINES_PER_PUSH * 1_500_000_000
                    batch.append((labels, _entries(self.rng, labels, rnd, p, start)))
                if batch:
                    self.push(tenant, batch)

    def flush_streams(self, tenant: str, apps: set[str] | None) -> None:
        """Write the heads of some streams only (all when `apps` is None), the WAL kept."""
        ts = self.store.tenant(tenant)
        jobs = []
        with ts.lock:
            for s in ts.streams.values():
                if apps is None or s.labels["app"] in apps:
                    sealed = s.seal()
                    if sealed is not None:
                        jobs.append((ts, s, sealed))
        assert self.store._write(jobs) is None


def _tenant_dir(data: Path, tenant: str) -> Path:
    from sluiceway.store._store import tenant_dirname

    return data / "tenants" / tenant_dirname(tenant)


def _frames(data: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos + 8 <= len(data):
        length, _crc = struct.unpack_from("<II", data, pos)
        out.append((pos, pos + 8 + length))
        pos += 8 + length
    assert pos == len(data)
    return out


def build(data: Path) -> dict[str, dict[str, list[Entry]]]:
    b = Builder(data)
    st = b.store
    for rnd in range(3):
        b.round(rnd)
        st.flush_all()
    assert st.apply_retention(now_ns=RETENTION_CUTOFF + int(RETENTION_S * 1e9)) == 7
    assert st.compact(min_age_s=0).chunks_out == 6
    for rnd in (3, 4):
        b.round(rnd)
        st.flush_all()
    assert st.compact(min_age_s=0).chunks_out == 6  # deletes pass 1's replaced files
    # Round 5: flushed for some streams only; the WAL keeps every record of the round.
    b.round(5)
    b.flush_streams("acme", {"api"})
    b.flush_streams("team.eu", None)
    # Late lines for the flushed stream, between the lines of its new chunk (inside the
    # unordered window): a chunk and the WAL's head overlap in time.
    api = TENANTS["acme"][0]
    b.push("acme", [(api, [(T0 + 5 * ROUND_NS + 750_000_000 + k * 3_000_000_000,
                            f"late line {k} for round 5", None) for k in range(6)])])
    # Round 6: nothing flushed, only in the WAL.
    b.round(6)
    st.close()

    # team.eu: its last index append (round 5's chunks) cut in the middle of its last frame.
    index = _tenant_dir(data, "team.eu") / "index.log"
    raw = index.read_bytes()
    start, end = _frames(raw)[-1]
    assert orjson.loads(raw[start + 8 : end])["op"] == "add"
    index.write_bytes(raw[: start + (end - start) // 2])
    # The long tenant: half a "del" frame naming a live chunk appended (never whole).
    index = _tenant_dir(data, LONG_TENANT) / "index.log"
    raw = index.read_bytes()
    recs = [orjson.loads(raw[a + 8 : z]) for a, z in _frames(raw)]
    gone = {r["path"] for r in recs if r["op"] == "del"}
    live = [r for r in recs if r["op"] == "add" and r["path"] not in gone][-1]
    rec = orjson.dumps({"op": "del", "fp": live["fp"], "path": live["path"]})
    frame = struct.pack("<II", len(rec), zlib.crc32(rec)) + rec
    index.write_bytes(raw + frame[: len(frame) // 2])

    cutoff = RETENTION_CUTOFF
    return {t: {k: sorted((e for e in ents if e[0] >= cutoff), key=lambda e: e[0])
                for k, ents in streams.items() if any(e[0] >= cutoff for e in ents)}
            for t, streams in b.pushed.items()}


def read_all(data: Path) -> dict[str, dict[str, list[Entry]]]:
    """Every line of a copy of `data`, opened with this code."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "data"
        shutil.copytree(data, copy)
        st = Store(StoreConfig(copy, flush_on_shutdown=False, compaction_enabled=False))
        out: dict[str, dict[str, list[Entry]]] = {}
        try:
            for tenant in TENANTS:
                for ref in st.series([tenant], [Matcher("app", "=~", ".+")], 0, 2**62):
                    got: list[Entry] = []
                    for blk in st.blocks(ref, 0, 2**62, "forward"):
                        md = blk.metadata or [None] * len(blk)
                        got += [(int(t), ln.decode(), m or None)
                                for t, ln, m in zip(blk.ts.tolist(), blk.lines(), md,
                                                    strict=True)]
                    out.setdefault(tenant, {})[format_labels(ref.labels)] = got
        finally:
            st.close()
    return out


def _sorted(m: dict[str, dict[str, list[Entry]]]) -> dict[str, dict[str, list[Any]]]:
    return {t: {k: sorted(v, key=lambda e: (e[0], e[1])) for k, v in s.items()}
            for t, s in m.items()}


def _manifest(expected: dict[str, dict[str, list[Entry]]]) -> bytes:
    """JSON, one entry a line (diffable, and small)."""
    out = [b'{"about": "tests/data/make_store_v1.py: the lines of store-v1 per tenant and '
           b'stream, [ts ns, line, structured metadata or null]",', b' "tenants": {']
    for i, (tenant, streams) in enumerate(expected.items()):
        out.append(b"  " + orjson.dumps(tenant) + b": {")
        for j, (labels, ents) in enumerate(streams.items()):
            out.append(b"   " + orjson.dumps(labels) + b": [")
            out += [b"    " + orjson.dumps([str(ts), ln, md]) + (b"," if k + 1 < len(ents) else b"")
                    for k, (ts, ln, md) in enumerate(ents)]
            out.append(b"   ]" + (b"," if j + 1 < len(streams) else b""))
        out.append(b"  }" + (b"," if i + 1 < len(expected) else b""))
    out += [b" }", b"}", b""]
    data = b"\n".join(out)
    assert orjson.loads(data)["tenants"] == {
        t: {k: [[str(ts), ln, md] for ts, ln, md in v] for k, v in s.items()}
        for t, s in expected.items()}
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args()
    data = args.out / "store-v1"
    if data.exists():
        shutil.rmtree(data)
    expected = build(data)
    got = read_all(data)
    assert _sorted(got) == _sorted(expected), "the data dir does not read back as written"
    (args.out / "store-v1.expected.json").write_bytes(_manifest(expected))
    n = sum(len(v) for s in expected.values() for v in s.values())
    size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    print(f"{data}: {size} bytes, {n} lines in "
          f"{sum(len(s) for s in expected.values())} streams")


if __name__ == "__main__":
    main()
