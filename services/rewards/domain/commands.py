"""Operator commands' rules, without I/O: who may be approved or retried, and reconciliation.

`referrals approve|retry PAYOUT_ID` look up the payout's history on `referral.status.v1` and
refuse, with its current state, a payout that is not awaiting approval / not FAILED. The
rewards service checks again when the command arrives (its ledger is the authority); the CLI's
check gives the operator an immediate, clear answer.

`referrals reconcile` folds `rewards.payouts.v1` and `rewards.payout-results.v1` into totals per
program and currency; a (payout_id, attempt) issued twice is an error (payouts are exactly once).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from referrals.contract.records import (
    PayoutCommand,
    PayoutResult,
    PayoutStatus,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
    RewardCommand,
)
from referrals.platform.errors import ReferralsError
from referrals.platform.money import to_major
from services.rewards.domain.ledger import Reason


class Refused(ReferralsError):
    """The command does not apply to the payout in its current state; nothing was sent."""

    reason = "REFUSED"


def describe(status: ReferralStatusChanged) -> str:
    return f"{status.status}" + (f" ({status.reason})" if status.reason else "")


def issued_attempts(history: list[ReferralStatusChanged]) -> int:
    """Attempts issued so far: each attempt announces itself with one REWARDED (repeats of a
    status carry the same status_id, so they are counted once)."""
    return len({s.status_id for s in history if s.status is ReferralStatus.REWARDED})


def check(action: RewardAction, payout_id: str, history: list[ReferralStatusChanged]) -> int:
    """The attempt the command leads to; raises Refused unless the latest status allows it.

    APPROVE: only a reward whose latest status is REWARD_HELD with NEEDS_APPROVAL.
    RETRY: only a payout whose latest status is PAYOUT_FAILED.
    """
    if not history:
        raise Refused(f"unknown payout {payout_id}: no reward with this payout id was decided")
    latest = history[-1]
    if action is RewardAction.APPROVE:
        if (
            latest.status is not ReferralStatus.REWARD_HELD
            or latest.reason != Reason.NEEDS_APPROVAL
        ):
            raise Refused(
                f"payout {payout_id} is {describe(latest)}; only a reward held for approval "
                f"(REWARD_HELD NEEDS_APPROVAL) can be approved"
            )
    elif latest.status is not ReferralStatus.PAYOUT_FAILED:
        raise Refused(
            f"payout {payout_id} is {describe(latest)}; only a payout whose latest status is "
            f"PAYOUT_FAILED can be retried"
        )
    return issued_attempts(history) + 1


def command_id(action: RewardAction, payout_id: str, attempt: int) -> str:
    """Deterministic: the same command for the same attempt has the same id."""
    digest = hashlib.sha256(f"{action.value}|{payout_id}|{attempt}".encode()).hexdigest()
    return "cmd-" + digest[:32]


def make_command(
    action: RewardAction, payout_id: str, attempt: int, by: str, now: datetime
) -> RewardCommand:
    return RewardCommand(command_id(action, payout_id, attempt), payout_id, action, by, now)


# -- reconciliation ---------------------------------------------------------------------------
@dataclass
class Totals:
    count: int = 0
    amount_minor: int = 0

    def add(self, amount_minor: int) -> None:
        self.count += 1
        self.amount_minor += amount_minor


@dataclass
class Line:
    """One program and currency. Counts are payouts (payout_ids), whatever their attempts."""

    program_id: str
    currency: str
    issued: Totals = field(default_factory=Totals)
    paid: Totals = field(default_factory=Totals)
    failed: Totals = field(default_factory=Totals)  # latest attempt FAILED, not retried
    outstanding: Totals = field(default_factory=Totals)  # issued, no answer for latest attempt
    attempts: int = 0
    # Payouts PAID on more than one attempt: money moved twice. The amount is the excess paid.
    paid_twice: Totals = field(default_factory=Totals)


@dataclass
class Report:
    lines: list[Line]
    duplicates: list[tuple[str, int, int]]  # (payout_id, attempt, copies): errors
    unmatched: list[tuple[str, int, str]]  # results naming no issued (payout_id, attempt)
    skipped: int = 0  # records that did not decode (left to the topics' DLQs)
    paid_twice: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # errors
    dead_lettered: int = 0  # results the rewards service dead-lettered: not counted


def reconcile(payouts: Iterable[PayoutCommand], results: Iterable[PayoutResult]) -> Report:
    copies: Counter[tuple[str, int]] = Counter()
    latest: dict[str, PayoutCommand] = {}
    for command in payouts:
        copies[(command.payout_id, command.attempt)] += 1
        known = latest.get(command.payout_id)
        if known is None or command.attempt > known.attempt:
            latest[command.payout_id] = command
    answers: dict[tuple[str, int], set[PayoutStatus]] = defaultdict(set)
    unmatched = []
    for result in results:
        if (result.payout_id, result.attempt) not in copies:
            unmatched.append((result.payout_id, result.attempt, result.status.value))
        answers[(result.payout_id, result.attempt)].add(result.status)
    lines: dict[tuple[str, str], Line] = {}
    paid_twice: list[tuple[str, tuple[int, ...]]] = []
    for payout_id, command in sorted(latest.items()):
        key = (command.program_id, command.currency)
        line = lines.setdefault(key, Line(*key))
        paid = _account(line, command, answers, {a for (p, a) in copies if p == payout_id})
        if len(paid) > 1:
            paid_twice.append((payout_id, paid))
    duplicates = sorted((p, a, n) for (p, a), n in copies.items() if n > 1)
    return Report(
        [lines[k] for k in sorted(lines)], duplicates, sorted(unmatched), paid_twice=paid_twice
    )


def _account(
    line: Line,
    command: PayoutCommand,
    answers: dict[tuple[str, int], set[PayoutStatus]],
    attempts: set[int],
) -> tuple[int, ...]:
    """Adds the payout to its line; returns the attempts answered PAID."""
    amount = command.amount_minor
    line.issued.add(amount)
    line.attempts += len(attempts)
    paid = tuple(
        a for a in sorted(attempts) if PayoutStatus.PAID in answers.get((command.payout_id, a), ())
    )
    if len(paid) > 1:  # each attempt moved the money: the extra ones are an overpayment
        line.paid_twice.count += 1
        line.paid_twice.amount_minor += amount * (len(paid) - 1)
    if paid:
        line.paid.add(amount)  # money moved (an earlier attempt's late PAID counts too)
    elif PayoutStatus.FAILED in answers.get((command.payout_id, command.attempt), ()):
        line.failed.add(amount)
    else:
        line.outstanding.add(amount)
    return paid


def report_data(report: Report) -> dict[str, object]:
    """The `--json` form: amounts in minor units and as exact decimal strings."""

    def money(totals: Totals, currency: str) -> dict[str, object]:
        return {
            "count": totals.count,
            "amount_minor": totals.amount_minor,
            "amount": to_major(totals.amount_minor, currency),
        }

    return {
        "programs": [
            {
                "program_id": line.program_id,
                "currency": line.currency,
                "attempts": line.attempts,
                **{
                    name: money(getattr(line, name), line.currency)
                    for name in ("issued", "paid", "failed", "outstanding", "paid_twice")
                },
            }
            for line in report.lines
        ],
        "errors": [
            {"payout_id": p, "attempt": a, "copies": n, "error": "DUPLICATE_PAYOUT"}
            for p, a, n in report.duplicates
        ]
        + [
            {"payout_id": p, "paid_attempts": list(attempts), "error": "PAID_TWICE"}
            for p, attempts in report.paid_twice
        ],
        "unmatched_results": [
            {"payout_id": p, "attempt": a, "status": s} for p, a, s in report.unmatched
        ],
        "undecodable_records": report.skipped,
        "dead_lettered_results": report.dead_lettered,
    }


def report_text(report: Report) -> str:
    """A table per program and currency, then errors and unmatched results."""
    head = ("program", "currency", "issued", "paid", "failed", "outstanding", "attempts")
    rows: list[tuple[str, ...]] = [head]
    for line in report.lines:
        cells = [
            f"{t.count} / {to_major(t.amount_minor, line.currency)}"
            for t in (line.issued, line.paid, line.failed, line.outstanding)
        ]
        rows.append((line.program_id, line.currency, *cells, str(line.attempts)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if not report.lines:
        out.append("(no payouts issued)")
    for p, a, n in report.duplicates:
        out.append(f"ERROR: payout {p} attempt {a} was issued {n} times (DUPLICATE_PAYOUT)")
    for p, attempts in report.paid_twice:
        listed = ", ".join(str(a) for a in attempts)
        out.append(f"ERROR: payout {p} was PAID on attempts {listed} (PAID_TWICE)")
    for p, a, s in report.unmatched:
        out.append(f"warning: result {s} for payout {p} attempt {a}, which was never issued")
    if report.skipped:
        out.append(f"warning: {report.skipped} record(s) could not be decoded and were skipped")
    if report.dead_lettered:
        out.append(
            f"note: {report.dead_lettered} payout result(s) the rewards service dead-lettered "
            "were not counted"
        )
    return "\n".join(out)
