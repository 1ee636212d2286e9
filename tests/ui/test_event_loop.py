"""The browser tests leave the main thread free for the event loops of the tests after
them, whatever the order: `pytest tests/ui/<a browser test> tests/<an in-process server
test>` passes (with the browser kept for the whole session it failed with "Cannot run the
event loop while another loop is running")."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from tests.procs import REPO


def test_a_page_renders(page: Any) -> None:
    page.set_content("<p id=x>rendered</p>")
    assert page.inner_text("#x") == "rendered"


def test_an_in_process_server_test_after_a_browser_test_passes() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/ui/test_event_loop.py::test_a_page_renders",
         "tests/server/test_volume_lookback.py"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "2 passed" in r.stdout, r.stdout[-3000:]
