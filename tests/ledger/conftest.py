from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sluiceway import client


@pytest.fixture(autouse=True)
def fresh_client() -> Iterator[None]:
    yield
    client.shutdown(timeout=0.5)
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, client.SluicewayHandler):
            root.removeHandler(h)
    root.setLevel(logging.WARNING)
