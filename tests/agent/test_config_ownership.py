"""One config model per component: the agent's `retry:` section (top level and each
client's) is the delivery loop's own `sluiceway.ship.RetryPolicy`, embedded as it is and
handed to the loop as the same object, never copied field by field."""

from __future__ import annotations

import threading
from pathlib import Path

from sluiceway.agent import AgentConfig
from sluiceway.agent._config import ClientConfig, load_config
from sluiceway.agent._positions import Positions
from sluiceway.agent._queue import AgentQueue
from sluiceway.agent._ship import shippers
from sluiceway.ship import RetryPolicy


def test_the_agent_config_embeds_the_delivery_loops_retry_policy() -> None:
    assert AgentConfig.model_fields["retry"].annotation is RetryPolicy
    assert ClientConfig.model_fields["retry"].annotation is RetryPolicy
    assert set(RetryPolicy.model_fields) == {
        "min_backoff", "max_backoff", "max_retries", "max_retries_in_spill"}


def test_the_loop_gets_the_section_itself(tmp_path: Path) -> None:
    cfg = load_config(text=f"""
url: http://127.0.0.1:9
data_dir: {tmp_path}
retry: {{min_backoff: 250ms, max_backoff: 1m, max_retries: 4, max_retries_in_spill: true}}
inputs: [{{type: stdin}}]
""", environ={})
    assert cfg.retry == RetryPolicy(min_backoff=0.25, max_backoff=60.0, max_retries=4,
                                    max_retries_in_spill=True)
    queue = AgentQueue(cfg.queue, tmp_path, Positions(tmp_path / "positions.json"))
    try:
        (loop,) = shippers(cfg, queue, threading.Event())
        assert loop.retry is cfg.retry
    finally:
        queue.buffer.close()
