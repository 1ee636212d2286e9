"""Syslog input: RFC 5424 and RFC 3164 over UDP and TCP (parsing lives in `sluiceway.wire`)."""

from __future__ import annotations

import threading

from sluiceway.agent._config import SyslogInput
from sluiceway.agent._inputs import LineInput
from sluiceway.agent._stats import Stats
from sluiceway.agent._tail import Emit


class SyslogListener(LineInput):
    def __init__(self, cfg: SyslogInput, emit: Emit, stats: Stats,
                 stop: threading.Event) -> None:
        super().__init__(dict(cfg.labels), list(cfg.pipeline), emit, stats, stop)
        self.cfg = cfg

    def run(self) -> None:
        raise NotImplementedError("syslog input waits for sluiceway.wire syslog parsing")
