from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentproc import AgentProcess
from tests.procs import ServerProcess


class Stack:
    """Processes started by one test, all stopped at teardown (even on failure)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.servers: list[ServerProcess] = []
        self.agents: list[AgentProcess] = []

    def server(self) -> ServerProcess:
        srv = ServerProcess(self.tmp / "data").start()
        self.servers.append(srv)
        return srv

    def agent(self, config: dict[str, Any]) -> AgentProcess:
        agent = AgentProcess(self.tmp, config).start()
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        for a in self.agents:
            a.kill()
        for s in self.servers:
            s.signal(signal.SIGCONT)
            s.kill()  # a graceful stop waits on keep-alive connections; data is throwaway


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    st = Stack(tmp_path)
    yield st
    st.close()
