"""The rules API beyond the recordings: bad bodies are 4xx (never 500), tenants are kept
apart, odd namespace names stay inside the rules directory, `enable_api: false`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from tests.inproc import InProcessServer

GROUP = "name: g\nrules:\n  - alert: A\n    expr: sum(count_over_time({a=\"b\"}[1m])) > 0\n"
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[InProcessServer]:
    s = InProcessServer(tmp_path / "data", **{"ruler_storage.filesystem": {
        "dir": str(tmp_path / "rules")}, "server.max_body_size": 4096})
    yield s
    s.close()


@pytest.mark.parametrize("body,status,text", [
    ("name: g\nrules:\n  - alert: A\n    expr: {x: 1}\n", 400,
     "unable to decoded rule group: expr must be a string"),
    ("name: g\ninterval: [1]\nrules: []\n", 400, 'not a valid duration string: "[1]"'),
    ("name: g\nlimit: -1\nrules: []\n", 400, "limit must be a whole number"),
    ("name: g\nrules:\n  - alert: A\n    expr: vector(1)\n    for: forever\n", 400,
     'not a valid duration string: "forever"'),
    ("- just\n- a list\n", 400, "unable to decoded rule group"),
    ("", 400, "unable to decoded rule group"),
    ("\xff\xfe", 400, "unable to decoded rule group"),
    ("name: g\nrules:\n" + "  - record: r\n    expr: vector(1)\n" * 200, 413, "too large"),
])
def test_bad_groups_are_4xx(srv: InProcessServer, body: str, status: int, text: str) -> None:
    r = srv.post("/loki/api/v1/rules/ns", content=body.encode("latin-1"), headers=YAML)
    assert r.status_code == status, r.text
    assert text in r.text
    assert srv.get("/loki/api/v1/rules").status_code == 404  # nothing was written


def test_tenants_are_kept_apart(srv: InProcessServer) -> None:
    r = srv.post("/loki/api/v1/rules/ns", content=GROUP, headers={**YAML,
                                                                   "X-Scope-OrgID": "team-a"})
    assert r.status_code == 202
    assert srv.get("/loki/api/v1/rules", headers={"X-Scope-OrgID": "team-a"}).status_code == 200
    assert srv.get("/loki/api/v1/rules").text == "no rule groups found\n"
    assert srv.get("/loki/api/v1/rules/ns/g").status_code == 404
    assert srv.get("/prometheus/api/v1/rules", headers={"X-Scope-OrgID": "a|b"}
                   ).status_code == 400


@pytest.mark.parametrize("namespace", ["team x", "a%2Fb", "..", ".hidden", "ünï", "x.yaml"])
def test_any_namespace_round_trips_inside_the_rules_dir(srv: InProcessServer, tmp_path: Path,
                                                        namespace: str) -> None:
    # dots escaped too, or the client folds `..` away before it is sent
    path = f"/loki/api/v1/rules/{quote(namespace, safe='').replace('.', '%2E')}"
    assert srv.post(path, content=GROUP, headers=YAML).status_code == 202
    listed = yaml.safe_load(srv.get("/loki/api/v1/rules").text)
    assert list(listed) == [namespace]
    assert srv.get(f"{path}/g").status_code == 200
    files = [p for p in (tmp_path / "rules").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].parent == tmp_path / "rules" / "fake"
    assert srv.request("DELETE", path).status_code == 202
    assert not [p for p in (tmp_path / "rules").rglob("*") if p.is_file()]


def test_a_missing_namespace_is_404(srv: InProcessServer) -> None:
    r = srv.get("/loki/api/v1/rules/nope")
    assert (r.status_code, r.text) == (404, "no rule groups found\n")
    assert srv.request("DELETE", "/loki/api/v1/rules/nope").status_code == 202


def test_rule_type_filter(srv: InProcessServer) -> None:
    r = srv.get("/prometheus/api/v1/rules", params={"type": "bogus"})
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"


def test_the_api_can_be_turned_off(tmp_path: Path) -> None:
    s = InProcessServer(tmp_path / "data", **{"ruler.enable_api": False})
    try:
        assert s.get("/loki/api/v1/rules").status_code == 404
        assert s.post("/loki/api/v1/rules/ns", content=GROUP).status_code in (404, 405)
        assert s.get("/prometheus/api/v1/rules").status_code == 200
    finally:
        s.close()


def test_auth_enabled_needs_a_tenant(tmp_path: Path) -> None:
    s = InProcessServer(tmp_path / "data", **{"server.auth_enabled": True})
    try:
        assert s.get("/loki/api/v1/rules").status_code == 401
        assert s.get("/prometheus/api/v1/alerts").status_code == 401
    finally:
        s.close()


def test_lokis_older_ruler_storage_key(tmp_path: Path) -> None:
    (tmp_path / "r" / "fake").mkdir(parents=True)
    (tmp_path / "r" / "fake" / "x.yaml").write_text("groups:\n  - " + GROUP.replace(
        "\n", "\n    ").rstrip() + "\n")
    s = InProcessServer(tmp_path / "data", **{"ruler.storage": {
        "type": "local", "local": {"directory": str(tmp_path / "r")}}})
    try:
        assert list(yaml.safe_load(s.get("/loki/api/v1/rules").text)) == ["x.yaml"]
        assert s.post("/loki/api/v1/rules/ns", content=GROUP).status_code == 500  # read-only
    finally:
        s.close()


def test_a_nul_in_a_local_namespace_is_a_400(tmp_path: Path) -> None:
    s = InProcessServer(tmp_path / "data", **{"ruler_storage.backend": "local"})
    try:
        r = s.get("/loki/api/v1/rules/a%00b")
        assert r.status_code == 400 and "no such file or directory" in r.text
    finally:
        s.close()
