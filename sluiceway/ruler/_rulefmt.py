"""Rule groups in Prometheus' rule-file format with LogQL expressions (Loki's ruler format):
parse and validate (Loki's messages), and write back as Loki's API prints them.

A rule file is `groups: [<group>, ...]`; the rules API takes and answers one bare group.
Durations are Prometheus durations (`1m`, `1h30m`, `0s`), kept in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from sluiceway.logql import ParseError, QueryError, TemplateError, compile_template, parse
from sluiceway.model import LABEL_NAME_RE
from sluiceway.ruler._templates import TEMPLATE_FUNCS

_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?"
                          r"(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS_MS = (("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000),
             ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
_METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
DECODE_ERROR = "unable to decoded rule group"  # Loki's text (sic)


class RuleFormatError(ValueError):
    """A rule group that cannot be used; the message is Loki's where Loki has one."""


def parse_duration_ms(text: str) -> int:
    """A Prometheus duration (`model.ParseDuration`) in milliseconds."""
    if text == "0":
        return 0
    m = _DURATION_RE.match(text)
    if not text or m is None:
        raise RuleFormatError(f'not a valid duration string: "{text}"')
    return sum(int(v) * size for v, (_, size) in zip(m.groups(), _UNITS_MS, strict=True)
               if v)


def format_duration_ms(ms: int) -> str:
    """Prometheus' `model.Duration.String()`: `1m`, `1h30m`, `0s`."""
    if ms == 0:
        return "0s"
    out = []
    for unit, size in _UNITS_MS:
        q, ms = divmod(ms, size)
        if q:
            out.append(f"{q}{unit}")
    return "".join(out)


@dataclass(slots=True)
class Rule:
    expr: str
    alert: str = ""
    record: str = ""
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.alert or self.record

    def to_yaml_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {"record": self.record} if self.record else {"alert": self.alert}
        out["expr"] = self.expr
        if self.for_ms:
            out["for"] = format_duration_ms(self.for_ms)
        if self.keep_firing_for_ms:
            out["keep_firing_for"] = format_duration_ms(self.keep_firing_for_ms)
        if self.labels:
            out["labels"] = dict(sorted(self.labels.items()))
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out


@dataclass(slots=True)
class RuleGroup:
    name: str
    rules: list[Rule]
    interval_ms: int = 0  # 0: the ruler's evaluation_interval
    limit: int = 0

    def to_yaml_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.interval_ms:
            out["interval"] = format_duration_ms(self.interval_ms)
        if self.limit:
            out["limit"] = self.limit
        out["rules"] = [r.to_yaml_map() for r in self.rules]
        return out


# --- reading -------------------------------------------------------------------------

_GROUP_KEYS = ("name", "interval", "limit", "rules")
_RULE_KEYS = ("record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations")


def _str(v: Any, where: str) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise RuleFormatError(f"{where} must be a string")
    return str(v)


def _str_map(v: Any, where: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise RuleFormatError(f"{where} must be a map of strings")
    return {_str(k, where): "" if x is None else _str(x, f"{where}.{k}") for k, x in v.items()}


def _duration(v: Any, where: str) -> int:
    if v is None:
        return 0
    if not isinstance(v, str):
        raise RuleFormatError(f'{where}: not a valid duration string: "{v}"')
    return parse_duration_ms(v)


def _rule(raw: Any) -> Rule:
    if not isinstance(raw, dict):
        raise RuleFormatError("a rule must be a map")
    for k in raw:
        if k not in _RULE_KEYS:
            raise RuleFormatError(f"field {k} not found in type rulefmt.RuleNode")
    return Rule(expr=_str(raw.get("expr") or "", "expr"),
                alert=_str(raw.get("alert") or "", "alert"),
                record=_str(raw.get("record") or "", "record"),
                for_ms=_duration(raw.get("for"), "for"),
                keep_firing_for_ms=_duration(raw.get("keep_firing_for"), "keep_firing_for"),
                labels=_str_map(raw.get("labels"), "labels"),
                annotations=_str_map(raw.get("annotations"), "annotations"))


def group_from_map(raw: Any) -> RuleGroup:
    """One group from its decoded YAML (structure only; `validate_groups` checks it)."""
    if not isinstance(raw, dict):
        raise RuleFormatError("a rule group must be a map")
    for k in raw:
        if k not in _GROUP_KEYS:
            raise RuleFormatError(f"field {k} not found in type rulefmt.RuleGroup")
    rules = raw.get("rules") or []
    if not isinstance(rules, list):
        raise RuleFormatError("rules must be a list")
    limit = raw.get("limit") or 0
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise RuleFormatError("limit must be a whole number")
    return RuleGroup(name=_str(raw.get("name") or "", "name"),
                     rules=[_rule(r) for r in rules],
                     interval_ms=_duration(raw.get("interval"), "interval"), limit=limit)


def _load_yaml(text: str | bytes) -> Any:
    return yaml.safe_load(text)


def parse_group(body: str | bytes) -> RuleGroup:
    """A group as the rules API takes it (a bare group, YAML); validated. Raises
    `RuleFormatError` with Loki's texts: `unable to decoded rule group` for YAML that
    does not decode to a group, the validation errors joined with `, ` otherwise."""
    try:
        raw = _load_yaml(body)
    except yaml.YAMLError:
        raise RuleFormatError(DECODE_ERROR) from None
    try:
        group = group_from_map(raw)
    except RuleFormatError as exc:
        raise RuleFormatError(f"{DECODE_ERROR}: {exc}") from None
    errs = validate_groups([group])
    if errs:
        raise RuleFormatError(", ".join(errs))
    return group


def parse_rule_file(text: str | bytes) -> list[RuleGroup]:
    """The groups of a rule file (`groups: [...]`); validated."""
    try:
        raw = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise RuleFormatError(f"yaml: {exc}") from None
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise RuleFormatError("a rule file must be a map with `groups:`")
    for k in raw:
        if k != "groups":
            raise RuleFormatError(f"field {k} not found in type rulefmt.RuleGroups")
    raw_groups = raw.get("groups") or []
    if not isinstance(raw_groups, list):
        raise RuleFormatError("groups must be a list")
    groups = [group_from_map(g) for g in raw_groups]
    errs = validate_groups(groups)
    if errs:
        raise RuleFormatError(", ".join(errs))
    return groups


def _check_templates(rule: Rule) -> str | None:
    for kind, items in (("label", rule.labels), ("annotation", rule.annotations)):
        for k, text in items.items():
            try:
                compile_template(text, TEMPLATE_FUNCS)
            except TemplateError as exc:
                return f'{kind} "{k}": template: __alert_{rule.name}: {exc}'
    return None


def _validate_rule(r: Rule, group: str) -> str | None:
    if r.record and r.alert:
        return "only one of 'record' and 'alert' must be set"
    if not r.record and not r.alert:
        return "one of 'record' or 'alert' must be set"
    if not r.expr:
        return "field 'expr' must be set in rule"
    try:
        parse(r.expr)
    except (ParseError, QueryError) as exc:
        kind, name = ("record", r.record) if r.record else ("alert", r.alert)
        return f"could not parse expression for {kind} '{name}' in group '{group}': {exc}"
    if r.record:
        if r.annotations:
            return "invalid field 'annotations' in recording rule"
        if r.for_ms:
            return "invalid field 'for' in recording rule"
        if r.keep_firing_for_ms:
            return "invalid field 'keep_firing_for' in recording rule"
        if not _METRIC_NAME_RE.match(r.record):
            return f"invalid recording rule name: {r.record}"
    for k in r.labels:
        if not LABEL_NAME_RE.match(k) or k == "__name__":
            return f"invalid label name: {k}"
    for k in r.annotations:
        if not LABEL_NAME_RE.match(k):
            return f"invalid annotation name: {k}"
    return _check_templates(r)


def validate_groups(groups: list[RuleGroup]) -> list[str]:
    """Loki's `ValidateGroups`: every problem, one message each."""
    errs: list[str] = []
    seen: set[str] = set()
    for i, g in enumerate(groups):
        if not g.name:
            errs.append(f"group {i}: Groupname must not be empty")
        if g.name in seen:
            errs.append(f'groupname: "{g.name}" is repeated in the same file')
        seen.add(g.name)
        for r in g.rules:
            err = _validate_rule(r, g.name)
            if err:
                errs.append(err)
    return errs


# --- writing (go-yaml v3 with indent 4, as Loki answers) -----------------------------


def _scalar(value: Any, col: int) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    if "\n" in text and not text.startswith((" ", "\n")) and not any(
            line.endswith(" ") for line in text.split("\n")):
        body = text[:-1] if text.endswith("\n") else text
        pad = " " * (col + 4)
        head = "|" if text.endswith("\n") else "|-"
        return head + "".join("\n" + (pad + line if line else "") for line in body.split("\n"))
    dumped = yaml.safe_dump(text, width=1 << 20, allow_unicode=True, default_flow_style=False)
    return dumped.removesuffix("\n...\n").removesuffix("\n")


def _emit_map(m: Mapping[str, Any], indent: int, col: int, lines: list[str],
              dash: bool = False) -> None:
    for i, (k, v) in enumerate(m.items()):
        prefix = " " * (col - 2) + "- " if dash and i == 0 else " " * col
        key = _scalar(k, col)
        if isinstance(v, Mapping):
            lines.append(f"{prefix}{key}:")
            _emit_map(v, indent + 4, indent + 4, lines)
        elif isinstance(v, list):
            lines.append(f"{prefix}{key}:")
            for item in v:
                _emit_map(item, indent + 4, indent + 6, lines, dash=True)
        else:
            lines.append(f"{prefix}{key}: {_scalar(v, indent)}")


def dump_group(group: RuleGroup) -> str:
    """One bare group, as `GET /loki/api/v1/rules/<ns>/<group>` answers."""
    lines: list[str] = []
    _emit_map(group.to_yaml_map(), 0, 0, lines)
    return "\n".join(lines) + "\n"


def dump_namespaces(namespaces: Mapping[str, list[RuleGroup]]) -> str:
    """`{namespace: [groups]}`, as `GET /loki/api/v1/rules[/<ns>]` answers."""
    lines: list[str] = []
    _emit_map({ns: [g.to_yaml_map() for g in groups] for ns, groups in namespaces.items()},
              0, 0, lines)
    return "\n".join(lines) + "\n"


def dump_rule_file(groups: list[RuleGroup]) -> str:
    """A rule file (`groups:`), as the filesystem store keeps a namespace."""
    lines: list[str] = []
    _emit_map({"groups": [g.to_yaml_map() for g in groups]}, 0, 0, lines)
    return "\n".join(lines) + "\n"
