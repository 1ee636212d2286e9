from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentproc import AgentProcess
from tests.inproc import ThreadServer
from tests.procs import ServerProcess


class Stack:
    """Processes started by one test, all stopped at teardown (even on failure)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.servers: list[ServerProcess] = []
        self.thread_servers: list[ThreadServer] = []
        self.agents: list[AgentProcess] = []

    def server(self) -> ServerProcess:
        """A real server process: for tests that stop, hang (SIGSTOP) or kill the backend."""
        srv = ServerProcess(self.tmp / "data").start()
        self.servers.append(srv)
        return srv

    def thread_server(self, data: str = "data", config: Path | None = None,
                      port: int = 0) -> ThreadServer:
        """The server in a thread of the test process (`tests.inproc.ThreadServer`): for
        tests where the backend only answers (most of the startup cost of a test)."""
        srv = ThreadServer(self.tmp / data, config=config, port=port).start()
        self.thread_servers.append(srv)
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
        for t in self.thread_servers:
            t.stop(graceful=False)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    st = Stack(tmp_path)
    yield st
    st.close()
