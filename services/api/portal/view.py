"""The advocate portal's view, as a fold over the topics (pure: no I/O, no clock of its own).

A referral's view is the fold of its status records (`referral.status.v1`, keyed by advocate, so
in commit order): the latest status and reason, the payout, amount and currency last named, and
a short history de-duplicated by status_id (statuses are at least once with stable ids). An
advocate's money is summed from their own payouts (`rewards.payouts.v2`, recipient ADVOCATE,
kind PAYOUT; friend rewards and clawbacks aside) and finance's latest result for each
(`rewards.payout-results.v1`), plus what is held and not yet issued (REWARD_HELD statuses'
amounts). "Won in period" counts the referrals that reached WON in the period containing `now`
(the program's period, in its time zone) and have not since been denied, reversed or lost: the
n the rewards service counts toward tiers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

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
from referrals.programs.model import ProgramDocument, RewardPeriod

# A referral's history is short (a dozen state changes at most in practice); this bounds a
# pathological one (endless retries) so one stored value stays small. The oldest go first.
MAX_HISTORY = 64
# Once a referral has reached WON, these statuses take it out of the period's count.
_UNCOUNTED = frozenset({ReferralStatus.REJECTED, ReferralStatus.REVERSED, ReferralStatus.LOST})
ROLLING = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Step:
    status_id: str
    status: ReferralStatus
    occurred_at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ReferralView:
    referral_id: str
    program_id: str
    advocate_id: str
    prospect_id: str
    channel: Channel
    matched_by: MatchedBy
    status: ReferralStatus
    created_at: datetime  # the first status seen: fixes the referral's place in "newest first"
    updated_at: datetime
    history: tuple[Step, ...]
    reason: str | None = None
    payout_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    won_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AdvocateView:
    """What the advocates topic says: a profile, or a tombstone (erased, no personal data)."""

    advocate_id: str
    program_id: str
    display_name: str
    erased: bool
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PayoutView:
    """One of the advocate's own payouts, at its latest attempt."""

    payout_id: str
    attempt: int
    referral_id: str
    amount_minor: int
    currency: str
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class ResultView:
    """Finance's latest result for a payout_id (the highest attempt, the last report of it)."""

    payout_id: str
    attempt: int
    status: PayoutStatus
    occurred_at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Money:
    currency: str
    issued_minor: int = 0
    paid_minor: int = 0
    held_minor: int = 0
    failed_minor: int = 0


@dataclass(frozen=True, slots=True)
class NextTier:
    from_referral: int
    referrals_to_go: int
    reward_type: RewardType
    amount_minor: int | None = None
    percent: Decimal | None = None


def fold_status(view: ReferralView | None, s: ReferralStatusChanged) -> ReferralView | None:
    """The referral's view after status `s`; None when `s` is a repeat (nothing changes)."""
    step = Step(s.status_id, s.status, s.occurred_at, s.reason)
    if view is None:
        return ReferralView(
            referral_id=s.referral_id,
            program_id=s.program_id,
            advocate_id=s.advocate_id,
            prospect_id=s.prospect_id,
            channel=s.channel,
            matched_by=s.matched_by,
            status=s.status,
            reason=s.reason,
            created_at=s.occurred_at,
            updated_at=s.occurred_at,
            history=(step,),
            payout_id=s.payout_id,
            amount_minor=s.amount_minor,
            currency=s.currency,
            won_at=s.occurred_at if s.status is ReferralStatus.WON else None,
        )
    if any(h.status_id == s.status_id for h in view.history):
        return None
    won = view.won_at
    if won is None and s.status is ReferralStatus.WON:
        won = s.occurred_at
    return replace(
        view,
        channel=s.channel,
        matched_by=s.matched_by,
        status=s.status,
        reason=s.reason,
        updated_at=max(view.updated_at, s.occurred_at),
        history=(*view.history, step)[-MAX_HISTORY:],
        payout_id=s.payout_id or view.payout_id,
        amount_minor=s.amount_minor if s.amount_minor is not None else view.amount_minor,
        currency=s.currency or view.currency,
        won_at=won,
    )


def fold_payout(view: PayoutView | None, p: PayoutCommand) -> PayoutView | None:
    """The advocate's own payout at its latest attempt; None for what does not count as issued
    (a friend's reward, a clawback) and for a repeat or an older attempt."""
    if p.kind is not PayoutKind.PAYOUT or p.recipient is not Recipient.ADVOCATE:
        return None
    if view is not None and view.attempt >= p.attempt:
        return None
    return PayoutView(
        p.payout_id, p.attempt, p.referral_id, p.amount_minor, p.currency, p.issued_at
    )


def fold_result(view: ResultView | None, r: PayoutResult) -> ResultView | None:
    """Finance's latest word on a payout: a later report of the same or a newer attempt."""
    if view is not None and r.attempt < view.attempt:
        return None
    return ResultView(r.payout_id, r.attempt, r.status, r.occurred_at, r.reason)


def money(
    payouts: Iterable[PayoutView],
    results: Mapping[str, ResultView],
    referrals: Iterable[ReferralView],
    default_currency: str | None,
) -> tuple[Money, ...]:
    """Per currency (sorted): issued, the parts of it paid and failed by their latest result
    (for the attempt issued last, or a newer one), and held-not-issued."""
    sums: dict[str, dict[str, int]] = {}

    def add(currency: str, field: str, amount: int) -> None:
        sums.setdefault(currency, dict.fromkeys(("issued", "paid", "held", "failed"), 0))
        sums[currency][field] += amount

    issued_ids: set[str] = set()
    for p in payouts:
        issued_ids.add(p.payout_id)
        add(p.currency, "issued", p.amount_minor)
        result = results.get(p.payout_id)
        if result is not None and result.attempt >= p.attempt:
            add(
                p.currency,
                "paid" if result.status is PayoutStatus.PAID else "failed",
                p.amount_minor,
            )
    for r in referrals:
        if r.status is not ReferralStatus.REWARD_HELD or r.payout_id in issued_ids:
            continue
        currency = r.currency or default_currency
        if currency is not None:
            add(currency, "held", r.amount_minor or 0)
    return tuple(
        Money(c, s["issued"], s["paid"], s["held"], s["failed"]) for c, s in sorted(sums.items())
    )


def in_period(won_at: datetime, now: datetime, program: ProgramDocument) -> bool:
    """Whether a WON at `won_at` falls in the program's period that contains `now`."""
    period = program.rewards.period
    if period is RewardPeriod.LIFETIME:
        return True
    if period is RewardPeriod.ROLLING_365_DAYS:
        return now - won_at < ROLLING
    zone = ZoneInfo(program.time_zone)
    return won_at.astimezone(zone).year == now.astimezone(zone).year


def won_in_period(
    referrals: Iterable[ReferralView], now: datetime, program: ProgramDocument | None
) -> int:
    """The advocate's referrals that reached WON in the current period and still count."""
    return sum(
        1
        for r in referrals
        if r.won_at is not None
        and r.status not in _UNCOUNTED
        and (program is None or in_period(r.won_at, now, program))
    )


def next_tier(won: int, program: ProgramDocument | None) -> NextTier | None:
    """The first tier beyond the one `won` referrals reached, and how many more WONs reach it;
    None past the last tier (or without a program)."""
    if program is None:
        return None
    tier = program.rewards.next_tier(won)
    if tier is None:
        return None
    return NextTier(
        tier.from_referral,
        tier.from_referral - won,
        tier.reward_type,
        tier.amount_minor,
        tier.percent,
    )


def latest(*moments: datetime | None) -> datetime | None:
    found = [m for m in moments if m is not None]
    return max(found) if found else None
