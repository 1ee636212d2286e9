"""`journal` input: systemd journal entries read with `journalctl -o json -f`.

Each entry's fields become `__journal_<field lowercased>` labels for relabel_configs (and
`__journal_priority_keyword`), as Promtail names them; the line is `MESSAGE`, or the
whole entry as JSON with `json: true`. The cursor of the last entry handed to the queue
is kept in `<data_dir>/journal-<hash>.cursor`, so a restart goes on from there
(entries still in memory at a crash are sent again or, like syslog's, lost uncounted).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import threading
import time
from pathlib import Path

import orjson

from sluiceway.agent._config import JournalInput
from sluiceway.agent._inputs import LineInput
from sluiceway.agent._relabel import Relabeler, public
from sluiceway.agent._stats import Stats
from sluiceway.agent._tail import Emit
from sluiceway.durable import atomic_write

log = logging.getLogger("sluiceway.agent")
PRIORITIES = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug")


def journal_available(path: str | None = None) -> str | None:
    """None when the journal can be read here, else why not."""
    if shutil.which("journalctl") is None:
        return "journalctl is not installed"
    dirs = [Path(path)] if path else [Path("/var/log/journal"), Path("/run/log/journal")]
    if not any(d.is_dir() and any(d.rglob("*.journal")) for d in dirs):
        return "no journal files (journald is not running here)"
    return None


def entry_labels(entry: dict[str, object]) -> dict[str, str]:
    out = {f"__journal_{k.lower()}": str(v) for k, v in entry.items()
           if isinstance(v, (str, int)) and not k.startswith("__")}
    prio = str(entry.get("PRIORITY", ""))
    if prio.isdigit() and int(prio) < len(PRIORITIES):
        out["__journal_priority_keyword"] = PRIORITIES[int(prio)]
    return out


class JournalReader(LineInput):
    def __init__(self, cfg: JournalInput, data_dir: Path, emit: Emit, stats: Stats,
                 stop: threading.Event) -> None:
        super().__init__({}, list(cfg.pipeline), emit, stats, stop)
        self.cfg = cfg
        self.relabel = Relabeler(cfg.relabel_configs)
        name = hashlib.blake2b(repr((cfg.path, cfg.matches, sorted(cfg.labels.items())))
                               .encode(), digest_size=6).hexdigest()
        self.cursor_file = data_dir / f"journal-{name}.cursor"

    def _command(self) -> list[str]:
        cmd = ["journalctl", "-o", "json", "--follow", "--no-pager"]
        if self.cfg.path:
            cmd += ["--directory", self.cfg.path]
        try:
            cursor = self.cursor_file.read_text().strip()
        except OSError:
            cursor = ""
        if cursor:
            cmd += ["--after-cursor", cursor]
        else:
            cmd += ["--since", f"-{int(self.cfg.max_age)}s"]
        if self.cfg.matches:
            cmd += self.cfg.matches.split()
        return cmd

    def run(self) -> None:
        why = journal_available(self.cfg.path)
        if why is not None:
            log.warning("journal input: %s; it reads nothing", why)
            return
        proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        def stop_reading() -> None:
            self.stop.wait()
            proc.terminate()

        threading.Thread(target=stop_reading, daemon=True).start()
        for raw in proc.stdout:
            try:
                entry = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            meta = entry_labels(entry)
            got = self.relabel.apply({**self.cfg.labels, **meta}) if self.relabel \
                else dict(self.cfg.labels)
            if got is not None:
                line = raw.decode("utf-8", "replace").strip() if self.cfg.as_json \
                    else str(entry.get("MESSAGE", ""))
                ts = int(str(entry.get("__REALTIME_TIMESTAMP", "0")) or 0) * 1000 \
                    or time.time_ns()
                self.deliver([line], [ts], [public(got)])
            cursor = entry.get("__CURSOR")
            if isinstance(cursor, str):
                atomic_write(self.cursor_file, cursor.encode())
        proc.wait()
