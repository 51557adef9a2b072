"""How a successful referral's reward is computed and walked through its gates.

A new win gets its ordinal n (1 + the counted wins of its period), the tier covering n, an amount
(fixed, or a percent of the deal rounded half-up) and the cap applied; with two-sided rewards,
its friend's reward; and whether it is over the advocate's WONs allowed that day (fraud).

Then it walks the gates, in this order, each one a hold (REWARD_HELD with the gate's reason):
1. the referral's own gates, for both rewards: the program is PAUSED (PROGRAM_PAUSED, released
   when it is active again); fraud velocity (FRAUD_REVIEW) and the approval threshold
   (NEEDS_APPROVAL), both decided by an operator (one approval passes both; a denial ends it);
2. past them the referral is `reviewed`: the friend's reward goes on to its due time;
3. the advocate's own gates: a reward that can never be paid (CAP_REACHED, MISSING_AMOUNT,
   CURRENCY_MISMATCH: `blocked` at WON) stays held; tax information (TAX_INFO_REQUIRED);
4. the hold period (REWARD_PENDING until WON occurred_at + hold_days), then REWARDED and the
   payout command.
A release walks again from the start: gates passed before (reviewed, approved) stay passed.
Every state the advocate's reward enters is announced with a status record; the friend's
reward has no status of its own (its payouts are on rewards.payouts.v2).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from referrals.contract.records import PayoutKind, Recipient, ReferralStatus, ReferralStatusChanged
from referrals.platform.evolve import replace
from referrals.platform.money import percent_of
from services.rewards.domain import ids
from services.rewards.domain.ledger import Entry, Friend, Ledger, Reason, State, to_ms
from services.rewards.domain.outputs import Output, friend_payout, payout, status
from services.rewards.domain.rules import Lifecycle, RewardRules, Tier


def new_entry(
    ledger: Ledger, rules: RewardRules, won: ReferralStatusChanged, day_wins: int
) -> Entry:
    """The ledger entry for a first WON of a referral: ordinal, tier, amount, cap, the friend's
    reward, and fraud velocity (`day_wins`: the advocate's WONs that local day, this one
    included). Its state is decided by `settle`."""
    won_at = to_ms(won.occurred_at)
    year = rules.local_year(won.occurred_at)
    counted, used = ledger.usage(rules.period, year, won_at)
    ordinal = counted + 1
    due_at = to_ms(won.occurred_at + timedelta(days=rules.hold_days))
    friend = None
    if rules.friend_reward is not None:
        reward = rules.friend_reward
        friend = Friend(
            payout_id=ids.payout_id(
                rules.program_id,
                won.referral_id,
                reward.rule_id,
                PayoutKind.PAYOUT,
                Recipient.FRIEND,
            ),
            amount_minor=reward.amount_minor,
            reward_type=reward.reward_type,
            rule_id=reward.rule_id,
        )
    limit = rules.max_wins_per_day
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
        friend=friend,
        fraud=limit is not None and day_wins > limit,
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
        state=State.PENDING,
        blocked=reason.value if reason else None,
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


def has_reward(entry: Entry) -> bool:
    """Whether any money hangs on the referral (the advocate's tier or a friend's reward)."""
    return entry.tier > 0 or entry.friend is not None


def settle(
    ledger: Ledger, entry: Entry, rules: RewardRules, now: datetime
) -> tuple[Entry, list[Output]]:
    """Walks an entry through its gates from the start (module docstring); the rules are the
    program version in force now.

    `ledger` is the ledger the entry lives in (or will be added to); the entry's own amount is
    taken from `entry`, never double counted.
    """
    if not has_reward(entry):
        return replace(entry, state=State.UNREWARDED), []
    if not entry.reviewed:
        amount = entry.amount_minor or 0
        threshold = rules.approval_threshold_minor
        if rules.lifecycle is Lifecycle.PAUSED:
            return hold(ledger, entry, Reason.PROGRAM_PAUSED, now)
        if entry.fraud and not entry.approved:
            return hold(ledger, entry, Reason.FRAUD_REVIEW, now)
        needs_approval = entry.tier > 0 and entry.blocked is None and threshold is not None
        if needs_approval and amount >= (threshold or 0) and not entry.approved:
            return hold(ledger, entry, Reason.NEEDS_APPROVAL, now)
        entry = replace(entry, reviewed=True)
    return past_review(ledger, entry, rules.tax_threshold_minor, now)


def past_review(
    ledger: Ledger, entry: Entry, tax_threshold: int | None, now: datetime
) -> tuple[Entry, list[Output]]:
    """The walk of a reviewed entry: the friend's reward goes on, then the advocate's own gates
    (a None `tax_threshold` passes the tax gate)."""
    friends: list[Output] = []  # after the advocate's own records
    if entry.friend is not None and entry.friend.state is State.HELD:
        entry = replace(entry, friend=replace(entry.friend, state=State.PENDING))
        if entry.due_at <= to_ms(now):
            entry, friends = issue_friend(ledger, entry, now)
    if entry.tier == 0:
        return replace(entry, state=State.UNREWARDED, reason=None), friends
    if entry.blocked is not None:
        if entry.state is State.HELD and entry.reason == entry.blocked:
            return entry, friends  # announced already
        entry, held = hold(ledger, entry, Reason(entry.blocked), now)
        return entry, held + friends
    tax = tax_threshold
    if (
        tax is not None
        and not ledger.tax_form_on_file
        and ledger.year_total(entry.year, excluding=entry.referral_id) + (entry.amount_minor or 0)
        >= tax
    ):
        entry, held = hold(ledger, entry, Reason.TAX_INFO_REQUIRED, now)
        return entry, held + friends
    entry = replace(entry, state=State.PENDING, reason=None)
    outputs: list[Output] = [status(ledger, entry, ReferralStatus.REWARD_PENDING, now)]
    if entry.due_at <= to_ms(now):
        entry, issued = issue(ledger, entry, now)
        outputs += issued
    return entry, outputs + friends


def issue(ledger: Ledger, entry: Entry, now: datetime) -> tuple[Entry, list[Output]]:
    """REWARDED for the entry's current attempt, and the payout command for it."""
    entry = replace(entry, state=State.REWARDED, reason=None)
    return entry, [status(ledger, entry, ReferralStatus.REWARDED, now), payout(ledger, entry, now)]


def issue_friend(ledger: Ledger, entry: Entry, now: datetime) -> tuple[Entry, list[Output]]:
    """The friend's reward for its current attempt (no status: the referral is the advocate's)."""
    assert entry.friend is not None
    friend = replace(entry.friend, state=State.REWARDED, reason=None)
    entry = replace(entry, friend=friend)
    return entry, [friend_payout(ledger, entry, friend, now)]


def hold(ledger: Ledger, entry: Entry, reason: Reason, now: datetime) -> tuple[Entry, list[Output]]:
    entry = replace(entry, state=State.HELD, reason=reason.value, holds=entry.holds + 1)
    return entry, [status(ledger, entry, ReferralStatus.REWARD_HELD, now, reason.value)]
