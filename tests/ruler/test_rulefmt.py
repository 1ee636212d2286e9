"""Rule groups: Loki's validation messages, Loki's YAML answers, Prometheus durations."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.ruler import (
    RuleFormatError,
    dump_group,
    dump_namespaces,
    format_duration_ms,
    parse_duration_ms,
    parse_group,
    parse_rule_file,
)
from tests.procs import FIXTURES

RESP = FIXTURES / "responses"
# The rules file the recorded `ruler` group used (README: team-x.yaml, group app-x).
TEAM_X = """\
groups:
  - name: app-x
    interval: 10s
    rules:
      - alert: AppXErrors
        expr: sum(count_over_time({app="x"} |= "error" [1m])) > 0
        for: 0s
        labels: {severity: critical, team: sluiceway}
        annotations:
          summary: app x logged errors
          description: '{{ $value }} error lines in the last minute'
      - record: app_x:error_lines:count1m
        expr: sum by (app) (count_over_time({app="x"} |= "error" [1m]))
        labels: {source: loki-ruler}
"""


def _body(name: str) -> str:
    body: str = json.loads((RESP / f"{name}.request.json").read_text())["body"]
    return body


def test_yaml_answers_are_loki_bytes() -> None:
    g = parse_group(_body("rulesapi_post"))
    assert dump_group(g) == (RESP / "rulesapi_group.response.yaml").read_text()
    g2 = parse_group(_body("rulesapi_post_second"))
    assert dump_namespaces({"team-y": [g, g2]}) == (RESP / "rulesapi_list.response.yaml"
                                                     ).read_text()
    # `for: 0s` is not echoed
    assert dump_namespaces({"team-x.yaml": parse_rule_file(TEAM_X)}) == (
        RESP / "rules_list.response.yaml").read_text()


@pytest.mark.parametrize("name", ["rulesapi_post_bad_yaml", "rulesapi_post_bad_expr"])
def test_bad_groups_have_lokis_messages(name: str) -> None:
    with pytest.raises(RuleFormatError) as exc:
        parse_group(_body(name))
    assert str(exc.value) == (RESP / f"{name}.response.txt").read_text().strip()


@pytest.mark.parametrize("body,msg", [
    ("name: g\nrules:\n  - expr: '1'\n", "one of 'record' or 'alert' must be set"),
    ("name: g\nrules:\n  - alert: A\n    record: r\n    expr: '1'\n",
     "only one of 'record' and 'alert' must be set"),
    ("name: g\nrules:\n  - alert: A\n", "field 'expr' must be set in rule"),
    ("rules:\n  - alert: A\n    expr: vector(1)\n", "group 0: Groupname must not be empty"),
    ("name: g\nrules:\n  - record: 'bad name'\n    expr: vector(1)\n",
     "invalid recording rule name: bad name"),
    ("name: g\nrules:\n  - record: r\n    expr: vector(1)\n    for: 1m\n",
     "invalid field 'for' in recording rule"),
    ("name: g\nrules:\n  - alert: A\n    expr: vector(1)\n    labels: {'a-b': x}\n",
     "invalid label name: a-b"),
    ("name: g\nrules:\n  - alert: A\n    expr: vector(1)\n    annotations: {s: '{{ nope }}'}\n",
     'annotation "s": template: __alert_A: function "nope" not defined'),
    ("name: g\ninterval: 60\nrules: []\n", 'not a valid duration string: "60"'),
    ("name: g\ninterval: 1x\nrules: []\n", 'not a valid duration string: "1x"'),
    ("name: g\nrulez: []\n", "field rulez not found in type rulefmt.RuleGroup"),
    ("[1, 2]\n", "unable to decoded rule group"),
    ("name: g\nrules: {a: 1}\n", "unable to decoded rule group: rules must be a list"),
    ("name: g\nrules:\n  - alert: [A]\n    expr: vector(1)\n",
     "unable to decoded rule group: alert must be a string"),
])
def test_validation_messages(body: str, msg: str) -> None:
    with pytest.raises(RuleFormatError) as exc:
        parse_group(body)
    assert msg in str(exc.value)


def test_every_problem_is_reported_once() -> None:
    text = ("groups:\n  - name: a\n    rules: [{alert: X}]\n"
            "  - name: a\n    rules: [{record: y, expr: 'vector(1)', for: 1m}]\n")
    with pytest.raises(RuleFormatError) as exc:
        parse_rule_file(text)
    assert str(exc.value) == ("field 'expr' must be set in rule, groupname: \"a\" is repeated "
                              "in the same file, invalid field 'for' in recording rule")


@pytest.mark.parametrize("text,ms", [("0", 0), ("0s", 0), ("1m", 60_000), ("1h30m", 5_400_000),
                                     ("1d", 86_400_000), ("2w", 1_209_600_000),
                                     ("1s500ms", 1500), ("1y", 31_536_000_000)])
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms
    assert parse_duration_ms(format_duration_ms(ms)) == ms


def test_multiline_expressions_round_trip() -> None:
    group = parse_group('name: g\nrules:\n  - alert: A\n    expr: |\n      sum(\n'
                        '        count_over_time({a="b"}[1m])\n      ) > 0\n')
    again = parse_group(dump_group(group))
    assert again == group and "expr: |" in dump_group(group)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_body_is_a_group_or_a_rule_format_error(body: str | bytes) -> None:
    try:
        g = parse_group(body)
    except RuleFormatError:
        return
    assert yaml.safe_load(dump_group(g))["name"] == g.name
