"""Process life: flush at exit with a deadline, a hung sink cannot hold exit, fork."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sluiceway import client
from tests.client.helpers import MemorySink
from tests.procs import REPO


def run_py(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=timeout,
                          capture_output=True, text=True)


def test_records_are_flushed_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    r = run_py("from sluiceway import client\n"
               f"client.configure(sinks=[client.RotatingFileSink({str(path)!r})])\n"
               "log = client.get_logger('exit')\n"
               "[log.info('bye', i=i) for i in range(5000)]\n")
    assert r.returncode == 0, r.stderr
    assert len(path.read_text().splitlines()) == 5000


def test_a_hung_sink_cannot_hold_the_exit_past_its_deadline() -> None:
    # The sink never returns: the process exits only because the deadline gives it up.
    r = run_py("import threading\n"
               "from sluiceway import client\n"
               "class Hung:\n"
               "    def write_batch(self, records): threading.Event().wait()\n"
               "client.configure(sinks=[Hung()], shutdown_timeout=1.0)\n"
               "client.get_logger('x').info('never written')\n")
    assert r.returncode == 0, r.stderr
    assert "not delivered at exit" in r.stderr


def test_logging_works_in_a_forked_child() -> None:
    sink = MemorySink()
    client.configure(sinks=[sink], capture_stdlib=False)
    log = client.get_logger("fork")
    log.info("parent before")
    pid = os.fork()
    if pid == 0:  # child: fresh threads and buffers; the parent's are not shared
        code = 1
        try:
            log.info("child")
            ok = client.flush(5)
            msgs = [r["msg"] for r in client.stats() and sink.records]
            code = 0 if ok and "child" in msgs and client.stats()["written"] == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log.info("parent after")
    assert client.flush(5)
    assert [r["msg"] for r in sink.records] == ["parent before", "parent after"]


def test_a_forked_child_does_not_keep_the_parents_spill_lock(tmp_path: Path) -> None:
    from sluiceway.buffer import Buffer, BufferConfig

    client.configure(sinks=[MemorySink()], when_full="spill", spill_dir=tmp_path,
                     capture_stdlib=False)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child lives on after the parent let go of the directory
        os.close(r)
        os.write(w, b"x")
        time.sleep(3)
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"x"
    client.shutdown(1)  # the parent releases the spill directory ...
    try:
        # ... and it is free again although the child is still alive
        Buffer(BufferConfig(when_full="spill", spill_dir=tmp_path / "memory")).close()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
