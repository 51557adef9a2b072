"""Builders shared by the rewards core's unit tests (a plain module: no fixtures, no magic)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    MatchedBy,
    PayoutCommand,
    PayoutResult,
    PayoutStatus,
    ReferralStatus,
    ReferralStatusChanged,
    RewardType,
)
from services.rewards.domain.decide import new_ledger, on_won
from services.rewards.domain.ledger import Ledger
from services.rewards.domain.outputs import Decision
from services.rewards.domain.rules import RewardRules, Tier

PROGRAM = "acme-b2b"
ADVOCATE = "adv-1"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

ESCALATING = (
    Tier(1, RewardType.GIFT_CARD, amount_minor=5_000),
    Tier(3, RewardType.GIFT_CARD, amount_minor=7_500),
    Tier(6, RewardType.CHECK, percent=Decimal("5")),
)


def rules(**changes: Any) -> RewardRules:
    base = RewardRules(
        program_id=PROGRAM,
        config_version=7,
        currency="USD",
        tiers=ESCALATING,
        time_zone="America/New_York",
    )
    return replace(base, **changes)


def ledger() -> Ledger:
    return new_ledger(PROGRAM, ADVOCATE)


def won(
    referral: str,
    at: datetime = T0,
    *,
    status_id: str | None = None,
    amount: int | None = 200_000,
    currency: str | None = "USD",
) -> ReferralStatusChanged:
    return ReferralStatusChanged(
        status_id=status_id or f"won-{referral}",
        referral_id=referral,
        program_id=PROGRAM,
        advocate_id=ADVOCATE,
        prospect_id=f"prospect-{referral}",
        channel=Channel.EMAIL,
        matched_by=MatchedBy.CODE,
        status=ReferralStatus.WON,
        config_version=7,
        occurred_at=at,
        owner_rep_id="rep-9",
        deal_id=f"deal-{referral}",
        amount_minor=amount,
        currency=currency,
    )


def reversal(referral: str, at: datetime = T0) -> ReferralStatusChanged:
    return replace(won(referral, at), status=ReferralStatus.REVERSED, status_id=f"rev-{referral}")


def profile(*, tax_form_on_file: bool) -> AdvocateProfile:
    return AdvocateProfile(
        program_id=PROGRAM,
        advocate_id=ADVOCATE,
        email="ada@example.com",
        display_name="Ada",
        email_sha256="0" * 64,
        opted_out=False,
        tax_form_on_file=tax_form_on_file,
        updated_at=T0,
    )


def result(
    payout_id: str, status: PayoutStatus, attempt: int = 1, reason: str | None = None
) -> PayoutResult:
    return PayoutResult(payout_id, attempt, status, T0, reason)


def win_all(
    book: Ledger, reward_rules: RewardRules, referrals: Iterable[str], now: datetime = T0
) -> tuple[Ledger, list[Decision]]:
    """Feeds one WON per referral id, in order, all occurring at T0."""
    decisions = []
    for referral in referrals:
        decision = on_won(book, reward_rules, won(referral), now)
        book = decision.ledger
        decisions.append(decision)
    return book, decisions


def statuses(decision: Decision) -> list[tuple[ReferralStatus, str | None]]:
    return [
        (out.status, out.reason)
        for out in decision.outputs
        if isinstance(out, ReferralStatusChanged)
    ]


def payouts(decision: Decision) -> list[PayoutCommand]:
    return [out for out in decision.outputs if isinstance(out, PayoutCommand)]


def paid_amounts(decisions: Iterable[Decision]) -> list[int]:
    return [command.amount_minor for d in decisions for command in payouts(d)]
