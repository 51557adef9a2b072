"""The fault report: what was injected and when, what the checker counted, and the verdict.

Printed as a table, written as `<out>/fault-report.json` (for machines and the bounded test)
and `<out>/fault-report.md` (for people). `ok` is false when a payout is missing, doubled or of a
wrong amount, when a valid record was dead-lettered, when a service instance exited on its own
or is not up (live and ready) at the end, when the instance left alone did not take over, or
when the run could not finish; everything else the checker finds is listed under findings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from referrals.tools.faults.check import Checked


@dataclass
class Step:
    at_s: float  # seconds since the run's start
    kind: str
    target: str
    detail: str = ""
    ok: bool | None = None  # None: nothing to judge


@dataclass
class FaultReport:
    scale: str
    referrals: int
    outcomes: dict[str, int]
    steps: list[Step] = field(default_factory=list)
    checked: Checked | None = None
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    mails_delivered: int = 0
    mail_duplicates: int = 0
    paid: int = 0
    waited_s: float = 0.0
    duration_s: float = 0.0
    error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return sum(1 for s in self.steps if s.kind.startswith("sigkill"))

    @property
    def services_up(self) -> list[str]:
        return [n for n, h in self.services.items() if h.get("live") and h.get("ready")]

    @property
    def services_down(self) -> list[str]:
        return [n for n, h in self.services.items() if not (h.get("live") and h.get("ready"))]

    @property
    def missing(self) -> int:
        return len(self.checked.missing) if self.checked else -1

    @property
    def doubled(self) -> int:
        return len(self.checked.doubled) if self.checked else -1

    @property
    def unexpected_exits(self) -> dict[str, list[int]]:
        """Instances that exited on their own (a zombie that died instead of rejoining, a
        crash), with their exit codes. The suite's own SIGKILLs are not among them: `Fleet.kill`
        lets go of the process before killing it, so the reaper never sees those exits."""
        return {
            n: h["unexpected_exits"] for n, h in self.services.items() if h.get("unexpected_exits")
        }

    @property
    def takeover_ok(self) -> bool | None:
        """Whether the rewards instance left alone issued more payouts (None: not run)."""
        steps = [s for s in self.steps if s.kind == "sigkill (one of two)"]
        return None if not steps else all(s.ok for s in steps)

    @property
    def ok(self) -> bool:
        c = self.checked
        return (
            not self.error
            and self.missing == 0
            and self.doubled == 0
            and not self.services_down
            and bool(self.services)
            and not self.unexpected_exits
            and self.takeover_ok is not False
            and (
                c is not None
                and not c.wrong_amount
                and not c.valid_dead_lettered
                and not c.accepted_but_dead_lettered
            )
        )

    def findings(self) -> list[str]:
        out = [f"run error: {self.error}"] if self.error else []
        c = self.checked
        if c is not None:
            if c.missing:
                out.append(f"{len(c.missing)} payouts MISSING, e.g. {c.missing[:5]}")
            if c.doubled:
                out.append(f"{len(c.doubled)} payouts DOUBLED: {dict(list(c.doubled.items())[:5])}")
            if c.unexpected:
                out.append(f"{len(c.unexpected)} unexpected payouts, e.g. {c.unexpected[:5]}")
            if c.wrong_amount:
                out.append(
                    f"{len(c.wrong_amount)} payouts with a wrong amount: {c.wrong_amount[:5]}"
                )
            if c.referrals_seen != c.referrals_expected:
                out.append(f"referrals seen {c.referrals_seen} of {c.referrals_expected}")
            for where in c.bad_not_dead_lettered:
                out.append(f"bad input not dead-lettered: {where}")
            for where in c.accepted_but_dead_lettered:
                out.append(f"valid input dead-lettered: {where}")
            for what, n in c.valid_dead_lettered.items():
                out.append(f"{n} workload records dead-lettered: {what}")
        for name in self.services_down:
            out.append(f"service instance not up at the end: {name} {self.services[name]}")
        for name, h in self.services.items():
            if h.get("unexpected_exits"):
                out.append(f"{name} exited on its own (codes {h['unexpected_exits']})")
        for s in self.steps:
            if s.ok is False:
                out.append(f"step failed: {s.kind} {s.target} at {s.at_s:.0f} s: {s.detail}")
        if self.mail_duplicates:
            out.append(
                f"{self.mail_duplicates} messages delivered more than once (same Message-ID)"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        c = self.checked
        return {
            "ok": self.ok,
            "scale": self.scale,
            "duration_s": round(self.duration_s, 1),
            "faults_injected": len(self.steps),
            "kills": self.kills,
            "steps": [asdict(s) for s in self.steps],
            "referrals": {"generated": self.referrals, "outcomes": self.outcomes},
            "referrals_expected": c.referrals_expected if c else None,
            "referrals_seen": c.referrals_seen if c else None,
            "payouts_expected": c.expected if c else None,
            "payouts_seen": c.seen if c else None,
            "payouts_paid": self.paid,
            "missing": self.missing,
            "doubled": self.doubled,
            "unexpected": len(c.unexpected) if c else None,
            "wrong_amount": len(c.wrong_amount) if c else None,
            "missing_ids": c.missing[:50] if c else [],
            "doubled_ids": c.doubled if c else {},
            "payout_topics": c.payout_topics if c else [],
            "dead_letters": c.dead_letters if c else {},
            "bad_input": c.bad_input if c else {},
            "bad_not_dead_lettered": c.bad_not_dead_lettered if c else [],
            "valid_dead_lettered": c.valid_dead_lettered if c else {},
            "accepted_but_dead_lettered": c.accepted_but_dead_lettered if c else [],
            "unexpected_exits": self.unexpected_exits,
            "takeover_ok": self.takeover_ok,
            "messages_delivered": self.mails_delivered,
            "message_duplicates": self.mail_duplicates,
            "services": self.services,
            "services_up": len(self.services_up),
            "services_down": self.services_down,
            "waited_s": round(self.waited_s, 1),
            "error": self.error,
            "notes": self.notes,
            "findings": self.findings(),
        }

    def table(self) -> str:
        c = self.checked
        rows: list[tuple[str, str]] = [
            ("scale", f"{self.scale}  ({self.duration_s:.0f} s)"),
            ("faults injected", f"{len(self.steps)} steps, {self.kills} SIGKILLs"),
        ]
        kinds: dict[str, int] = {}
        for s in self.steps:
            kinds[s.kind] = kinds.get(s.kind, 0) + 1
        rows += [(f"  {k}", str(n)) for k, n in sorted(kinds.items())]
        if c is not None:
            rows += [
                ("referrals expected/seen", f"{c.referrals_expected} / {c.referrals_seen}"),
                ("payouts expected/seen", f"{c.expected} / {c.seen}  (paid {self.paid})"),
                ("MISSING", str(self.missing)),
                ("DOUBLED", str(self.doubled)),
                ("unexpected payouts", str(len(c.unexpected))),
                ("wrong amounts", str(len(c.wrong_amount))),
            ]
            for topic, reasons in c.dead_letters.items():
                rows.append(
                    (f"dead letters {topic}", ", ".join(f"{r} {n}" for r, n in reasons.items()))
                )
            n_dlq = sum(1 for v in c.bad_input.values() if v["expect"] == "dlq")
            rows.append(
                (
                    "bad input classes",
                    f"{len(c.bad_input)} ({n_dlq} to dead-letter); "
                    f"{len(c.bad_not_dead_lettered)} records not dead-lettered",
                )
            )
        else:
            rows.append(("MISSING / DOUBLED", "not checked"))
        rows += [
            ("messages delivered", f"{self.mails_delivered} (duplicates {self.mail_duplicates})"),
            ("services up", f"{len(self.services_up)} / {len(self.services)}"),
            ("verdict", "OK" if self.ok else "FAILED"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        lines.append("")
        lines.append("timeline:")
        lines += [
            f"  {s.at_s:7.1f} s  {s.kind:<22} {s.target:<18} {s.detail}"
            + ("" if s.ok is None else ("  ok" if s.ok else "  FAILED"))
            for s in self.steps
        ]
        found = self.findings()
        if found:
            lines.append("")
            lines.append("findings:")
            lines += [f"  - {f}" for f in found]
        return "\n".join(lines)

    def markdown(self) -> str:
        c = self.checked
        verdict = "**OK**" if self.ok else "**FAILED**"
        md = [
            f"# Fault report ({self.scale}): {verdict}",
            "",
            "| figure | value |",
            "|---|---|",
            f"| faults injected | {len(self.steps)} steps, {self.kills} SIGKILLs |",
        ]
        if c is not None:
            md += [
                f"| referrals expected / seen | {c.referrals_expected} / {c.referrals_seen} |",
                f"| payouts expected / seen / paid | {c.expected} / {c.seen} / {self.paid} |",
                f"| **missing** | {self.missing} |",
                f"| **doubled** | {self.doubled} |",
                f"| unexpected payouts | {len(c.unexpected)} |",
            ]
        md += [
            f"| messages delivered | {self.mails_delivered} (duplicates {self.mail_duplicates}) |",
            f"| services up | {len(self.services_up)} / {len(self.services)} |",
            f"| duration | {self.duration_s:.0f} s |",
            "",
        ]
        if c is not None:
            md += ["## Dead letters by topic and reason", "", "| topic | reason | count |"]
            md += ["|---|---|---|"]
            for topic, reasons in c.dead_letters.items():
                md += [f"| {topic} | {r} | {n} |" for r, n in reasons.items()]
            md += [
                "",
                "## Bad input by class",
                "",
                "| class | expect | sent | dead-lettered | reasons |",
            ]
            md += ["|---|---|---|---|---|"]
            for cls, v in sorted(c.bad_input.items()):
                why = ", ".join(f"{r} {n}" for r, n in v["reasons"].items())
                md.append(f"| {cls} | {v['expect']} | {v['sent']} | {v['dead_lettered']} | {why} |")
        md += [
            "",
            "## Timeline",
            "",
            "| at (s) | fault | target | detail | ok |",
            "|---|---|---|---|---|",
        ]
        for s in self.steps:
            mark = "" if s.ok is None else ("yes" if s.ok else "**no**")
            md.append(f"| {s.at_s:.1f} | {s.kind} | {s.target} | {s.detail} | {mark} |")
        found = self.findings()
        md += ["", "## Findings", ""] + ([f"- {f}" for f in found] or ["- none"])
        if self.notes:
            md += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(md) + "\n"

    def write(self, out: Path) -> tuple[Path, Path]:
        out.mkdir(parents=True, exist_ok=True)
        js, md = out / "fault-report.json", out / "fault-report.md"
        js.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        md.write_text(self.markdown())
        return js, md
