"""The metric names and label selectors a PromQL expression uses, and those the alert rules
and the Grafana dashboards use: what tests/integration/test_metrics_coverage.py checks the
running services export.

Not a PromQL parser: enough of the language to find metric names (identifiers that are not a
function, a keyword, a label name in a matcher or a grouping, a duration or a number), for the
expressions this repository writes. tests/unit/test_metric_names.py pins it down.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
# Series Prometheus itself makes (scrape health, alert state), not the services.
PROMETHEUS_MADE = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_LABEL_VALUES = re.compile(r"label_values\(([^,()]*(?:\{[^}]*\})?)\s*,\s*\w+\s*\)")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
     "and", "or", "unless", "inf", "nan", "atan2"}
)  # fmt: skip
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, value: str | None) -> bool:
        found = value or ""
        if self.op == "=":
            return found == self.value
        if self.op == "!=":
            return found != self.value
        full = re.fullmatch(self.value, found) is not None
        return full if self.op == "=~" else not full


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...]


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` reads."""
    text = _LABEL_VALUES.sub(r"\1", expr)  # Grafana's label_values(selector, label)
    text = _VARIABLE.sub(" ", text)
    text = _STRING.sub('""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def selectors(expr: str) -> list[Selector]:
    """`metric{matchers}` selectors of `expr` (Grafana variables left as written)."""
    out = []
    for metric, body in _SELECTOR.findall(expr):
        matchers = tuple(Matcher(*m) for m in _MATCHER.findall(body))
        out.append(Selector(metric, matchers))
    return out


def rule_expressions() -> Iterator[tuple[str, str, bool]]:
    """(rule name, expression, is an alert) of every rule in alerts.yml."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"], "alert" in rule


def recorded_names() -> set[str]:
    """Series the rules record (Prometheus makes them; no service exports them)."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {r["record"] for g in document["groups"] for r in g["rules"] if "record" in r}


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    """(dashboard and panel, expression) of every query in the dashboards, variables too."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else query or ""
            if text:
                yield f"{path.name}: variable {variable['name']}", text
        for panel in _panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]


def _panels(panels: list[dict[str, object]]) -> Iterator[dict[str, object]]:
    for panel in panels:
        yield panel
        nested = panel.get("panels")
        if isinstance(nested, list):
            yield from _panels(nested)


def used_by_rules_and_dashboards() -> dict[str, set[str]]:
    """Metric name -> where it is used, for every name a service must export."""
    used: dict[str, set[str]] = {}
    made = recorded_names() | PROMETHEUS_MADE
    found = [(f"rule {n}", e) for n, e, _ in rule_expressions()] + list(dashboard_expressions())
    for where, expr in found:
        for name in metric_names(expr) - made:
            used.setdefault(name, set()).add(where)
    return used
