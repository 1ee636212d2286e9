"""The Sluiceway agent: tail files, stdin or syslog, run pipeline stages, ship at-least-once.

Public API::

    from sluiceway.agent import Agent, load_config
    agent = Agent(load_config("agent.yaml")).start()
    ...
    agent.shutdown()
"""

from sluiceway.agent._agent import Agent
from sluiceway.agent._config import AgentConfig, ConfigError, load_config

__all__ = ["Agent", "AgentConfig", "ConfigError", "load_config"]
