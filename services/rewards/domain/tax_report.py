"""The year-end tax report, without I/O: what each advocate was paid in a calendar year.

`referrals tax-report --year YYYY` folds the advocates' money movements on `rewards.payouts.v2`
and finance's answers on `rewards.payout-results.v1` into one row per program, advocate and
currency:
- a payout counts in the year its PAID result occurred, in the program's time zone; a payout
  counts once, however many PAID results name it (finance may report one twice);
- a clawback is subtracted in the year it was issued, in the program's time zone;
- the net reaches the program's `tax_threshold` (per advocate per calendar year, in the
  program's currency) when it is at least the threshold.
Friend rewards are not an advocate's income: only recipient ADVOCATE counts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from referrals.contract.records import (
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
)
from referrals.platform.money import to_major

COLUMNS = (
    "program_id",
    "advocate_id",
    "currency",
    "paid",
    "clawed_back",
    "net",
    "paid_minor",
    "clawed_back_minor",
    "net_minor",
    "tax_threshold",
    "reaches_threshold",
    "tax_form_on_file",
)


@dataclass(frozen=True, slots=True)
class TaxProgram:
    """What the report needs of a program's latest version."""

    time_zone: str = "UTC"
    currency: str | None = None  # the threshold's currency
    tax_threshold_minor: int | None = None


@dataclass(frozen=True, slots=True)
class TaxRow:
    program_id: str
    advocate_id: str
    currency: str
    paid_minor: int
    clawed_back_minor: int
    tax_threshold_minor: int | None
    tax_form_on_file: bool | None  # None: no profile known

    @property
    def net_minor(self) -> int:
        return self.paid_minor - self.clawed_back_minor

    @property
    def reaches_threshold(self) -> bool:
        return self.tax_threshold_minor is not None and self.net_minor >= self.tax_threshold_minor


@dataclass
class TaxReport:
    year: int
    rows: list[TaxRow]
    unknown_programs: list[str] = field(default_factory=list)  # no config: UTC, no threshold


Key = tuple[str, str, str]  # (program_id, advocate_id, currency)


def tax_report(
    year: int,
    payouts: Iterable[PayoutCommand],
    results: Iterable[PayoutResult],
    programs: Mapping[str, TaxProgram],
    forms: Mapping[str, bool],
    program_id: str | None = None,
) -> TaxReport:
    """`payouts` from v2, `results` without the dead-lettered ones, `programs` the latest
    version of each, `forms` each advocate's latest `tax_form_on_file`."""
    own: dict[str, PayoutCommand] = {}  # payout_id -> a command of it (attempts share amounts)
    attempts: set[tuple[str, int]] = set()
    for p in payouts:
        if p.recipient is Recipient.ADVOCATE and program_id in (None, p.program_id):
            own.setdefault(p.payout_id, p)
            attempts.add((p.payout_id, p.attempt))
    paid_at = _first_paid(results, attempts)
    paid: dict[Key, int] = {}
    clawed: dict[Key, int] = {}
    for payout_id, p in own.items():
        tz = ZoneInfo(programs.get(p.program_id, TaxProgram()).time_zone)
        key = (p.program_id, p.advocate_id, p.currency)
        if p.kind is PayoutKind.CLAWBACK:
            if p.issued_at.astimezone(tz).year == year:
                clawed[key] = clawed.get(key, 0) + p.amount_minor
        elif payout_id in paid_at and paid_at[payout_id].astimezone(tz).year == year:
            paid[key] = paid.get(key, 0) + p.amount_minor
    rows = [
        _row(key, paid.get(key, 0), clawed.get(key, 0), programs.get(key[0]), forms)
        for key in sorted(paid.keys() | clawed.keys())
    ]
    unknown = sorted({p.program_id for p in own.values()} - programs.keys())
    return TaxReport(year, rows, unknown)


def _first_paid(
    results: Iterable[PayoutResult], attempts: set[tuple[str, int]]
) -> dict[str, datetime]:
    """payout_id -> when it was first reported PAID (an attempt that was issued)."""
    out: dict[str, datetime] = {}
    for r in results:
        if r.status is PayoutStatus.PAID and (r.payout_id, r.attempt) in attempts:
            known = out.get(r.payout_id)
            out[r.payout_id] = r.occurred_at if known is None else min(known, r.occurred_at)
    return out


def _row(
    key: Key, paid: int, clawed: int, program: TaxProgram | None, forms: Mapping[str, bool]
) -> TaxRow:
    program_id, advocate_id, currency = key
    threshold = None
    if program is not None and program.currency in (None, currency):
        threshold = program.tax_threshold_minor  # a threshold in another currency: none
    form = forms.get(advocate_id)
    return TaxRow(program_id, advocate_id, currency, paid, clawed, threshold, form)


def to_csv(report: TaxReport) -> str:
    """The CSV finance imports: a header row, then one row per program, advocate, currency."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in report.rows:
        cur = row.currency
        threshold = row.tax_threshold_minor
        form = row.tax_form_on_file
        writer.writerow(
            (
                row.program_id,
                row.advocate_id,
                cur,
                to_major(row.paid_minor, cur),
                to_major(row.clawed_back_minor, cur),
                to_major(row.net_minor, cur),
                row.paid_minor,
                row.clawed_back_minor,
                row.net_minor,
                "" if threshold is None else to_major(threshold, cur),
                str(row.reaches_threshold).lower(),
                "unknown" if form is None else str(form).lower(),
            )
        )
    return out.getvalue()
