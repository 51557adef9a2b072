"""`referrals approve|deny|retry PAYOUT_ID`, `reconcile` and `tax-report`: payouts and money.

The work is the rewards service's (`services/rewards/adapters/operator.py` for the commands,
`payout_reports.py` for the reports), which returns results and raises `ReferralsError`s; these
commands only read the command line and word the answer. The service is imported when one of
them runs, so the other commands never load it.

approve, deny and retry publish an OperatorCommand and wait for the rewards service's answer:
exit 0 when it APPLIED the command, 1 when it REFUSED it (the message names the payout's
state), 2 when no answer came within --timeout.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from referrals.contract.records import CommandOutcome, RewardAction
from referrals.platform.errors import ReferralsError
from referrals.platform.settings import KafkaSettings

if TYPE_CHECKING:
    from services.rewards.adapters.operator import NoAnswer

BY_HELP = "Who asks, for the audit log (default: the current user)."
REASON_HELP = "Why, for the audit log."
TIMEOUT_HELP = "Seconds to wait for the rewards service's answer."
NO_ANSWER_EXIT = 2  # the contract's exit status when no answer came in time
F = TypeVar("F", bound=Callable[..., Any])


def operator_options(command: F) -> F:
    """PAYOUT_ID and the options approve, deny and retry share (in this order in --help)."""
    for option in reversed(
        (
            click.argument("payout_id"),
            click.option("--by", help=BY_HELP),
            click.option("--reason", help=REASON_HELP),
            click.option(
                "--timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=30.0,
                show_default=True,
                help=TIMEOUT_HELP,
            ),
        )
    ):
        command = option(command)
    return command


@click.command("approve", short_help="Release a reward held for review.")
@operator_options
def approve(payout_id: str, by: str | None, reason: str | None, timeout: float) -> None:
    """Release PAYOUT_ID, a reward held for review (REWARD_HELD with NEEDS_APPROVAL or
    FRAUD_REVIEW).

    Exit 0 once the rewards service applied it; 1 when it refused (the message names the
    payout's current state); 2 when no answer came within --timeout.
    """
    _operate(RewardAction.APPROVE, payout_id, by, reason, timeout)


@click.command("deny", short_help="Deny a reward held for review.")
@operator_options
def deny(payout_id: str, by: str | None, reason: str | None, timeout: float) -> None:
    """Deny PAYOUT_ID, a reward held for review: its referral becomes REJECTED (DENIED) and
    the payout is never issued.

    Exit 0 once the rewards service applied it; 1 when it refused (the message names the
    payout's current state); 2 when no answer came within --timeout.
    """
    _operate(RewardAction.DENY, payout_id, by, reason, timeout)


@click.command("retry", short_help="Re-issue a FAILED payout as its next attempt.")
@operator_options
def retry(payout_id: str, by: str | None, reason: str | None, timeout: float) -> None:
    """Re-issue PAYOUT_ID, a FAILED payout: same payout_id, next attempt.

    Exit 0 once the rewards service applied it; 1 when it refused (the message names the
    payout's current state); 2 when no answer came within --timeout.
    """
    _operate(RewardAction.RETRY, payout_id, by, reason, timeout)


def _operate(
    action: RewardAction, payout_id: str, by: str | None, reason: str | None, timeout: float
) -> None:
    from services.rewards.adapters import operator

    settings = KafkaSettings.from_env()
    principal = operator.kafka_principal(settings)
    command = operator.new_command(action, payout_id, by or _user(), reason, principal=principal)
    try:
        answer = asyncio.run(operator.request(settings, command, timeout))
    except operator.NoAnswer as late:
        click.echo(f"referrals {action.value.lower()}: {no_answer_text(late)}", err=True)
        raise click.exceptions.Exit(NO_ANSWER_EXIT) from late
    if answer.result.outcome is CommandOutcome.REFUSED:
        raise ReferralsError(operator.answer_text(answer), reason=answer.result.reason or "REFUSED")
    click.echo(operator.answer_text(answer))


def no_answer_text(late: NoAnswer) -> str:
    return (
        f"{late}. The command stays in operator.commands.v1 (the audit log) and will be "
        "applied when the rewards service reads it."
    )


@click.command("reconcile", short_help="Payouts issued, paid, failed, outstanding, clawed back.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON).")
def reconcile(as_json: bool) -> None:
    """Per program and currency: payouts issued, paid, failed and outstanding (count, amount;
    advocates' and friends' rewards), the friends' part of them, and clawbacks.

    Reads rewards.payouts.v2, rewards.payouts.v1 and rewards.payout-results.v1 whole; results
    the rewards service dead-lettered are not counted. A (payout_id, attempt) issued twice, a
    payout PAID on two attempts, or an advocate payout on one payouts topic and not the other
    (or with another amount) is an error: the table is printed, then exit 1.
    """
    from services.rewards.adapters import payout_reports
    from services.rewards.domain import reconcile as reconciling

    report = asyncio.run(payout_reports.reconcile(KafkaSettings.from_env()))
    data = reconciling.report_data(report)
    click.echo(json.dumps(data, indent=2) if as_json else reconciling.report_text(report))
    payout_reports.check_consistent(report)


@click.command("tax-report", short_help="CSV of what each advocate was paid in a year.")
@click.option(
    "--year",
    required=True,
    type=click.IntRange(2000, 9999),
    help="The calendar year (in each program's time zone), e.g. 2026.",
)
@click.option("--program", "program_id", help="Only this program (default: all).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the CSV to this file instead of standard output.",
)
def tax_report(year: int, program_id: str | None, output: Path | None) -> None:
    """CSV for finance's year-end forms: per program, advocate and currency, the amount paid
    in the year net of clawbacks, whether it reaches the program's tax threshold, and whether a
    tax form is on file.

    A payout counts in the year of its PAID result, a clawback in the year it was issued, both
    in the program's time zone. Friends' rewards are left out.
    """
    from services.rewards.adapters import payout_reports
    from services.rewards.domain.tax_report import to_csv

    report = asyncio.run(payout_reports.tax(KafkaSettings.from_env(), year, program_id))
    text = to_csv(report)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(report.rows)} row(s) to {output}", err=True)
    for program in report.unknown_programs:
        click.echo(
            f"warning: no config for program {program}: UTC and no tax threshold used", err=True
        )


def _user() -> str:
    """The audit log's default `by`: the operating system's user running the command."""
    return getpass.getuser()
