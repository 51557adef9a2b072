"""What the core returns: the records to produce and how an input was handled.

Commands never publish. Each returns a `Decision`: the next ledger, the records to emit (in
order: statuses before the payout they announce) and an `Outcome` code the adapter can count.
Every status copies the referral's identity from the WON status that created the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from referrals.contract.records import (
    PayoutCommand,
    ReferralStatus,
    ReferralStatusChanged,
    RewardType,
)
from services.rewards.domain import ids
from services.rewards.domain.ledger import Entry, Ledger

Output = ReferralStatusChanged | PayoutCommand


class Outcome(StrEnum):
    APPLIED = "APPLIED"
    DUPLICATE_STATUS = "DUPLICATE_STATUS"  # a WON whose status_id is already recorded
    DUPLICATE_REFERRAL = "DUPLICATE_REFERRAL"  # another WON for a referral already recorded
    UNKNOWN_REFERRAL = "UNKNOWN_REFERRAL"  # REVERSED for a referral never won here
    ALREADY_REVERSED = "ALREADY_REVERSED"
    REVERSED_AFTER_PAYOUT = "REVERSED_AFTER_PAYOUT"  # recorded; the money moved, nothing undone
    UNKNOWN_PAYOUT = "UNKNOWN_PAYOUT"
    STALE_ATTEMPT = "STALE_ATTEMPT"  # a payout result for an attempt that is not the current one
    ALREADY_SETTLED = "ALREADY_SETTLED"  # a repeated result for the current attempt
    NOT_AWAITING_APPROVAL = "NOT_AWAITING_APPROVAL"  # approve refused
    NOT_FAILED = "NOT_FAILED"  # retry refused


@dataclass(frozen=True, slots=True)
class Decision:
    ledger: Ledger
    outputs: tuple[Output, ...] = ()
    outcome: Outcome = Outcome.APPLIED
    message: str = ""  # for refusals and ignored inputs: what an operator should read

    @property
    def changed(self) -> bool:
        """Whether the input was applied (outputs to produce, a ledger to persist)."""
        return self.outcome in (Outcome.APPLIED, Outcome.REVERSED_AFTER_PAYOUT)


def status(
    ledger: Ledger,
    entry: Entry,
    new_status: ReferralStatus,
    now: datetime,
    reason: str | None = None,
) -> ReferralStatusChanged:
    """The status record announcing `entry` entering `new_status` at `now`."""
    return ReferralStatusChanged(
        status_id=ids.status_id(
            entry.referral_id, new_status, entry.payout_id, entry.attempt, reason
        ),
        referral_id=entry.referral_id,
        program_id=ledger.program_id,
        advocate_id=ledger.advocate_id,
        prospect_id=entry.prospect_id,
        channel=entry.channel,
        matched_by=entry.matched_by,
        status=new_status,
        config_version=entry.config_version,
        occurred_at=now,
        reason=reason,
        payout_id=entry.payout_id,
        owner_rep_id=entry.owner_rep_id,
        deal_id=entry.deal_id,
        amount_minor=entry.amount_minor,
        currency=entry.currency,
        reward_type=entry.reward_type.value if entry.reward_type else None,
        tier=entry.tier or None,
    )


def payout(ledger: Ledger, entry: Entry, now: datetime) -> PayoutCommand:
    """The payout command for the entry's current attempt (the entry must hold an amount)."""
    if entry.amount_minor is None or entry.reward_type is None:
        raise ValueError(f"referral {entry.referral_id} has no reward to pay")
    return PayoutCommand(
        payout_id=entry.payout_id,
        attempt=entry.attempt,
        program_id=ledger.program_id,
        advocate_id=ledger.advocate_id,
        referral_id=entry.referral_id,
        reward_type=RewardType(entry.reward_type),
        amount_minor=entry.amount_minor,
        currency=entry.currency,
        rule_id=entry.rule_id,
        tier=entry.tier,
        config_version=entry.config_version,
        issued_at=now,
    )
