"""The program report's figures, computed from decoded topic records (pure: no Kafka).

Definitions (the simulator's ground truth uses the same `benchmarks`, so both count alike):
- enrolled: advocates with a profile in the program (latest profile per advocate_id).
- attributed referral: a referral whose holder is known from `referral.status.v1`: an advocate
  that was told LEAD and whose last attribution status (in log order) is not REJECTED. Its
  channel is the holder's claim channel; it is won if the holder was told WON (a later
  REVERSED still counts: the deal was won). active: advocates holding >= 1 attributed referral.
- referrals per advocate: active advocates by attributed referrals, 1 / 2-10 / 11+.
- channel mix and conversion: attributed referrals per channel over all attributed; WON over
  attributed per channel and overall (0.0 for a channel without referrals).
- top 1% / 10%: the ceil(1% / 10% of active) advocates ranked by attributed referrals (then
  won referrals, then id): their share of attributed referrals and of won referrals (deals).
- rejections: claimants whose last attribution status is REJECTED, by its reason (one per
  referral and advocate).
- rewards: one per payout_id (attempts are retries of the same reward), by type, by amount band
  (< 41, 41-100, > 100 in major units of the program currency) and their average.
- payouts: issued (distinct payout_id, and attempts), paid (a PAID result for any attempt),
  failed (the latest attempt's result is FAILED and none PAID).
- money (rewards.payouts.v2, one per payout_id): friend rewards (recipient FRIEND, kind PAYOUT:
  count, amount, paid), clawbacks (kind CLAWBACK: count, amount); denials: referrals told
  REJECTED DENIED (the rewards service's verdict on a fraud-held reward, not an attribution
  rejection: the referral stays attributed and won); fraud holds and pause holds: referrals
  ever held REWARD_HELD FRAUD_REVIEW / PROGRAM_PAUSED.
- latency: from the Kafka timestamp of the holder's first WON record to that of the referral's
  first PayoutCommand, and to the `sent_at` of its WON thank-you (kind WON); median and p95 by
  the nearest-rank method, in ms.
Statuses are de-duplicated by status_id, payouts by (payout_id, attempt), notifications by
notification_id, payout results by (payout_id, attempt); each keeps its first occurrence.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    NotificationSent,
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
    ReferralStatus,
    ReferralStatusChanged,
    ShareEvent,
)
from referrals.platform.money import to_minor
from referrals.platform.timestamps import to_ms as to_ms

T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# In the order of the published channel mix (most used first), for tables and charts.
CHANNELS = (
    Channel.SOCIAL,
    Channel.EMAIL,
    Channel.LEAD_FORM,
    Channel.VERBAL,
    Channel.SHARE_URL,
    Channel.PRINT_CARD,
)
BUCKETS = ("1", "2-10", "11+")
BANDS = ("below_41", "41_to_100", "above_100")
TOPS = {"1%": 100, "10%": 10}  # label -> divisor of the active advocates
THANK_YOU_KIND = "WON"  # the message that thanks an advocate for a won deal
DENIED, FRAUD_REVIEW, PROGRAM_PAUSED = "DENIED", "FRAUD_REVIEW", "PROGRAM_PAUSED"  # reasons
TOLERANCE = 0.01  # ratios vs ground truth: 1 percentage point (see `compare`)
_ATTRIBUTION = frozenset(
    {ReferralStatus.LEAD, ReferralStatus.IN_PROGRESS, ReferralStatus.WON, ReferralStatus.LOST}
    | {ReferralStatus.REVERSED, ReferralStatus.REJECTED}
)


@dataclass(frozen=True)
class ReportInputs:
    """Decoded records of every program; `compute` keeps `program_id`'s. Pairs carry the Kafka
    record timestamp (ms); lists keep log order within each partition."""

    program_id: str
    currency: str | None = None
    profiles: Sequence[AdvocateProfile] = ()
    shares: Sequence[ShareEvent] = ()
    statuses: Sequence[tuple[int, ReferralStatusChanged]] = ()
    payouts: Sequence[tuple[int, PayoutCommand]] = ()
    payout_results: Sequence[PayoutResult] = ()
    payouts_v2: Sequence[tuple[int, PayoutCommand]] = ()  # rewards.payouts.v2: every movement
    notifications: Sequence[NotificationSent] = ()
    undecodable: Mapping[str, int] = field(default_factory=dict)  # topic -> skipped bad records


@dataclass(frozen=True, slots=True)
class AttributedReferral:
    advocate_id: str
    channel: str
    won: bool


@dataclass(frozen=True)
class Figures:
    """The benchmarks of attributed referrals; `to_dict` adds the derived ratios."""

    enrolled: int
    active: int
    referrals: int
    won: int
    per_advocate: dict[str, int]
    channel_referrals: dict[str, int]
    channel_won: dict[str, int]
    top: dict[str, dict[str, int]]  # "1%" -> advocates, referrals, won

    def to_dict(self) -> dict[str, Any]:
        return {
            "enrolled": self.enrolled,
            "active": self.active,
            "active_share": _ratio(self.active, self.enrolled),
            "referrals_attributed": self.referrals,
            "referrals_won": self.won,
            "conversion_overall": _ratio(self.won, self.referrals),
            "referrals_per_advocate": dict(self.per_advocate),
            "referrals_per_advocate_share": {
                b: _ratio(n, self.active) for b, n in self.per_advocate.items()
            },
            "channels": {
                ch: {
                    "referrals": n,
                    "won": self.channel_won[ch],
                    "share": _ratio(n, self.referrals),
                    "conversion": _ratio(self.channel_won[ch], n),
                }
                for ch, n in self.channel_referrals.items()
            },
            "top_advocates": {
                label: top
                | {
                    "referrals_share": _ratio(top["referrals"], self.referrals),
                    "deals_share": _ratio(top["won"], self.won),
                }
                for label, top in self.top.items()
            },
        }


def benchmarks(enrolled: int, referrals: Iterable[AttributedReferral]) -> Figures:
    """The figures of one program's attributed referrals (see the module docstring)."""
    per: dict[str, list[int]] = {}
    by_channel: Counter[str] = Counter()
    won_by_channel: Counter[str] = Counter()
    for referral in referrals:
        counts = per.setdefault(referral.advocate_id, [0, 0])
        counts[0] += 1
        counts[1] += referral.won
        by_channel[referral.channel] += 1
        won_by_channel[referral.channel] += referral.won
    ranked = sorted(per.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))
    top = {}
    for label, divisor in TOPS.items():
        chosen = [c for _, c in ranked[: -(-len(ranked) // divisor)]]
        top[label] = {
            "advocates": len(chosen),
            "referrals": sum(c[0] for c in chosen),
            "won": sum(c[1] for c in chosen),
        }
    buckets = Counter(_bucket(c[0]) for c in per.values())
    return Figures(
        enrolled=enrolled,
        active=len(per),
        referrals=sum(by_channel.values()),
        won=sum(won_by_channel.values()),
        per_advocate={b: buckets[b] for b in BUCKETS},
        channel_referrals={ch.value: by_channel[ch.value] for ch in CHANNELS},
        channel_won={ch.value: won_by_channel[ch.value] for ch in CHANNELS},
        top=top,
    )


def _bucket(referrals: int) -> str:
    return "1" if referrals == 1 else "2-10" if referrals <= 10 else "11+"


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True)
class Latency:
    samples: int
    median_ms: int | None
    p95_ms: int | None

    @classmethod
    def of(cls, values: Iterable[int]) -> Latency:
        ordered = sorted(values)
        if not ordered:
            return cls(0, None, None)
        return cls(len(ordered), _nearest_rank(ordered, 50), _nearest_rank(ordered, 95))


def _nearest_rank(ordered: Sequence[int], percent: int) -> int:
    return ordered[max(1, math.ceil(percent * len(ordered) / 100)) - 1]


@dataclass(frozen=True)
class Report:
    program_id: str
    currency: str
    figures: Figures
    rejections: dict[str, int]
    holds: dict[str, int]  # REWARD_HELD referrals by reason
    sharing: dict[str, int]  # shares and advocates who shared
    rewards: dict[str, Any]
    payouts: dict[str, int]
    latency: dict[str, Latency] = field(default_factory=dict)
    money: dict[str, Any] = field(default_factory=dict)  # friends, clawbacks, denials, holds
    # Records skipped because they do not decode (bad input; each is in its topic's .dlq).
    undecodable: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "program_id": self.program_id,
            "currency": self.currency,
            "figures": self.figures.to_dict(),
            "rejections": dict(self.rejections),
            "holds": dict(self.holds),
            "sharing": dict(self.sharing),
            "rewards": self.rewards,
            "payouts": dict(self.payouts),
            "latency": {name: asdict(value) for name, value in self.latency.items()},
            "money": dict(self.money),
            "undecodable": dict(self.undecodable),
        }


@dataclass(slots=True)
class _Thread:
    """What one advocate was told about one referral, in log order."""

    last: ReferralStatus | None = None
    reason: str | None = None
    channel: str = ""
    lead_ms: int | None = None
    won_ms: int | None = None


def compute(inputs: ReportInputs) -> Report:
    """The program's report from decoded records (see the module docstring for definitions)."""
    program = inputs.program_id
    profiles = {p.advocate_id: p for p in inputs.profiles if p.program_id == program}
    statuses = [
        pair
        for pair in _first_by(inputs.statuses, lambda pair: pair[1].status_id)
        if pair[1].program_id == program
    ]
    threads = _threads(statuses)
    holders = _holders(threads)
    attributed = [
        AttributedReferral(adv, t.channel, t.won_ms is not None) for adv, t in holders.values()
    ]
    payouts = [
        pair
        for pair in _first_by(inputs.payouts, lambda pair: (pair[1].payout_id, pair[1].attempt))
        if pair[1].program_id == program
    ]
    currency = inputs.currency or next((p.currency for _, p in payouts), "USD")
    won_ms = {ref: t.won_ms for ref, (_, t) in holders.items() if t.won_ms is not None}
    holds = _holds(statuses)
    return Report(
        program_id=program,
        currency=currency,
        figures=benchmarks(len(profiles), attributed),
        rejections=_rejections(threads),
        holds=holds,
        sharing=_sharing(inputs.shares, program),
        rewards=_rewards([p for _, p in payouts], currency),
        payouts=_payouts([p for _, p in payouts], inputs.payout_results),
        latency=_latency(won_ms, payouts, inputs.notifications),
        money=_money(inputs, statuses, holds),
        undecodable=dict(inputs.undecodable),
    )


def _first_by(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """Each item whose key was not seen before (a redelivered record is dropped)."""
    seen: set[Hashable] = set()
    kept = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            kept.append(item)
    return kept


def _threads(
    statuses: Iterable[tuple[int, ReferralStatusChanged]],
) -> dict[tuple[str, str], _Thread]:
    threads: dict[tuple[str, str], _Thread] = {}
    for timestamp, s in statuses:
        if s.status not in _ATTRIBUTION or _from_rewards(s):
            continue  # rewards' statuses
        thread = threads.setdefault((s.referral_id, s.advocate_id), _Thread())
        thread.last, thread.reason = s.status, s.reason
        if s.status is ReferralStatus.LEAD:
            thread.lead_ms, thread.channel = timestamp, s.channel.value
        elif s.status is ReferralStatus.WON and thread.won_ms is None:
            thread.won_ms = timestamp
    return threads


def _holders(threads: Mapping[tuple[str, str], _Thread]) -> dict[str, tuple[str, _Thread]]:
    """referral -> (advocate, thread) of the advocate holding it (the latest LEAD, if several)."""
    holders: dict[str, tuple[str, _Thread]] = {}
    for (referral, advocate), t in sorted(threads.items()):
        if t.lead_ms is None or t.last is ReferralStatus.REJECTED:
            continue
        held = holders.get(referral)
        if held is None or (held[1].lead_ms or 0) < t.lead_ms:
            holders[referral] = (advocate, t)
    return holders


def _from_rewards(s: ReferralStatusChanged) -> bool:
    """A status of the rewards service among attribution's: its REVERSED carries a reason (a
    cancellation or clawback), its REJECTED is an operator's denial."""
    if s.status is ReferralStatus.REVERSED:
        return s.reason is not None
    return s.status is ReferralStatus.REJECTED and s.reason == DENIED


def _money(
    inputs: ReportInputs,
    statuses: Iterable[tuple[int, ReferralStatusChanged]],
    holds: Mapping[str, int],
) -> dict[str, Any]:
    """Friend rewards and clawbacks from rewards.payouts.v2; denials and review holds."""
    program = inputs.program_id
    moves: dict[str, PayoutCommand] = {}
    for _, p in sorted(inputs.payouts_v2, key=lambda pair: pair[1].attempt):
        if p.program_id == program:
            moves.setdefault(p.payout_id, p)
    friends = [
        p for p in moves.values() if p.recipient is Recipient.FRIEND and p.kind is PayoutKind.PAYOUT
    ]
    clawbacks = [p for p in moves.values() if p.kind is PayoutKind.CLAWBACK]
    paid = {r.payout_id for r in inputs.payout_results if r.status is PayoutStatus.PAID}
    denied = {
        s.referral_id
        for _, s in statuses
        if s.status is ReferralStatus.REJECTED and s.reason == DENIED
    }
    return {
        "friend_rewards": {
            "count": len(friends),
            "amount_minor": sum(p.amount_minor for p in friends),
            "paid": sum(1 for p in friends if p.payout_id in paid),
        },
        "clawbacks": {
            "count": len(clawbacks),
            "amount_minor": sum(p.amount_minor for p in clawbacks),
        },
        "denials": len(denied),
        "fraud_holds": holds.get(FRAUD_REVIEW, 0),
        "pause_holds": holds.get(PROGRAM_PAUSED, 0),
    }


def _rejections(threads: Mapping[tuple[str, str], _Thread]) -> dict[str, int]:
    found = Counter(
        t.reason or "UNSPECIFIED" for t in threads.values() if t.last is ReferralStatus.REJECTED
    )
    return dict(sorted(found.items()))


def _holds(statuses: Iterable[tuple[int, ReferralStatusChanged]]) -> dict[str, int]:
    held = {
        (s.referral_id, s.reason or "UNSPECIFIED")
        for _, s in statuses
        if s.status is ReferralStatus.REWARD_HELD
    }
    return dict(sorted(Counter(reason for _, reason in held).items()))


def _sharing(shares: Iterable[ShareEvent], program: str) -> dict[str, int]:
    unique = {s.event_id: s for s in shares if s.program_id == program}
    return {"shares": len(unique), "advocates": len({s.advocate_id for s in unique.values()})}


def _band(amount_minor: int, currency: str) -> str:
    if amount_minor < to_minor("41", currency):
        return BANDS[0]
    return BANDS[1] if amount_minor <= to_minor("100", currency) else BANDS[2]


def _rewards(payouts: Iterable[PayoutCommand], currency: str) -> dict[str, Any]:
    """One reward per payout_id (a retry is another attempt at the same reward)."""
    rewards: dict[str, PayoutCommand] = {}
    for p in sorted(payouts, key=lambda p: p.attempt):
        rewards.setdefault(p.payout_id, p)
    by_type: dict[str, dict[str, int]] = {}
    bands: Counter[str] = Counter()
    for p in rewards.values():
        entry = by_type.setdefault(p.reward_type.value, {"count": 0, "amount_minor": 0})
        entry["count"] += 1
        entry["amount_minor"] += p.amount_minor
        bands[_band(p.amount_minor, currency)] += 1
    count, total = len(rewards), sum(p.amount_minor for p in rewards.values())
    return {
        "count": count,
        "amount_minor": total,
        "average_minor": (2 * total + count) // (2 * count) if count else 0,  # rounded half-up
        "by_type": dict(sorted(by_type.items())),
        "by_band": {band: bands[band] for band in BANDS},
    }


def _payouts(payouts: Sequence[PayoutCommand], results: Iterable[PayoutResult]) -> dict[str, int]:
    amount = {p.payout_id: p.amount_minor for p in sorted(payouts, key=lambda p: -p.attempt)}
    mine = [
        r for r in _first_by(results, lambda r: (r.payout_id, r.attempt)) if r.payout_id in amount
    ]
    paid = {r.payout_id for r in mine if r.status is PayoutStatus.PAID}
    latest: dict[str, PayoutResult] = {}
    for r in sorted(mine, key=lambda r: r.attempt):
        latest[r.payout_id] = r
    failed = {
        pid for pid, r in latest.items() if r.status is PayoutStatus.FAILED and pid not in paid
    }
    return {
        "issued": len(amount),
        "issued_amount_minor": sum(amount.values()),
        "attempts": len(payouts),
        "paid": len(paid),
        "paid_amount_minor": sum(amount[pid] for pid in paid),
        "failed": len(failed),
    }


def _latency(
    won_ms: Mapping[str, int],
    payouts: Iterable[tuple[int, PayoutCommand]],
    notifications: Iterable[NotificationSent],
) -> dict[str, Latency]:
    issued: dict[str, int] = {}
    for timestamp, p in payouts:
        if p.referral_id in won_ms:
            issued[p.referral_id] = min(timestamp, issued.get(p.referral_id, timestamp))
    thanked: dict[str, int] = {}
    for n in _first_by(notifications, lambda n: n.notification_id):
        referral = n.referral_id
        if n.kind == THANK_YOU_KIND and referral is not None and referral in won_ms:
            sent = to_ms(n.sent_at)
            thanked[referral] = min(sent, thanked.get(referral, sent))
    return {
        "won_to_reward_issued": Latency.of(t - won_ms[ref] for ref, t in issued.items()),
        "won_to_thank_you": Latency.of(t - won_ms[ref] for ref, t in thanked.items()),
    }
