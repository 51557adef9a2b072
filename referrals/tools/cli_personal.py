"""`referrals erase ADVOCATE_ID` and `referrals export ADVOCATE_ID`: personal data (GDPR).

The work is `referrals.contract.personal`'s, which returns typed results and raises
`ReferralsError`s; these commands read the command line and word the answer. erase publishes
the advocate's tombstone on referral.advocates.v1 (nothing when the latest record already is
one); export prints, as one JSON document, everything the topics hold about the advocate.
"""

from __future__ import annotations

import asyncio
import json

import click

from referrals.contract.personal import ProfileState, erase, export, to_document
from referrals.platform.settings import KafkaSettings

_BEFORE = {
    ProfileState.KNOWN: "their profile",
    ProfileState.UNKNOWN: "no profile was ever published for this id",
}


@click.command("erase", short_help="Erase an advocate's personal data (GDPR).")
@click.argument("advocate_id")
def erase_command(advocate_id: str) -> None:
    """Erase ADVOCATE_ID: publish a tombstone for the id on referral.advocates.v1.

    The services then drop the advocate's email and name from their state, send them nothing
    more and reject later referrals naming them (ADVOCATE_ERASED); referral, reward and payout
    records stay. Idempotent: an advocate already erased is left as is (exit 0).
    """
    done = asyncio.run(erase(KafkaSettings.from_env(), advocate_id))
    if not done.published:
        click.echo(f"advocate {advocate_id} was already erased; nothing published")
        return
    click.echo(
        f"advocate {advocate_id} erased: tombstone published on referral.advocates.v1 "
        f"(before: {_BEFORE[done.before]})"
    )


@click.command("export", short_help="Print everything held about an advocate, as JSON.")
@click.argument("advocate_id")
def export_command(advocate_id: str) -> None:
    """Print, as one JSON document, everything the system holds about ADVOCATE_ID.

    Keys: advocate_id; profile (the latest on referral.advocates.v1, "erased", or null);
    referrals (each with its current status and its history from referral.status.v1);
    rewards (every money movement on rewards.payouts.v2, each with its results from
    rewards.payout-results.v1); messages (notifications.sent.v1). Read read_committed.
    """
    data = asyncio.run(export(KafkaSettings.from_env(), advocate_id))
    click.echo(json.dumps(to_document(data), indent=2, ensure_ascii=False))
