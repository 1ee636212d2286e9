"""Browser tests of the web UI: a real server process and Debian's headless chromium.

One server and one browser serve every test here (starting them is most of the cost; the
browser stops after the last one, see `browser`); each test writes its own `app` label so
tests never see each other's lines, and gets a fresh browser context so query history and
other local storage start empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.procs import ServerProcess
from tests.ui._support import CHROMIUM, CHROMIUM_ARGS, stop_quickly


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("ui") / "data").start()
    yield srv
    stop_quickly(srv)


# Package scope, not session: while Playwright's sync API runs, the main thread's event
# loop is marked running between its calls (its dispatcher greenlet is suspended inside
# `run_until_complete`), so any later test that runs an event loop of its own on the main
# thread (`InProcessServer`, `asyncio.run`) fails with "Cannot run the event loop while
# another loop is running". Stopped after the last test here, Playwright clears it.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh")
    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(10_000)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    # An uncaught exception in the page is a bug even if the assertions passed.
    assert not errors, f"JavaScript errors in the page: {errors}"
