"""Syslog input: RFC 5424 and RFC 3164 over UDP and TCP (parsing lives in `sluiceway.wire`).

Messages are parsed in groups (one `parse_syslog` call per burst of datagrams or per
TCP read). Under `when_full: block` a TCP connection simply stops being read, so the
sender feels TCP back-pressure; UDP has none, so datagrams the kernel buffer cannot
hold are lost by the kernel (see the docs).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

from sluiceway.agent._config import SyslogInput
from sluiceway.agent._http import parse_listen
from sluiceway.agent._inputs import LineInput
from sluiceway.agent._relabel import Relabeler, public
from sluiceway.agent._stats import Stats
from sluiceway.agent._tail import Emit
from sluiceway.wire import SyslogFramer, SyslogMessage, parse_syslog

log = logging.getLogger("sluiceway.agent")
_UNSEEN = object()
_LABEL_FIELDS = ("hostname", "app_name", "procid", "msgid", "severity", "facility")


def _meta(m: SyslogMessage, peer: str | None, with_sd: bool) -> dict[str, str]:
    """Promtail's `__syslog_*` labels of a message, for relabel_configs."""
    meta = {"__syslog_message_hostname": m.hostname, "__syslog_message_app_name": m.app_name,
            "__syslog_message_proc_id": m.procid, "__syslog_message_msg_id": m.msgid,
            "__syslog_message_severity": m.severity,
            "__syslog_message_facility": m.facility_name,
            "__syslog_connection_ip_address": peer}
    out = {k: v for k, v in meta.items() if v}
    if with_sd:
        for sd_id, params in m.structured_data.items():
            for k, v in params.items():
                out[f"__syslog_message_sd_{sd_id.replace('@', '_')}_{k}"] = v
    return out


def _fields(m: SyslogMessage) -> dict[str, object]:
    f: dict[str, object] = {k: v for k in _LABEL_FIELDS if (v := getattr(m, k)) is not None}
    if m.facility is not None:
        f["facility"] = m.facility_name
    for sd_id, params in m.structured_data.items():
        for k, v in params.items():
            f[f"{sd_id}.{k}"] = v
    return f


class SyslogListener(LineInput):
    def __init__(self, cfg: SyslogInput, emit: Emit, stats: Stats,
                 stop: threading.Event) -> None:
        super().__init__(dict(cfg.labels), list(cfg.pipeline), emit, stats, stop)
        self.cfg = cfg
        self.addr = parse_listen(cfg.listen)
        self._lock = threading.Lock()  # one pipeline, many connection threads
        self._label_cache: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        self.relabel = Relabeler(cfg.relabel_configs)
        self._relabeled: dict[tuple[tuple[str, str], ...], object] = {}
        self.tls: ssl.SSLContext | None = None
        if cfg.tls is not None:
            self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.load_cert_chain(str(cfg.tls.cert_file), str(cfg.tls.key_file))
            if cfg.tls.ca_file is not None:
                self.tls.load_verify_locations(str(cfg.tls.ca_file))
                self.tls.verify_mode = ssl.CERT_REQUIRED
        self.udp: socket.socket | None = None
        self.tcp: socket.socket | None = None
        if cfg.protocol in ("udp", "both"):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.udp.bind(self.addr)
            self.udp.settimeout(0.25)
        if cfg.protocol in ("tcp", "both"):
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind(self.addr)
            self.tcp.listen(64)
            self.tcp.settimeout(0.25)

    def handle(self, frames: list[bytes], peer: str | None = None) -> None:
        msgs = parse_syslog(frames)
        now = time.time_ns()
        incoming = self.cfg.use_incoming_timestamp
        ts = [m.ts if incoming and m.ts is not None else now + i for i, m in enumerate(msgs)]
        labels: list[dict[str, str] | None] = []
        if len(self._label_cache) > 10_000:  # bounded even with wild header values
            self._label_cache.clear()
        keep: list[int] = []
        for i, m in enumerate(msgs):
            if self.relabel:
                meta = _meta(m, peer, self.cfg.label_structured_data)
                key = tuple(sorted(meta.items()))
                lab = self._relabeled.get(key, _UNSEEN)
                if lab is _UNSEEN:
                    got = self.relabel.apply({**self.cfg.labels, **meta})
                    lab = self._relabeled[key] = None if got is None else public(got)
                if lab is None:
                    continue  # dropped by relabeling
                keep.append(i)
                labels.append(lab)  # type: ignore[arg-type]
                continue
            keep.append(i)
            key = tuple((k, str(v)) for k in self.cfg.label_fields
                        if (v := (m.facility_name if k == "facility" else getattr(m, k, None)))
                        is not None)
            # Shared dicts per label set: grouping into streams then costs a lookup.
            labels.append(self._label_cache.setdefault(key, dict(key)) if key else None)
        limit = self.cfg.max_message_length
        if self.cfg.use_rfc5424_message:
            lines = [frames[i].decode("utf-8", "replace").rstrip("\n")[:limit] for i in keep]
        else:
            lines = [msgs[i].message[:limit] for i in keep]
        # Header fields feed pipeline stages (labels, output, drop); skip them if none.
        fields = [_fields(msgs[i]) for i in keep] if self.cfg.pipeline else None
        with self._lock:
            self.deliver(lines, [ts[i] for i in keep], labels, fields)

    def _udp_loop(self) -> None:
        assert self.udp is not None
        while not self.stop.is_set():
            try:
                data = self.udp.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            frames = [data]
            self.udp.setblocking(False)
            try:  # drain what already arrived: one parse and one delivery per burst
                while len(frames) < 1000:
                    frames.append(self.udp.recv(65535))
            except (BlockingIOError, OSError):
                pass
            finally:
                self.udp.settimeout(0.25)
            self.handle(frames)

    def _conn_loop(self, conn: socket.socket, peer: str) -> None:
        framer = SyslogFramer()
        if self.tls is not None:
            try:
                conn.settimeout(10)
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.warning("syslog TLS handshake with %s failed: %s", peer, exc)
                conn.close()
                return
        conn.settimeout(0.25)
        last = time.monotonic()
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(1 << 16)
                except TimeoutError:
                    if time.monotonic() - last > self.cfg.idle_timeout:
                        break  # an idle connection is closed, as Promtail does
                    continue
                except OSError:
                    break
                if not data:
                    break
                last = time.monotonic()
                frames = framer.feed(data)
                if frames:
                    self.handle(frames, peer)
            rest = framer.flush()
            if rest:
                self.handle(rest, peer)

    def _tcp_loop(self) -> None:
        assert self.tcp is not None
        while not self.stop.is_set():
            try:
                conn, addr = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._conn_loop, args=(conn, str(addr[0])), daemon=True,
                             name="agent-syslog-conn").start()

    def run(self) -> None:
        threads = []
        if self.udp is not None:
            threads.append(threading.Thread(target=self._udp_loop, daemon=True))
        if self.tcp is not None:
            threads.append(threading.Thread(target=self._tcp_loop, daemon=True))
        log.info("syslog listening on %s:%d (%s)", *self.addr, self.cfg.protocol)
        for t in threads:
            t.start()
        while not self.stop.wait(0.25):
            if self.pipeline.stateful:
                with self._lock:
                    self.deliver([])
        for t in threads:
            t.join(1)
        for s in (self.udp, self.tcp):
            if s is not None:
                s.close()
