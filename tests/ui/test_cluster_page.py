"""Cluster page: on a cluster process (a real nats-server and `sluiceway server
--cluster`) it shows the members, every partition with its owner and lag, the streams'
health and the compactor, which member evaluates each rule group (none, then one posted
through the rules API) and this node's active streams per tenant; on a single-node
server it says there is no cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.natsprocs import NatsNode, cluster_config, nats_or_skip, single_node
from tests.procs import ServerProcess
from tests.ui._support import push, stop_quickly

GROUP = """\
name: ui-group
interval: 1s
rules:
  - alert: UiAlways
    expr: vector(1) > 0
"""


@pytest.fixture(scope="module")
def cluster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("ui-cluster")
    nats: NatsNode = single_node(nats_or_skip(), tmp / "nats")
    cfg = cluster_config(tmp / "c.yaml", nats.url, name_prefix="ui-", replicas=1)
    srv = ServerProcess(tmp / "data", config=cfg).start(90)
    yield srv
    stop_quickly(srv)
    nats.stop()


def test_cluster_page_shows_members_partitions_and_streams(
        page: Any, cluster_server: ServerProcess) -> None:
    page.goto(f"{cluster_server.url}/#/cluster")
    expect(page).to_have_title("Cluster · Sluiceway")
    member = page.locator("[data-testid=member]")
    expect(member).to_have_count(1)
    expect(member).to_have_attribute("data-role", "all")
    expect(member).to_contain_text(f"127.0.0.1:{cluster_server.port}")
    expect(member).to_contain_text("(this node)")
    parts = page.locator("[data-testid=partition]")
    expect(parts).to_have_count(6)
    me = member.get_attribute("data-member")
    # The ingester takes its partitions within a few lease ticks; the page polls.
    expect(page.locator(f"[data-testid=partition][data-owner='{me}']")).to_have_count(
        6, timeout=30_000)
    expect(parts.first.locator("[data-testid=lag]")).to_have_text("0")
    streams = page.locator("[data-testid=stream]")
    expect(streams).to_have_count(3)
    expect(page.locator("[data-testid=stream][data-healthy=true]")).to_have_count(3)
    expect(page.locator("[data-testid=stream-health]")).to_have_text("3 streams healthy")
    expect(page.locator("[data-testid=singleton-compactor]")).to_have_text(
        f"compactor: {me}", timeout=30_000)
    expect(page.locator("[data-testid=object-store]")).to_contain_text("object store:")
    expect(page.locator("[data-nav=cluster]")).to_have_class("active")


def test_cluster_page_shows_rule_groups_and_active_streams(
        page: Any, cluster_server: ServerProcess) -> None:
    page.goto(f"{cluster_server.url}/#/cluster")
    member = page.locator("[data-testid=member]")
    expect(member).to_have_count(1)
    me = member.get_attribute("data-member")
    assert me
    expect(page.locator("[data-testid=rule-groups]")).to_contain_text("no rule groups")
    expect(page.locator("[data-testid=node-active-streams]")).to_contain_text(
        "no active streams")

    r = httpx.post(f"{cluster_server.url}/loki/api/v1/rules/ui-ns", content=GROUP,
                   headers={"Content-Type": "application/yaml"}, timeout=30)
    assert r.status_code == 202, r.text
    push(cluster_server.url, {"app": "ui-cluster"}, ["one line"])
    # The ruler takes the group's lease and the ingester shares its active streams within
    # a few ticks; the page polls.
    group = page.locator("[data-testid=rule-group]")
    expect(group).to_have_count(1, timeout=30_000)
    expect(group).to_have_attribute("data-holder", me)
    expect(group.locator("td")).to_have_text(["fake", "ui-ns", "ui-group", f"{me} (this node)"])
    expect(page.locator("[data-testid=rule-groups]")).not_to_contain_text("no rule groups")
    streams = page.locator("[data-testid=active-streams][data-tenant=fake]")
    expect(streams.locator("[data-testid=active-streams-count]")).to_have_text(
        "1", timeout=30_000)


def test_cluster_page_on_a_single_node(page: Any, ui_server: ServerProcess) -> None:
    page.goto(f"{ui_server.url}/#/cluster")
    expect(page.locator("[data-testid=single-node]")).to_contain_text(
        "This server runs alone (single-node mode)")
