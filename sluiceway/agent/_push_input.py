"""`loki_push` input: the agent takes Loki pushes itself (Promtail's `loki_push_api`).

`POST /loki/api/v1/push` (JSON or protobuf, gzip/deflate), `POST /promtail/api/v1/raw`
(one line per line of the body) and `GET /ready`. Each stream's labels, with the input's
`labels`, go through `relabel_configs` (a stream whose labels are dropped is refused
nothing: it is skipped), then the pipeline. The answer is 204 once the lines are in the
agent's queue; while the queue blocks, so does the answer (the sender slows down).

The ledger (ARCHITECTURE.md §ledger): the input is a source, numbering its entries per
run. A push that carries an `X-Sluiceway-Ledger` header (an in-app client, or another
agent, pushing here: a relay) keeps its numbers instead: they are taken to belong to
the body's lines in order (the client's own ledger order), go on with those lines, and
what this hop drops of them (a stream relabelled away, a drop stage) is counted lost
here under the client's source (`AgentLedger.received`/`lose`). With a joining stage
the entries are this input's own, and the client's numbers are counted `joined` at
this hop. `POST /sluiceway/api/v1/heartbeat` takes the client's heartbeats and relays
them (the agent's pipeline view) to where the agent reports, so the client's figures
reach the server's ledger too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sluiceway.agent._config import LokiPushInput
from sluiceway.agent._http import parse_listen
from sluiceway.agent._inputs import LineInput
from sluiceway.agent._records import Records
from sluiceway.agent._relabel import Relabeler, public
from sluiceway.agent._stats import Stats
from sluiceway.agent._tail import Emit
from sluiceway.model import (
    LEDGER_HEADER,
    LedgerGroup,
    LedgerHeaderError,
    decode_ledger,
    runs_of,
)
from sluiceway.wire import BodyTooLarge, WireError, decode_push

log = logging.getLogger("sluiceway.agent")
HEARTBEAT_PATH = "/sluiceway/api/v1/heartbeat"
MAX_HEARTBEAT = 64 * 1024

Relayed = tuple[str, str, int]  # (source, epoch, number) of one relayed line
# The agent's ledger: told the client numbers received, and those lost at this hop.
Received = Callable[[list[LedgerGroup]], None]
Lose = Callable[[list[LedgerGroup], str], None]
# A heartbeat posted here: (path, body) -> (status, body, content type)
Heartbeat = Callable[[str, bytes], tuple[int, bytes, str]]


def relayed_groups(keys: list[Relayed]) -> list[LedgerGroup]:
    """Relayed numbers in line order as ledger groups (runs joined where they touch)."""
    out: list[LedgerGroup] = []
    i = 0
    while i < len(keys):
        src, ep, _ = keys[i]
        j = i
        while j < len(keys) and keys[j][0] == src and keys[j][1] == ep:
            j += 1
        out.append(LedgerGroup(src, ep, runs_of(k[2] for k in keys[i:j])))
        i = j
    return out


def expand(groups: list[LedgerGroup]) -> list[Relayed]:
    return [(g.source, g.epoch, n) for g in groups for a, b in g.runs for n in range(a, b)]


class PushReceiver(LineInput):
    def __init__(self, cfg: LokiPushInput, emit: Emit, stats: Stats,
                 stop: threading.Event, received: Received | None = None,
                 lose: Lose | None = None, heartbeat: Heartbeat | None = None) -> None:
        super().__init__({}, list(cfg.pipeline), emit, stats, stop)
        self.cfg = cfg
        self.relabel = Relabeler(cfg.relabel_configs)
        self._lock = threading.Lock()  # one pipeline, many request threads
        self.received, self.lose, self.heartbeat = received, lose, heartbeat
        self._bad_logged = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?", 1)[0] == "/ready":
                    self._send(200, b"ready\n")
                else:
                    self._send(404, b"not found\n")

            def do_POST(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                size = int(self.headers.get("Content-Length") or 0)
                if size > cfg.max_body_size:
                    self._send(413, b"request body too large\n")
                    return
                if path == HEARTBEAT_PATH and receiver.heartbeat is not None:
                    if size > MAX_HEARTBEAT:
                        self._send(413, f"body larger than {MAX_HEARTBEAT} bytes\n".encode())
                        return
                    code, out, _ctype = receiver.heartbeat(path, self.rfile.read(size))
                    self._send(code, out)
                    return
                body = self.rfile.read(size)
                try:
                    if path == "/loki/api/v1/push":
                        receiver.push(body, self.headers.get("Content-Type") or "",
                                      self.headers.get("Content-Encoding"),
                                      self.headers.get(LEDGER_HEADER))
                    elif path == "/promtail/api/v1/raw":
                        receiver.raw(body)
                    else:
                        self._send(404, b"not found\n")
                        return
                except BodyTooLarge as exc:
                    self._send(413, f"{exc}\n".encode())
                    return
                except WireError as exc:
                    self._send(400, f"{exc}\n".encode())
                    return
                self._send(204, b"")

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(parse_listen(cfg.listen), Handler)
        self.httpd.daemon_threads = True

    def push(self, body: bytes, ctype: str, encoding: str | None,
             ledger: str | None = None) -> None:
        now = time.time_ns()
        streams = decode_push(body, ctype, encoding)
        keys = self._relayed(ledger, sum(len(sb.lines) for sb in streams))
        lines: list[str] = []
        ts: list[int] = []
        labels: list[dict[str, str] | None] = []
        kept: list[Relayed] = []
        skipped: list[Relayed] = []
        at = 0
        for sb in streams:
            n = len(sb.lines)
            got = self.relabel.apply({**self.cfg.labels, **sb.labels}) if self.relabel \
                else {**self.cfg.labels, **sb.labels}
            if got is None:
                if keys is not None:
                    skipped += keys[at:at + n]
                at += n
                continue
            if keys is not None:
                kept += keys[at:at + n]
            at += n
            lab = public(got)
            lines += sb.lines
            ts += sb.ts if self.cfg.use_incoming_timestamp else \
                list(range(now, now + n))
            labels += [lab] * n
            now += n
        if keys is None:
            if lines:
                with self._lock:
                    self.deliver(lines, ts, labels)
            return
        if self.received is not None and keys:
            self.received(relayed_groups(keys))
        if skipped and self.lose is not None:  # relabelled away: dropped at this hop
            self.lose(relayed_groups(skipped), "filtered")
        if lines:
            with self._lock:
                self.deliver_relayed(lines, ts, labels, kept)

    def _relayed(self, header: str | None, total: int) -> list[Relayed] | None:
        """The numbers a pushed body carries, one per line in order (None: none, or a
        header that does not fit the body: its lines get this input's numbers)."""
        if not header or self.numbers is None:
            return None
        try:
            groups = decode_ledger(header)
        except LedgerHeaderError as exc:
            self._bad(f"invalid {LEDGER_HEADER} header: {exc}")
            return None
        if sum(g.lines for g in groups) != total:
            self._bad(f"{LEDGER_HEADER} names {sum(g.lines for g in groups)} lines, the "
                      f"push has {total}")
            return None
        return expand(groups)

    def _bad(self, msg: str) -> None:
        now = time.monotonic()
        if now - self._bad_logged > 60:
            self._bad_logged = now
            log.warning("Loki push input: %s; its lines are numbered as this input's "
                        "(said once a minute)", msg)

    def deliver_relayed(self, lines: list[str], ts: list[int],
                        labels: list[dict[str, str] | None], keys: list[Relayed]) -> None:
        """Lines that keep a client's numbers: `Records.seqs` are indexes into `keys`
        while the stages run; those a stage drops are lost here as `filtered`."""
        self.stats.add(lines_read=len(lines), bytes_read=sum(map(len, lines)))
        if self.pipeline.stateful:  # joined into this input's own entries
            if self.lose is not None:
                self.lose(relayed_groups(keys), "joined")
            self.deliver(lines, ts, labels, count=False)
            return
        recs = Records(ts, lines, labels=labels)
        recs.seqs = list(range(len(lines)))
        out = self.pipeline.run(recs)
        pieces = self.pipeline.to_pieces(out)
        left = out.seqs if out.seqs is not None else []
        if len(left) < len(lines) and self.lose is not None:
            gone = sorted(set(range(len(lines))) - set(left))
            self.lose(relayed_groups([keys[i] for i in gone]), "filtered")
        if pieces:
            nbytes = sum(len(line) for p in pieces for line in p.lines)
            groups = relayed_groups([keys[i] for i in left])
            self.emitting_lines = len(out)
            try:
                self.emit(pieces, len(out), nbytes, [], False, groups)
            finally:
                self.emitting_lines = 0

    def raw(self, body: bytes) -> None:
        text = body.decode("utf-8", "replace")
        lines = [line for line in text.split("\n") if line]
        if lines:
            lab = public(self.relabel.apply(dict(self.cfg.labels)) or {}) if self.relabel \
                else dict(self.cfg.labels)
            with self._lock:
                self.deliver(lines, None, [lab] * len(lines))

    def run(self) -> None:
        t = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), daemon=True,
                             name="agent-push-input")
        t.start()
        log.info("Loki push input listening on http://%s:%d", *self.httpd.server_address[:2])
        while not self.stop.wait(0.25):
            if self.pipeline.stateful:
                with self._lock:
                    self.deliver([])
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.pipeline.stateful:  # a clean stop: a joiner's last entry goes out
            with self._lock:
                self.deliver([], final=True)
