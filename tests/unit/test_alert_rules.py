"""The alert rules are valid and tested: promtool (installed by `make setup` into .venv/tools)
checks deploy/prometheus/alerts.yml and the Prometheus config that loads it, and runs the rule
unit tests, deploy/prometheus/tests/*.yml, in which every alert is seen firing and not firing.
Every alert links to its runbook, docs/runbooks/<alert>.md, which exists and says what the
alert means, how to look, how to fix and when to escalate; every runbook belongs to an alert.

promtool missing is a failure, never a skip: the rules would otherwise go untested.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks"
SECTIONS = ("## What it means", "## How to look", "## How to fix", "## When to escalate")


def _promtool() -> str:
    """PROMTOOL if set, else the one `make setup` put beside the venv running the tests, else
    one on PATH."""
    candidates = [
        os.environ.get("PROMTOOL", ""),
        str(Path(sys.prefix) / "tools" / "bin" / "promtool"),
        str(ROOT / ".venv" / "tools" / "bin" / "promtool"),
        shutil.which("promtool") or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "promtool not found (tried PROMTOOL, .venv/tools/bin/promtool and PATH): run `make "
        "setup`, which extracts it from Debian's prometheus package",
        pytrace=False,
    )


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _alerts() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {
        rule["alert"]: rule
        for group in document["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_promtool_accepts_the_rules_and_the_config_that_loads_them() -> None:
    checked = _run("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = _run("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout


def test_the_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no rule tests in deploy/prometheus/tests"
    result = _run("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_expectation_fails_the_rule_tests(tmp_path: Path) -> None:
    """The unit tests can fail: one expecting an alert that does not fire is reported."""
    broken = yaml.safe_load(RULE_TESTS[0].read_text(encoding="utf-8"))
    broken["rule_files"] = [str(RULES)]
    case = broken["tests"][0]["alert_rule_test"][0]
    case["exp_alerts"] = [{"exp_labels": {"severity": "none"}}]
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = _run("test", "rules", str(path))
    assert result.returncode != 0
    assert case["alertname"] in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = set(_alerts())
    assert alerts - firing == set(), "alerts never seen firing"
    assert alerts - quiet == set(), "alerts never seen not firing"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_every_alert_has_a_severity_a_summary_and_a_runbook_that_exists() -> None:
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"docs/runbooks/{name}.md", name
        runbook = ROOT / annotations["runbook_url"]
        assert runbook.is_file(), f"{name}: no runbook at {runbook}"
        text = runbook.read_text(encoding="utf-8")
        assert text.startswith(f"# {name}\n"), runbook
        missing = [s for s in SECTIONS if s not in text]
        assert not missing, f"{runbook} lacks {missing}"


def test_every_runbook_belongs_to_an_alert() -> None:
    alerts = set(_alerts())
    orphans = {p.stem for p in RUNBOOKS.glob("*.md") if p.name != "README.md"} - alerts
    assert orphans == set()
