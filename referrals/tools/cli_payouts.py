"""`referrals approve|retry PAYOUT_ID` and `referrals reconcile`: the operator's payout commands.

The work is the rewards service's (`services/rewards/adapters/operator.py`), which returns
results and raises `ReferralsError`s; these commands only read the command line and print.
The service is imported when one of them runs, so the other commands never load it.
"""

from __future__ import annotations

import asyncio
import getpass
import json

import click

from referrals.platform.settings import KafkaSettings

BY_HELP = "Who asks, for the audit trail (default: the current user)."


@click.command("approve", short_help="Release a reward held for approval.")
@click.argument("payout_id")
@click.option("--by", help=BY_HELP)
def approve(payout_id: str, by: str | None) -> None:
    """Release PAYOUT_ID, a reward held for approval (REWARD_HELD with NEEDS_APPROVAL).

    Refused, exit 1, naming the payout's current state, in any other state. Returns once the
    command is published: follow `referrals tail referral.status.v1` for its effect.
    """
    from services.rewards.adapters import operator

    sent = asyncio.run(operator.approve(KafkaSettings.from_env(), payout_id, by or _user()))
    click.echo(sent.describe())


@click.command("retry", short_help="Re-issue a FAILED payout as its next attempt.")
@click.argument("payout_id")
@click.option("--by", help=BY_HELP)
def retry(payout_id: str, by: str | None) -> None:
    """Re-issue PAYOUT_ID, a FAILED payout: same payout_id, next attempt.

    Refused, exit 1, naming the payout's current state, in any other state. Returns once the
    command is published: follow `referrals tail referral.status.v1` for its effect.
    """
    from services.rewards.adapters import operator

    sent = asyncio.run(operator.retry(KafkaSettings.from_env(), payout_id, by or _user()))
    click.echo(sent.describe())


@click.command("reconcile", short_help="Payouts issued, paid, failed, outstanding.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON).")
def reconcile(as_json: bool) -> None:
    """Payouts issued, paid, failed and outstanding per program and currency (count, amount).

    Reads rewards.payouts.v1 and rewards.payout-results.v1 whole; results the rewards service
    dead-lettered are not counted. A (payout_id, attempt) issued twice, or a payout PAID on two
    attempts, is an error: the table is printed, then exit 1.
    """
    from services.rewards.adapters import operator
    from services.rewards.domain import commands

    report = asyncio.run(operator.reconcile(KafkaSettings.from_env()))
    data = commands.report_data(report)
    click.echo(json.dumps(data, indent=2) if as_json else commands.report_text(report))
    operator.check_unique(report)


def _user() -> str:
    """The audit trail's default `by`: the operating system's user running the command."""
    return getpass.getuser()
