"""Builders for the portal's unit tests: contract records as the services write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from referrals.contract.records import (
    Channel,
    MatchedBy,
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
    ReferralStatus,
    ReferralStatusChanged,
    RewardType,
)
from referrals.programs.document import validate
from referrals.programs.model import ProgramDocument

PROGRAM = "acme-b2b"
ADVOCATE = "adv-1"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def status(
    referral: str,
    state: ReferralStatus,
    minute: int = 0,
    reason: str | None = None,
    *,
    advocate: str = ADVOCATE,
    status_id: str | None = None,
    **extra: Any,
) -> ReferralStatusChanged:
    return ReferralStatusChanged(
        status_id=status_id or f"{referral}:{state}:{reason}:{minute}",
        referral_id=referral,
        program_id=PROGRAM,
        advocate_id=advocate,
        prospect_id=f"prospect-{referral}",
        channel=Channel.EMAIL,
        matched_by=MatchedBy.CODE,
        status=state,
        config_version=1,
        occurred_at=at(minute),
        reason=reason,
        **extra,
    )


def payout(
    payout_id: str,
    amount: int,
    *,
    attempt: int = 1,
    currency: str = "USD",
    kind: PayoutKind = PayoutKind.PAYOUT,
    recipient: Recipient = Recipient.ADVOCATE,
    referral: str = "r1",
) -> PayoutCommand:
    return PayoutCommand(
        payout_id=payout_id,
        attempt=attempt,
        program_id=PROGRAM,
        advocate_id=ADVOCATE,
        referral_id=referral,
        reward_type=RewardType.GIFT_CARD,
        amount_minor=amount,
        currency=currency,
        rule_id="referral-reward",
        tier=1,
        config_version=1,
        issued_at=at(10),
        kind=kind,
        recipient=recipient,
    )


def result(payout_id: str, state: PayoutStatus, attempt: int = 1) -> PayoutResult:
    return PayoutResult(
        payout_id, attempt, state, at(20), "bank said no" if state == "FAILED" else None
    )


def program(**rewards: Any) -> ProgramDocument:
    return validate(
        {
            "program_id": PROGRAM,
            "currency": "USD",
            "time_zone": rewards.pop("time_zone", "UTC"),
            "rewards": {
                "tiers": [
                    {"from_referral": 1, "amount": "50.00", "reward_type": "GIFT_CARD"},
                    {"from_referral": 3, "amount": "75.00", "reward_type": "GIFT_CARD"},
                    {"from_referral": 6, "percent": "5", "reward_type": "CHECK"},
                ],
                **rewards,
            },
        }
    )
