"""The ruler in cluster mode, with real processes (one nats-server, two `sluiceway server
--cluster` processes, roles `all` and `ruler`): a rule group posted through one node's
rules API is read on the other (rules in the cluster's KV); each group is evaluated by
exactly one member (an alert reaches the Alertmanager's API once, not once per node),
`/cluster/status` names the holder, and the Prometheus-style views of any process show
every group; and after the holder is SIGKILLed the other member
takes the group over with the alert's `for` state (its `activeAt`) as the dead one left
it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.monitoring import CaptureServer, wait_until
from tests.natsprocs import ProcCluster
from tests.procs import ServerProcess

pytestmark = pytest.mark.timeout(240)

GROUP = """\
name: {name}
interval: 1s
rules:
  - alert: {alert}
    expr: vector(1) > 0
    for: 2s
    labels: {{severity: page}}
"""


class Cluster(ProcCluster):
    def __init__(self, tmp: Path) -> None:
        self.am = CaptureServer(200)
        # A lease renewal held up past lease_ttl on a loaded machine would move a group
        # (and its alert would be sent again by the new holder): 6 s, not 3.
        super().__init__(tmp, [("a", "all"), ("b", "ruler")], "rs-", {"ruler": {
            "evaluation_interval": "1s", "poll_interval": "1s", "resend_delay": "1h",
            "for_grace_period": "0s", "alertmanager_url": self.am.url}}, lease_ttl="6s")

    def stop(self) -> None:
        super().stop()
        self.am.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("rshard"))
    yield c
    c.stop()


def post_group(url: str, namespace: str, body: str) -> None:
    r = httpx.post(f"{url}/loki/api/v1/rules/{namespace}", content=body, timeout=30,
                   headers={"Content-Type": "application/yaml"})
    assert r.status_code == 202, r.text


def holders(url: str) -> dict[tuple[str, str], str]:
    r = httpx.get(f"{url}/cluster/status", timeout=30)
    assert r.status_code == 200, r.text
    return {(g["namespace"], g["group"]): g["holder"]
            for g in r.json()["data"]["rule_groups"] or []}


def node_id(url: str) -> str:
    return str(httpx.get(f"{url}/cluster/status", timeout=30).json()["data"]["me"])


def rule_groups(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    r = httpx.get(f"{url}/prometheus/api/v1/rules", timeout=30)
    assert r.status_code == 200, r.text
    return {(g["file"], g["name"]): g for g in r.json()["data"]["groups"]}


def evaluated_here(url: str) -> set[tuple[str, str]]:
    r = httpx.get(f"{url}/sluiceway/api/v1/ruler", timeout=30)
    assert r.status_code == 200, r.text
    return {(g["namespace"], g["group"]) for g in r.json()["evaluated_here"]}


def alerts_sent(am: CaptureServer, name: str) -> int:
    return sum(1 for req in am.on("/api/v2/alerts") for a in json.loads(req.body)
               if a["labels"].get("alertname") == name)


def evaluations(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    m = re.search(r'^sluiceway_ruler_group_evaluations_total\{tenant="fake"\} (\S+)$', text,
                  re.M)
    return float(m.group(1)) if m else 0.0


def test_rules_written_on_one_node_are_read_on_the_other(cluster: Cluster) -> None:
    a, b = cluster.nodes
    post_group(a.url, "shared", GROUP.format(name="g-shared", alert="Shared"))
    r = httpx.get(f"{b.url}/loki/api/v1/rules/shared/g-shared", timeout=30)
    assert r.status_code == 200, r.text
    assert yaml.safe_load(r.text)["name"] == "g-shared"
    listed = yaml.safe_load(httpx.get(f"{b.url}/loki/api/v1/rules", timeout=30).text)
    assert [g["name"] for g in listed["shared"]] == ["g-shared"]
    r = httpx.delete(f"{b.url}/loki/api/v1/rules/shared/g-shared", timeout=30)
    assert r.status_code == 202, r.text
    assert httpx.get(f"{a.url}/loki/api/v1/rules/shared/g-shared",
                     timeout=30).status_code == 404


def test_each_group_is_evaluated_once_and_alerts_are_sent_once(cluster: Cluster) -> None:
    a, b = cluster.nodes
    names = [f"g{i}" for i in range(4)]
    for n in names:
        post_group(a.url, "once", GROUP.format(name=n, alert=f"Once{n}"))
    # Every alert fires and goes out once; more evaluations send nothing more
    # (resend_delay 1h): a second evaluator of a group would send its own.
    for n in names:
        wait_until(lambda n=n: alerts_sent(cluster.am, f"Once{n}"), f"alert Once{n} sent",
                   60, cluster.logs)
    base = evaluations(a.url) + evaluations(b.url)
    wait_until(lambda: evaluations(a.url) + evaluations(b.url) >= base + 4 * len(names),
               "more evaluations", 60, cluster.logs)
    assert {n: alerts_sent(cluster.am, f"Once{n}") for n in names} == {n: 1 for n in names}
    # /cluster/status names each group's holder; the group runs there and only there.
    ids = {node_id(a.url): a, node_id(b.url): b}

    def all_held() -> dict[tuple[str, str], str] | None:
        got = {k: v for k, v in holders(b.url).items() if k[0] == "once"}
        return got if len(got) == len(names) else None

    held = wait_until(all_held, "every group held", 60, cluster.logs)
    assert set(held.values()) <= set(ids)
    for (ns, g), holder in held.items():
        other = next(n for i, n in ids.items() if i != holder)
        assert (ns, g) in evaluated_here(ids[holder].url)
        assert (ns, g) not in evaluated_here(other.url)
    # The Prometheus-style views of either process show every group, wherever it runs.
    for node in (a, b):
        shown = {k: v for k, v in rule_groups(node.url).items() if k[0] == "once"}
        assert sorted(shown) == sorted(held)
        assert all(v["lastEvaluation"] != "0001-01-01T00:00:00Z" for v in shown.values())
        r = httpx.get(f"{node.url}/prometheus/api/v1/alerts", timeout=30)
        names_firing = sorted(x["labels"]["alertname"] for x in r.json()["data"]["alerts"]
                              if x["labels"]["alertname"].startswith("Once"))
        assert names_firing == [f"Once{n}" for n in names]
    counts = {}
    for node in (a, b):
        text = httpx.get(f"{node.url}/metrics", timeout=30).text
        m = re.search(r'^sluiceway_cluster_leases_held\{kind="rule_group"\} (\S+)$', text,
                      re.M)
        assert m is not None
        counts[node_id(node.url)] = float(m.group(1))
    assert sum(counts.values()) >= len(names)
    for n in names:
        httpx.delete(f"{a.url}/loki/api/v1/rules/once/{n}", timeout=30)


def test_the_holders_death_moves_its_group_with_its_for_state(cluster: Cluster) -> None:
    a, b = cluster.nodes
    post_group(a.url, "move", GROUP.format(name="g-move", alert="Moving"))
    ids = {node_id(a.url): a, node_id(b.url): b}
    holder_id = wait_until(lambda: holders(a.url).get(("move", "g-move")), "the holder", 60,
                           cluster.logs)
    holder = ids[holder_id]
    survivor = b if holder is a else a

    def firing_on(node: ServerProcess) -> dict[str, Any] | None:
        r = httpx.get(f"{node.url}/prometheus/api/v1/alerts", timeout=30)
        if r.status_code != 200:
            return None
        got = [x for x in r.json()["data"]["alerts"]
               if x["labels"]["alertname"] == "Moving" and x["state"] == "firing"]
        return got[0] if got else None

    before = wait_until(lambda: firing_on(holder), "the alert firing on its holder", 60,
                        cluster.logs)
    assert ("move", "g-move") in evaluated_here(holder.url)
    assert ("move", "g-move") not in evaluated_here(survivor.url)
    holder.kill()  # SIGKILL: its lease and member entry expire by themselves
    survivor_id = next(i for i, n in ids.items() if n is survivor)
    wait_until(lambda: holders(survivor.url).get(("move", "g-move")) == survivor_id,
               "the survivor holding the group", 90, survivor.log)
    after = wait_until(lambda: firing_on(survivor), "the alert firing on the survivor", 60,
                       survivor.log)
    # Restored from the for-state the dead holder left in KV (Prometheus' rule: it had
    # been firing, so it keeps its activeAt); a fresh alert would be pending, active now.
    assert after["activeAt"] == before["activeAt"]
