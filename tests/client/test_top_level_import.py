"""`from sluiceway import get_logger` works as the issue writes it, and stays lazy."""

from __future__ import annotations

import subprocess
import sys

from tests.procs import REPO


def test_get_logger_from_the_package_root() -> None:
    code = ("import sys, sluiceway\n"
            "assert 'sluiceway.client' not in sys.modules\n"
            "from sluiceway import get_logger, client\n"
            "log = get_logger('orders')\n"
            "log.info('Fetching order', order_id=42)\n"
            "assert client.flush(timeout=5)\n"
            "print(client.stats()['enqueued'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    record, enqueued = r.stdout.strip().splitlines()
    assert '"msg":"Fetching order"' in record and '"order_id":42' in record  # default: stdout
    assert enqueued == "1"
