"""The captured push requests in shared/fixtures/push, with their headers and expectations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.procs import FIXTURES

PUSH_DIR = FIXTURES / "push"


@dataclass(frozen=True)
class PushFixture:
    name: str
    body: bytes
    content_type: str | None
    content_encoding: str | None
    expected: dict[str, Any]

    @property
    def is_json(self) -> bool:
        return (self.content_type or "").startswith("application/json")


def load(body_path: Path) -> PushFixture:
    meta = json.loads(body_path.with_suffix(".json").read_text())
    headers = {name.lower(): value for name, value in meta["headers"]}
    expected = json.loads(body_path.with_suffix(".expected.json").read_text())
    return PushFixture(body_path.stem, body_path.read_bytes(), headers.get("content-type"),
                       headers.get("content-encoding"), expected)


def all_fixtures() -> list[PushFixture]:
    paths = sorted(PUSH_DIR.glob("*.body"))
    assert paths, f"no push fixtures found in {PUSH_DIR}"
    return [load(p) for p in paths]
