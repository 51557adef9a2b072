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
    PayoutKind,
    Recipient,
    ReferralStatus,
    ReferralStatusChanged,
    RewardType,
)
from referrals.platform.evolve import replace
from services.rewards.domain import ids
from services.rewards.domain.ledger import Entry, Friend, Ledger, State

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
    AFTER_CLAWBACK = "AFTER_CLAWBACK"  # a result for a payout already clawed back: recorded only
    # Operator commands refused (the contract's CommandResult reasons)
    NOT_AWAITING_REVIEW = "NOT_AWAITING_REVIEW"  # approve / deny of a reward not under review
    ALREADY_APPROVED = "ALREADY_APPROVED"
    ALREADY_DENIED = "ALREADY_DENIED"
    NOT_FAILED = "NOT_FAILED"  # retry refused
    REPEATED_COMMAND = "REPEATED_COMMAND"  # a command_id applied before: answered APPLIED again


# Outcomes answered APPLIED to an operator; any other one to a command is REFUSED.
COMMAND_APPLIED = frozenset({Outcome.APPLIED, Outcome.REPEATED_COMMAND})


@dataclass(frozen=True, slots=True)
class Decision:
    ledger: Ledger
    outputs: tuple[Output, ...] = ()
    outcome: Outcome = Outcome.APPLIED
    message: str = ""  # for refusals and ignored inputs: what an operator should read
    state: str = ""  # for operator commands: the payout's state afterwards, in words

    @property
    def changed(self) -> bool:
        """Whether the input was applied (outputs to produce, a ledger to persist)."""
        return self.outcome in (Outcome.APPLIED, Outcome.REVERSED_AFTER_PAYOUT)


# An entry's state in the status vocabulary operators see on referral.status.v1.
_AS_STATUS = {
    State.UNREWARDED: "WON (no reward at this tier)",
    State.PENDING: ReferralStatus.REWARD_PENDING.value,
    State.HELD: ReferralStatus.REWARD_HELD.value,
    State.REWARDED: ReferralStatus.REWARDED.value,
    State.PAID: ReferralStatus.PAID.value,
    State.FAILED: ReferralStatus.PAYOUT_FAILED.value,
    State.CANCELLED: ReferralStatus.REVERSED.value,
    State.DENIED: ReferralStatus.REJECTED.value,
    State.CLAWED_BACK: ReferralStatus.REVERSED.value,
}


def describe(entry: Entry, payout_id: str) -> str:
    """The state of payout `payout_id` of `entry`, e.g. "REWARD_HELD (FRAUD_REVIEW)",
    "REWARDED (attempt 2)", "friend reward PAID (attempt 1)"."""
    friend = entry.friend if entry.friend and entry.friend.payout_id == payout_id else None
    state, reason, attempt = (
        (friend.state, friend.reason, friend.attempt)
        if friend
        else (entry.state, entry.reason, entry.attempt)
    )
    if friend and state is State.HELD:  # it follows its referral's hold
        reason = entry.reason if entry.state is State.HELD else None
    words = _AS_STATUS[state]
    if reason:
        words += f" ({reason})"
    elif state in (State.REWARDED, State.PAID, State.FAILED):
        words += f" (attempt {attempt})"
    return f"friend reward {words}" if friend else words


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
            entry.referral_id,
            new_status,
            entry.payout_id,
            entry.attempt,
            reason,
            # A referral may be held with one reason twice (paused, approved while paused):
            # the second hold is a new state change, so it gets a new id.
            repeat=entry.holds if new_status is ReferralStatus.REWARD_HELD else 0,
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
    """The advocate's payout command for the entry's current attempt (the entry must hold an
    amount). It goes to rewards.payouts.v1 and .v2 alike."""
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
        prospect_id=entry.prospect_id,
    )


def friend_payout(ledger: Ledger, entry: Entry, friend: Friend, now: datetime) -> PayoutCommand:
    """The friend's reward for its current attempt (rewards.payouts.v2 only)."""
    return PayoutCommand(
        payout_id=friend.payout_id,
        attempt=friend.attempt,
        program_id=ledger.program_id,
        advocate_id=ledger.advocate_id,
        referral_id=entry.referral_id,
        reward_type=friend.reward_type,
        amount_minor=friend.amount_minor,
        currency=entry.currency,
        rule_id=friend.rule_id,
        tier=0,
        config_version=entry.config_version,
        issued_at=now,
        recipient=Recipient.FRIEND,
        prospect_id=entry.prospect_id,
    )


def clawback(original: PayoutCommand, now: datetime) -> PayoutCommand:
    """The CLAWBACK recovering `original` (rewards.payouts.v2 only): the same amount, currency
    and recipient, its own deterministic payout_id, attempt 1."""
    return replace(
        original,
        payout_id=ids.payout_id(
            original.program_id,
            original.referral_id,
            original.rule_id,
            PayoutKind.CLAWBACK,
            original.recipient,
        ),
        attempt=1,
        issued_at=now,
        kind=PayoutKind.CLAWBACK,
        original_payout_id=original.payout_id,
    )
