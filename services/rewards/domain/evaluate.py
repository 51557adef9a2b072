"""How a successful referral's reward is computed and walked through its holds.

A new win gets its ordinal n (1 + the counted wins of its period), the tier covering n, an amount
(fixed, or a percent of the deal rounded half-up) and the cap applied. It then passes the gates
in a fixed order: approval, tax information, the hold period; a release re-enters the walk just
after the gate it was held at. Every state it enters is announced with a status record.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from referrals.contract.records import ReferralStatus, ReferralStatusChanged
from referrals.platform.money import percent_of
from services.rewards.domain import ids
from services.rewards.domain.ledger import Entry, Ledger, Reason, State, to_ms
from services.rewards.domain.outputs import Output, payout, status
from services.rewards.domain.rules import RewardRules, Tier


def new_entry(ledger: Ledger, rules: RewardRules, won: ReferralStatusChanged) -> Entry:
    """The ledger entry for a first WON of a referral: ordinal, tier, amount, cap."""
    won_at = to_ms(won.occurred_at)
    year = rules.local_year(won.occurred_at)
    counted, used = ledger.usage(rules.period, year, won_at)
    ordinal = counted + 1
    due_at = to_ms(won.occurred_at + timedelta(days=rules.hold_days))
    entry = Entry(
        referral_id=won.referral_id,
        won_status_id=won.status_id,
        prospect_id=won.prospect_id,
        channel=won.channel,
        matched_by=won.matched_by,
        owner_rep_id=won.owner_rep_id,
        deal_id=won.deal_id,
        won_at=won_at,
        year=year,
        due_at=due_at,
        ordinal=ordinal,
        tier=0,
        reward_type=None,
        amount_minor=None,
        currency=rules.currency,
        state=State.UNREWARDED,
        reason=None,
        payout_id=ids.payout_id(rules.program_id, won.referral_id, rules.rule_id),
        rule_id=rules.rule_id,
        attempt=1,
        config_version=rules.config_version,
    )
    tier = rules.tier_for(ordinal)
    if tier is None:
        return entry
    amount, reason = _amount(tier, won, rules.currency)
    if amount is not None and reason is None:
        amount, reason = _cap(amount, rules.period_cap_minor, used)
    return replace(
        entry,
        tier=tier.from_referral,
        reward_type=tier.reward_type,
        amount_minor=amount,
        state=State.HELD if reason else State.PENDING,
        reason=reason.value if reason else None,
    )


def _amount(
    tier: Tier, won: ReferralStatusChanged, currency: str
) -> tuple[int | None, Reason | None]:
    if tier.amount_minor is not None:
        return tier.amount_minor, None
    assert tier.percent is not None  # a Tier has exactly one of the two
    if won.amount_minor is None:
        return None, Reason.MISSING_AMOUNT
    if won.currency != currency:
        return None, Reason.CURRENCY_MISMATCH
    return percent_of(won.amount_minor, tier.percent), None


def _cap(amount: int, cap: int | None, used: int) -> tuple[int, Reason | None]:
    """The reward that reaches the cap shrinks to the remainder; with nothing left it is held."""
    if cap is None:
        return amount, None
    remainder = cap - used
    if remainder <= 0:
        return amount, Reason.CAP_REACHED
    return min(amount, remainder), None


def settle(
    ledger: Ledger,
    entry: Entry,
    now: datetime,
    *,
    approval_threshold: int | None,
    tax_threshold: int | None,
) -> tuple[Entry, list[Output]]:
    """Walks an entry through the remaining gates; a None threshold means that gate is passed.

    `ledger` is the ledger the entry lives in (or will be added to); the entry's own amount is
    taken from `entry`, never double counted.
    """
    amount = entry.amount_minor or 0
    if approval_threshold is not None and amount >= approval_threshold:
        return _hold(ledger, entry, Reason.NEEDS_APPROVAL, now)
    if (
        tax_threshold is not None
        and not ledger.tax_form_on_file
        and ledger.year_total(entry.year, excluding=entry.referral_id) + amount >= tax_threshold
    ):
        return _hold(ledger, entry, Reason.TAX_INFO_REQUIRED, now)
    entry = replace(entry, state=State.PENDING, reason=None)
    outputs: list[Output] = [status(ledger, entry, ReferralStatus.REWARD_PENDING, now)]
    if entry.due_at <= to_ms(now):
        entry, issued = issue(ledger, entry, now)
        outputs += issued
    return entry, outputs


def issue(ledger: Ledger, entry: Entry, now: datetime) -> tuple[Entry, list[Output]]:
    """REWARDED for the entry's current attempt, and the payout command for it."""
    entry = replace(entry, state=State.REWARDED, reason=None)
    return entry, [status(ledger, entry, ReferralStatus.REWARDED, now), payout(ledger, entry, now)]


def _hold(
    ledger: Ledger, entry: Entry, reason: Reason, now: datetime
) -> tuple[Entry, list[Output]]:
    entry = replace(entry, state=State.HELD, reason=reason.value)
    return entry, [status(ledger, entry, ReferralStatus.REWARD_HELD, now, reason.value)]
