"""What the simulator reproduces and what it remembers: published figures, the volume curve,
quota allocation, and the ground truth of a simulated program year.

The figures are those published for business customer referral programs (see issue 6). The
generator meets them by quota, not by independent draws, so that a few hundred advocates already
show them: channels and won deals are allocated with the largest-remainder method and shuffled,
and each referring advocate's volume is read off `referrals_at` at a jittered rank.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    MatchedBy,
    ShareEvent,
)
from referrals.tools.report_figures import AttributedReferral, benchmarks

K = TypeVar("K")

ACTIVE_SHARE = 0.36  # of enrolled advocates, refer in a year
# Share of referrals by channel (print cards "under 1%": 0.5%); normalised by `allocate`.
CHANNEL_MIX: Mapping[Channel, float] = {
    Channel.SOCIAL: 0.29,
    Channel.EMAIL: 0.24,
    Channel.LEAD_FORM: 0.23,
    Channel.VERBAL: 0.13,
    Channel.SHARE_URL: 0.12,
    Channel.PRINT_CARD: 0.005,
}
# Referral-to-deal conversion (WON over referrals) by channel.
CONVERSION: Mapping[Channel, float] = {
    Channel.VERBAL: 0.32,
    Channel.LEAD_FORM: 0.19,
    Channel.EMAIL: 0.17,
    Channel.PRINT_CARD: 0.12,
    Channel.SHARE_URL: 0.04,
    Channel.SOCIAL: 0.01,
}
PUBLISHED: dict[str, Any] = {
    "active_share": ACTIVE_SHARE,
    "referrals_per_advocate_share": {"1": 0.61, "2-10": 0.34, "11+": 0.05},
    "top_advocates_referrals_share": {"1%": 0.22, "10%": 0.54},
    "channel_mix": {ch.value: share for ch, share in CHANNEL_MIX.items()},
    "conversion": {ch.value: rate for ch, rate in CONVERSION.items()},
    "conversion_overall": 0.13,
}

# The volume curve: referrals of the referring advocate at rank quantile q (0 = the busiest).
# 61% make 1; 34% make 2-10 (2 + 9(1-u)^3: most make 2 or 3, the busiest of them 8-10); 5% make
# 11+: 11 + 12(1-u)^2 for the next 4%, and for the top 1% a Pareto tail 38 u^-1/2 capped at 300.
# With mean 3.2 referrals per referrer this puts ~22% of referrals with the top 1% of
# referrers and ~53.5% with the top 10% (published: 22% and 54%).
_TOP_SCALE, _TOP_SHAPE, _TOP_CAP = 38, 2.0, 300


def referrals_at(q: float) -> int:
    if q < 0.01:
        return min(_TOP_CAP, int(_TOP_SCALE * (q / 0.01) ** (-1 / _TOP_SHAPE)))
    if q < 0.05:
        return 11 + int(12 * (1 - (q - 0.01) / 0.04) ** 2)
    if q < 0.39:
        return 2 + int(9 * (1 - (q - 0.05) / 0.34) ** 3)
    return 1


def volumes(referrers: int, rng: random.Random) -> list[int]:
    """Referrals of each referrer, busiest first: ranks jittered within the middle half of
    their slot, so the curve is met at any size without a lucky or unlucky top advocate."""
    return [referrals_at((i + 0.25 + rng.random() / 2) / referrers) for i in range(referrers)]


def allocate(total: int, weights: Mapping[K, float]) -> dict[K, int]:
    """`total` split in proportion to `weights` (largest remainder; ties in key order)."""
    norm = sum(weights.values())
    exact = {key: total * w / norm for key, w in weights.items()}
    counts = {key: math.floor(v) for key, v in exact.items()}
    by_remainder = sorted(exact, key=lambda key: counts[key] - exact[key])
    for key in by_remainder[: total - sum(counts.values())]:
        counts[key] += 1
    return counts


def half_up(value: float) -> int:
    return math.floor(value + 0.5)


# Rates of the claims and disorder planned per referral (see `referrals.tools.simulate`).
CONFLICTS, LATE_SHARES, EARLY_DEALS = 0.015, 0.03, 0.03
EMAIL_CHANNELS = (Channel.EMAIL, Channel.LEAD_FORM)
_CODE_SUFFIX = {
    Channel.SOCIAL: "SOC",
    Channel.SHARE_URL: "URL",
    Channel.PRINT_CARD: "CRD",
    Channel.EMAIL: "EML",
    Channel.LEAD_FORM: "LDF",
}


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Advocate:
    index: int
    advocate_id: str
    email: str
    code: str  # prefix of the advocate's codes; one code per channel

    @property
    def email_sha256(self) -> str:
        """As platforms publish it: the SHA-256 of the lower-cased address."""
        return sha256_hex(self.email.lower())

    def code_for(self, channel: Channel) -> str:
        return f"{self.code}-{_CODE_SUFFIX[channel]}"


@dataclass(slots=True)
class Plan:
    """One planned referral: who, how it is claimed, how it ends, and its disorder."""

    advocate: Advocate
    channel: Channel
    outcome: str = "LEAD"  # WON, REVERSED, LOST, IN_PROGRESS or LEAD
    code_on_conversion: bool = False
    email_on_conversion: bool = False
    declared_on_deals: bool = False  # VERBAL: only the deals name the advocate
    rival: Advocate | None = None
    late_share: bool = False
    early_deal: bool = False
    burst: int | None = None  # index of the fraud burst it belongs to (`simulate_money`)

    @property
    def matched_by(self) -> MatchedBy:
        if self.channel is Channel.VERBAL:
            return MatchedBy.DECLARED
        return MatchedBy.CODE if self.code_on_conversion else MatchedBy.EMAIL


def plan_referrals(rng: random.Random, referrers: Sequence[Advocate]) -> list[Plan]:
    """Planned referrals: volumes, then channels and won deals by quota, claims, disorder."""
    counts = volumes(len(referrers), rng)  # busiest first; `referrers` is in random order
    plans = [
        Plan(a, Channel.SOCIAL) for a, n in zip(referrers, counts, strict=True) for _ in range(n)
    ]
    channels = [ch for ch, n in allocate(len(plans), CHANNEL_MIX).items() for _ in range(n)]
    rng.shuffle(channels)
    for plan, channel in zip(plans, channels, strict=True):
        plan.channel = channel
    _outcomes(rng, plans)
    for plan in plans:
        _claims(rng, plan)
    _conflicts(rng, plans, referrers)
    for plan in plans:
        if plan.rival is None:  # a conflicted prospect keeps its order: claims before the WON
            plan.late_share = plan.channel is not Channel.VERBAL and rng.random() < LATE_SHARES
            converts = plan.outcome != "LEAD" and not plan.declared_on_deals
            plan.early_deal = converts and rng.random() < EARLY_DEALS
    return plans


def _outcomes(rng: random.Random, plans: list[Plan]) -> None:
    """Won deals by quota per channel (`simulate_money.plan_refunds` reverses some later); the
    rest LOST 55%, IN_PROGRESS 20%, LEAD (no deal) 25%."""
    for channel in CHANNEL_MIX:
        mine = [p for p in plans if p.channel is channel]
        won = set(rng.sample(range(len(mine)), half_up(CONVERSION[channel] * len(mine))))
        for i, plan in enumerate(mine):
            draw = rng.random()
            if i in won:
                plan.outcome = "WON"
            else:
                plan.outcome = "LOST" if draw < 0.55 else "IN_PROGRESS" if draw < 0.75 else "LEAD"


def _claims(rng: random.Random, plan: Plan) -> None:
    if plan.channel is Channel.VERBAL:
        plan.declared_on_deals = plan.outcome != "LEAD" and rng.random() < 0.4
        plan.email_on_conversion = rng.random() < 0.5
    elif plan.channel in EMAIL_CHANNELS:
        plan.code_on_conversion = rng.random() < 0.3
        plan.email_on_conversion = True
    else:
        plan.code_on_conversion = True
        plan.email_on_conversion = rng.random() < 0.6


def _conflicts(rng: random.Random, plans: list[Plan], referrers: Sequence[Advocate]) -> None:
    """A rival also emails some EMAIL/LEAD_FORM prospects; their conversion carries only the
    email hash, so both advocates claim at the same level and the policy decides."""
    if len(referrers) < 2:
        return
    candidates = [p for p in plans if p.channel in EMAIL_CHANNELS]
    for plan in rng.sample(candidates, min(len(candidates), half_up(CONFLICTS * len(plans)))):
        rival = rng.choice(referrers)
        while rival is plan.advocate:
            rival = rng.choice(referrers)
        plan.rival, plan.code_on_conversion = rival, False


InputRecord = AdvocateProfile | ShareEvent | ConversionEvent | DealEvent


class Arrival(NamedTuple):
    """One record as a platform team publishes it: topic (logical name), key, value."""

    topic: str
    key: str
    record: InputRecord


@dataclass(frozen=True, slots=True)
class ProspectTruth:
    """How the contract's rules settle one prospect: the advocate credited (None when every
    claim is invalid), the winning claim's channel and match, the final status of the credited
    referral (WON, REVERSED, LOST, IN_PROGRESS, LEAD; REJECTED when nobody is credited), and the
    final verdict of every other claimant."""

    prospect_id: str
    advocate_id: str | None
    channel: Channel | None
    matched_by: MatchedBy | None
    status: str
    rejected: tuple[tuple[str, str], ...] = ()  # (advocate_id, reason)
    deal_id: str | None = None

    @property
    def won(self) -> bool:
        """The credited deal was won (a later REVERSED does not undo the win)."""
        return self.status in ("WON", "REVERSED")

    def to_json(self) -> dict[str, Any]:
        return {
            "advocate_id": self.advocate_id,
            "channel": self.channel.value if self.channel else None,
            "matched_by": self.matched_by.value if self.matched_by else None,
            "status": self.status,
            "won": self.won,
            "rejected": [{"advocate_id": a, "reason": r} for a, r in self.rejected],
            "deal_id": self.deal_id,
        }


NOTES = {
    "active": "advocates credited with at least one referral (same definition as the report)",
    "rewards_owed": (
        "won referrals of credited advocates, including deals REVERSED after WON (their reward"
        " was issued at WON, then clawed back), less the fraud-held rewards the operator denies."
        " Assumes no other hold: every advocate who can win has a tax form on file"
        " (won_without_tax_form counts exceptions), and the demo program has no cap and an"
        " approval threshold above its largest tier."
    ),
    "fraud_holds": "won deals past fraud.max_wins_per_day on one local day of one advocate",
    "operator": "advocates whose fraud-held rewards the operator denies, and approves",
    "denials": "fraud-held rewards denied (REJECTED DENIED); no payout for them or their friend",
    "friend_rewards": "one per won referral not denied, clawed-back ones included",
    "clawbacks": "per refunded (REVERSED) won deal: the advocate's reward and the friend's",
    "pause": (
        "the stretch of arrivals during which the program is PAUSED; rewards decided then are"
        " held PROGRAM_PAUSED and paid on resume (held_expected: WONs arriving then, a guide)"
    ),
    "rejections": "claimants finally REJECTED, one per prospect and advocate, by reason",
    "won": "WON over attributed referrals, by the credited claim's channel",
}


@dataclass(frozen=True)
class Simulation:
    """A simulated program year: the records in arrival order, and the ground truth."""

    program_id: str
    seed: int
    advocates: int
    now: datetime
    arrivals: tuple[Arrival, ...]
    truth: dict[str, Any]

    def truth_json(self) -> str:
        return json.dumps(self.truth, indent=1, sort_keys=True) + "\n"

    def by_topic(self) -> dict[str, list[Arrival]]:
        topics: dict[str, list[Arrival]] = {}
        for arrival in self.arrivals:
            topics.setdefault(arrival.topic, []).append(arrival)
        return topics


def build_truth(
    header: Mapping[str, Any],
    enrolled: int,
    prospects: Sequence[ProspectTruth],
    without_form: Iterable[str],
    events: Mapping[str, int],
    money: Mapping[str, Any],
) -> dict[str, Any]:
    """The ground truth: per prospect, and the aggregates the report measures (`money`: the
    figures of `simulate_money.money_truth`)."""
    credited = [p for p in prospects if p.advocate_id is not None and p.channel is not None]
    figures = benchmarks(
        enrolled,
        (AttributedReferral(str(p.advocate_id), str(p.channel), p.won) for p in credited),
    )
    no_form = set(without_form)
    rejections = Counter(reason for p in prospects for _, reason in p.rejected)
    return {
        **header,
        "figures": figures.to_dict(),
        "rejections": dict(sorted(rejections.items())),
        **money,
        "won_without_tax_form": sum(1 for p in credited if p.won and p.advocate_id in no_form),
        "statuses": dict(sorted(Counter(p.status for p in prospects).items())),
        "events": dict(events),
        "targets": PUBLISHED,
        "notes": NOTES,
        "prospects": {p.prospect_id: p.to_json() for p in prospects},
    }
