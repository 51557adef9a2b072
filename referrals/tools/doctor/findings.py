"""What `referrals doctor` reports: one finding per thing checked, ok or a problem with its fix,
and the two ways of printing them (a readable list, JSON for scripts)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

HEALTHY = 0
PROBLEMS = 1
NO_BROKER = 2  # the broker cannot be reached with the configured KAFKA_* settings


class Status(StrEnum):
    OK = "ok"
    PROBLEM = "problem"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # which check: broker, topics, programs, services, lag, acls
    subject: str  # what it is about: a topic, a service, a consumer group, "cluster"
    status: Status
    detail: str  # what was seen
    fix: str = ""  # how to put it right (problems only)


def ok(check: str, subject: str, detail: str) -> Finding:
    return Finding(check, subject, Status.OK, detail)


def problem(check: str, subject: str, detail: str, fix: str) -> Finding:
    return Finding(check, subject, Status.PROBLEM, detail, fix)


@dataclass(frozen=True, slots=True)
class Report:
    bootstrap_servers: str
    topic_prefix: str
    findings: tuple[Finding, ...]
    broker_reached: bool

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.status is Status.PROBLEM]

    @property
    def exit_status(self) -> int:
        if not self.broker_reached:
            return NO_BROKER
        return PROBLEMS if self.problems else HEALTHY


def to_json(report: Report) -> str:
    """The report for scripts: `healthy`, `exit_status`, and every finding."""
    return json.dumps(
        {
            "healthy": report.exit_status == HEALTHY,
            "exit_status": report.exit_status,
            "bootstrap_servers": report.bootstrap_servers,
            "topic_prefix": report.topic_prefix,
            "problems": len(report.problems),
            "findings": [asdict(f) for f in report.findings],
        },
        indent=2,
    )


def to_text(report: Report) -> str:
    """The report for people: a line per finding, each problem followed by its fix."""
    prefix = f', topic prefix "{report.topic_prefix}"' if report.topic_prefix else ""
    lines = [f"referrals doctor: Kafka at {report.bootstrap_servers}{prefix}", ""]
    width = max((len(f.check) for f in report.findings), default=0)
    for finding in report.findings:
        lines.extend(_lines(finding, width))
    lines.append("")
    lines.append(_verdict(report))
    return "\n".join(lines)


def _lines(finding: Finding, width: int) -> Sequence[str]:
    mark = "ok     " if finding.status is Status.OK else "PROBLEM"
    subject = f"{finding.subject}: " if finding.subject else ""
    out = [f"{mark}  {finding.check:<{width}}  {subject}{finding.detail}"]
    indent = " " * (9 + width + 2)
    for i, line in enumerate(finding.fix.splitlines()):
        out.append(f"{indent}{'fix: ' if i == 0 else '     '}{line}")
    return out


def _verdict(report: Report) -> str:
    count = len(report.problems)
    if report.exit_status == NO_BROKER:
        return f"the broker cannot be reached (exit status {NO_BROKER})"
    if count == 0:
        return "healthy: no problem found (exit status 0)"
    return f"{count} problem{'s' if count > 1 else ''} found (exit status {PROBLEMS})"
