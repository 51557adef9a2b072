"""Reconciliation, without I/O: what was issued, paid, failed, outstanding and clawed back.

`referrals reconcile` folds `rewards.payouts.v2` (every money movement) and
`rewards.payout-results.v1` into totals per program and currency. Payouts are exactly once, so
these are errors to investigate, not totals to adjust:
- DUPLICATE_PAYOUT: a (payout_id, attempt) twice on either payouts topic;
- PAID_TWICE: a payout answered PAID on two attempts (the money moved twice);
- V1_V2_MISMATCH: every advocate payout is written to both topics in one transaction, so a
  (payout_id, attempt) on `rewards.payouts.v1` that is not on v2 as an ADVOCATE PAYOUT of the
  same amount, or the other way round, means one of the two topics is wrong.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from referrals.contract.records import (
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
)
from referrals.platform.money import to_major

V1 = "rewards.payouts.v1"
V2 = "rewards.payouts.v2"
Attempt = tuple[str, int]  # (payout_id, attempt)


@dataclass
class Totals:
    count: int = 0
    amount_minor: int = 0

    def add(self, amount_minor: int) -> None:
        self.count += 1
        self.amount_minor += amount_minor


@dataclass
class Outcomes:
    """Payouts (payout_ids, whatever their attempts) by where their money stands."""

    issued: Totals = field(default_factory=Totals)
    paid: Totals = field(default_factory=Totals)
    failed: Totals = field(default_factory=Totals)  # latest attempt FAILED, not retried
    outstanding: Totals = field(default_factory=Totals)  # issued, no answer for latest attempt


@dataclass(kw_only=True)
class Line(Outcomes):
    """One program and currency: kind PAYOUT to either recipient, the friends' part of it
    again on its own, and the clawbacks."""

    program_id: str
    currency: str
    attempts: int = 0
    # Payouts PAID on more than one attempt: money moved twice. The amount is the excess paid.
    paid_twice: Totals = field(default_factory=Totals)
    friends: Outcomes = field(default_factory=Outcomes)  # recipient FRIEND (included above)
    clawed_back: Totals = field(default_factory=Totals)  # kind CLAWBACK


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A (payout_id, attempt) whose v1 and v2 records disagree."""

    payout_id: str
    attempt: int
    problem: str


@dataclass
class Report:
    lines: list[Line]
    duplicates: list[tuple[str, str, int, int]]  # (topic, payout_id, attempt, copies): errors
    unmatched: list[tuple[str, int, str]]  # results naming no issued (payout_id, attempt)
    skipped: int = 0  # records that did not decode (left to the topics' DLQs)
    paid_twice: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # errors
    dead_lettered: int = 0  # results the rewards service dead-lettered: not counted
    mismatches: list[Mismatch] = field(default_factory=list)  # errors


def reconcile(
    payouts: Iterable[PayoutCommand],
    results: Iterable[PayoutResult],
    payouts_v1: Iterable[PayoutCommand],
) -> Report:
    """`payouts` from v2, `payouts_v1` from v1 (only compared with v2), `results` as kept."""
    v2 = list(payouts)
    v1 = list(payouts_v1)
    copies: Counter[Attempt] = Counter((p.payout_id, p.attempt) for p in v2)
    latest: dict[str, PayoutCommand] = {}
    for command in v2:
        known = latest.get(command.payout_id)
        if known is None or command.attempt > known.attempt:
            latest[command.payout_id] = command
    answers: dict[Attempt, set[PayoutStatus]] = defaultdict(set)
    unmatched = []
    for result in results:
        if (result.payout_id, result.attempt) not in copies:
            unmatched.append((result.payout_id, result.attempt, result.status.value))
        answers[(result.payout_id, result.attempt)].add(result.status)
    attempts: dict[str, set[int]] = defaultdict(set)
    for payout_id, attempt in copies:
        attempts[payout_id].add(attempt)
    lines: dict[tuple[str, str], Line] = {}
    paid_twice: list[tuple[str, tuple[int, ...]]] = []
    for payout_id, command in sorted(latest.items()):
        key = (command.program_id, command.currency)
        line = lines.setdefault(key, Line(program_id=key[0], currency=key[1]))
        if command.kind is PayoutKind.CLAWBACK:
            line.clawed_back.add(command.amount_minor)
            continue
        paid = _account(line, command, answers, attempts[payout_id])
        if len(paid) > 1:
            paid_twice.append((payout_id, paid))
    v1_copies: Counter[Attempt] = Counter((p.payout_id, p.attempt) for p in v1)
    duplicates = sorted(
        (topic, p, a, n)
        for topic, counted in ((V1, v1_copies), (V2, copies))
        for (p, a), n in counted.items()
        if n > 1
    )
    return Report(
        [lines[k] for k in sorted(lines)],
        duplicates,
        sorted(unmatched),
        paid_twice=paid_twice,
        mismatches=mismatches(v1, v2),
    )


def _account(
    line: Line,
    command: PayoutCommand,
    answers: dict[Attempt, set[PayoutStatus]],
    attempts: set[int],
) -> tuple[int, ...]:
    """Adds the payout to its line (and its friends' part); returns the attempts answered PAID."""
    amount = command.amount_minor
    line.attempts += len(attempts)
    paid = tuple(
        a for a in sorted(attempts) if PayoutStatus.PAID in answers.get((command.payout_id, a), ())
    )
    if len(paid) > 1:  # each attempt moved the money: the extra ones are an overpayment
        line.paid_twice.count += 1
        line.paid_twice.amount_minor += amount * (len(paid) - 1)
    if paid:
        where = "paid"  # money moved (an earlier attempt's late PAID counts too)
    elif PayoutStatus.FAILED in answers.get((command.payout_id, command.attempt), ()):
        where = "failed"
    else:
        where = "outstanding"
    parts: list[Outcomes] = [line]
    if command.recipient is Recipient.FRIEND:
        parts.append(line.friends)
    for part in parts:
        part.issued.add(amount)
        getattr(part, where).add(amount)
    return paid


def mismatches(v1: list[PayoutCommand], v2: list[PayoutCommand]) -> list[Mismatch]:
    """Each (payout_id, attempt) of v1 must be on v2 as an ADVOCATE PAYOUT with the same amount
    and currency, and each such v2 record must be on v1."""
    old = {(p.payout_id, p.attempt): p for p in v1}
    new = {(p.payout_id, p.attempt): p for p in v2}
    out: list[Mismatch] = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key), new.get(key)
        if now is None:
            out.append(Mismatch(*key, f"on {V1} but not on {V2}"))
        elif (now.kind, now.recipient) != (PayoutKind.PAYOUT, Recipient.ADVOCATE):
            if was is not None:
                kind = f"{now.recipient} {now.kind}"
                out.append(Mismatch(*key, f"on {V2} as a {kind}, not an advocate payout"))
        elif was is None:
            out.append(Mismatch(*key, f"on {V2} but not on {V1}"))
        elif (was.amount_minor, was.currency) != (now.amount_minor, now.currency):
            out.append(
                Mismatch(
                    *key,
                    f"{to_major(was.amount_minor, was.currency)} {was.currency} on {V1}, "
                    f"{to_major(now.amount_minor, now.currency)} {now.currency} on {V2}",
                )
            )
    return out


# -- the report, for machines and people --------------------------------------------------------
OUTCOMES = ("issued", "paid", "failed", "outstanding")


def report_data(report: Report) -> dict[str, object]:
    """The `--json` form: amounts in minor units and as exact decimal strings."""

    def money(totals: Totals, currency: str) -> dict[str, object]:
        return {
            "count": totals.count,
            "amount_minor": totals.amount_minor,
            "amount": to_major(totals.amount_minor, currency),
        }

    def outcomes(part: Outcomes, currency: str) -> dict[str, object]:
        return {name: money(getattr(part, name), currency) for name in OUTCOMES}

    return {
        "programs": [
            {
                "program_id": line.program_id,
                "currency": line.currency,
                "attempts": line.attempts,
                **outcomes(line, line.currency),
                "paid_twice": money(line.paid_twice, line.currency),
                "clawed_back": money(line.clawed_back, line.currency),
                "friends": outcomes(line.friends, line.currency),
            }
            for line in report.lines
        ],
        "errors": [
            {"topic": t, "payout_id": p, "attempt": a, "copies": n, "error": "DUPLICATE_PAYOUT"}
            for t, p, a, n in report.duplicates
        ]
        + [
            {"payout_id": p, "paid_attempts": list(attempts), "error": "PAID_TWICE"}
            for p, attempts in report.paid_twice
        ]
        + [
            {"payout_id": m.payout_id, "attempt": m.attempt, "problem": m.problem}
            | {"error": "V1_V2_MISMATCH"}
            for m in report.mismatches
        ],
        "unmatched_results": [
            {"payout_id": p, "attempt": a, "status": s} for p, a, s in report.unmatched
        ],
        "undecodable_records": report.skipped,
        "dead_lettered_results": report.dead_lettered,
    }


HEAD = ("program", "currency", *OUTCOMES, "attempts", "clawed_back", "friends")


def report_text(report: Report) -> str:
    """A table per program and currency (count / amount; `friends` is the part of `issued`
    that went to referred friends), then errors and unmatched results."""
    rows: list[tuple[str, ...]] = [HEAD]
    for line in report.lines:
        cur = line.currency
        money = [_cell(getattr(line, name), cur) for name in OUTCOMES]
        extra = (_cell(line.clawed_back, cur), _cell(line.friends.issued, cur))
        rows.append((line.program_id, line.currency, *money, str(line.attempts), *extra))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEAD))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if not report.lines:
        out.append("(no payouts issued)")
    out.extend(_problems(report))
    return "\n".join(out)


def _cell(totals: Totals, currency: str) -> str:
    return f"{totals.count} / {to_major(totals.amount_minor, currency)}"


def _problems(report: Report) -> list[str]:
    out = [
        f"ERROR: payout {p} attempt {a} is on {t} {n} times (DUPLICATE_PAYOUT)"
        for t, p, a, n in report.duplicates
    ]
    for p, attempts in report.paid_twice:
        listed = ", ".join(str(a) for a in attempts)
        out.append(f"ERROR: payout {p} was PAID on attempts {listed} (PAID_TWICE)")
    for m in report.mismatches:
        out.append(f"ERROR: payout {m.payout_id} attempt {m.attempt}: {m.problem} (V1_V2_MISMATCH)")
    for p, a, s in report.unmatched:
        out.append(f"warning: result {s} for payout {p} attempt {a}, which was never issued")
    if report.skipped:
        out.append(f"warning: {report.skipped} record(s) could not be decoded and were skipped")
    if report.dead_lettered:
        out.append(
            f"note: {report.dead_lettered} payout result(s) the rewards service dead-lettered "
            "were not counted"
        )
    return out
