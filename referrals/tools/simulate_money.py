"""The simulated year's money events and their ground truth: fraud bursts, refunds after
payment, friend rewards and a pause.

The live replay is compressed and its services run concurrently, so events close in time on
different partitions may be processed in either order. The plan keeps every figure compared
exactly independent of that order:
- a fraud burst belongs to an advocate who wins nothing else: `wins` deals on one local day
  (limit + 1 to limit + 4). Whichever of them are the held ones, there are `wins - limit` of
  them, their ordinals lie past the limit (one tier band at most: the tiers of limit + 1 to
  limit + 4), and the operator decides per advocate (deny all or approve all);
- a refund (a deal REVERSED after WON) falls only on an advocate's single won deal, away from
  the pause: its reward was issued at WON (ordinal 1 under the counting rule), no later WON of
  the advocate can see the reversal, and the clawback always finds an issued reward;
- the pause is planned by arrival: the replay publishes the PAUSED version before the first
  event of the stretch and the ACTIVE one after its last, once the services are quiet; which
  rewards were held for it is informational (the final payouts do not change).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from referrals.platform.money import percent_of
from referrals.programs.model import ProgramDocument
from referrals.tools.simulate_model import Advocate, Plan, half_up

REFUNDS = 0.04  # of won deals, REVERSED later (refunded or cancelled after payment)
ADVOCATES_PER_BURST = 1500  # one fraud burst per 1,500 enrolled advocates, at least two
BURST_EXTRA = 4  # a burst wins limit + 1 to limit + BURST_EXTRA deals on its day
PAUSE_DAY, PAUSE_DAYS = 230, 14  # the program is PAUSED from day 230 of the year, for 14 days
# Refunds and bursts keep this far from the pause, so that a reward held PROGRAM_PAUSED is never
# refunded while held (it would be cancelled, not clawed back) and a burst is not paused.
PAUSE_MARGIN_DAYS = 20
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Burst:
    """A fraud burst: an advocate with `wins` won deals on one local day, and what the
    operator does with its held rewards."""

    advocate: Advocate
    wins: int
    deny: bool


@dataclass(frozen=True, slots=True)
class Win:
    """A won referral as the truth needs it (times in ms)."""

    advocate_id: str
    prospect_id: str
    won_ms: int
    reversed_ms: int | None
    amount_minor: int


def burst_count(advocates: int) -> int:
    return max(2, half_up(advocates / ADVOCATES_PER_BURST))


def plan_bursts(
    rng: random.Random, plans: Sequence[Plan], fraudsters: Sequence[Advocate], limit: int
) -> list[Burst]:
    """Moves won deals from advocates with other referrals to each fraudster (channel quotas and
    conversion stay as planned); alternately denied and approved, the first denied."""
    left = Counter(p.advocate.advocate_id for p in plans)
    bursts: list[Burst] = []
    for advocate in fraudsters:
        wins = limit + 1 + rng.randrange(BURST_EXTRA)
        donors = [
            p
            for p in plans
            if p.outcome == "WON" and p.burst is None and left[p.advocate.advocate_id] >= 2
        ]
        if len(donors) < wins:
            break
        for plan in rng.sample(donors, wins):
            left[plan.advocate.advocate_id] -= 1
            plan.advocate, plan.burst = advocate, len(bursts)
        bursts.append(Burst(advocate, wins, deny=len(bursts) % 2 == 0))
    return bursts


def plan_refunds(rng: random.Random, plans: Sequence[Plan]) -> None:
    """REFUNDS of the won deals become REVERSED later, each an advocate's only won deal."""
    won = [p for p in plans if p.outcome == "WON"]
    wins = Counter(p.advocate.advocate_id for p in won)
    single = [p for p in won if wins[p.advocate.advocate_id] == 1 and p.burst is None]
    for plan in rng.sample(single, min(len(single), half_up(REFUNDS * len(won)))):
        plan.outcome = "REVERSED"


def pause_span(start_ms: int) -> tuple[int, int]:
    """(from, until) in ms of the paused stretch of a year starting at `start_ms`."""
    begin = start_ms + PAUSE_DAY * DAY_MS
    return begin, begin + PAUSE_DAYS * DAY_MS


def near_pause(at_ms: int, start_ms: int) -> bool:
    begin, until = pause_span(start_ms)
    margin = PAUSE_MARGIN_DAYS * DAY_MS
    return begin - margin <= at_ms < until + margin


def burst_day(rng: random.Random, start_ms: int, now_ms: int, zone: str) -> int:
    """Local midnight (ms) of a burst's day: late enough for a whole deal's history before it,
    before the last ten days, away from the pause."""
    while True:
        at = start_ms + 110 * DAY_MS + int(rng.random() * (now_ms - start_ms - 125 * DAY_MS))
        if not near_pause(at, start_ms):
            break
    tz = ZoneInfo(zone)
    day = datetime.fromtimestamp(at / 1000, UTC).astimezone(tz).date()
    return int(datetime.combine(day, time(0), tzinfo=tz).timestamp() * 1000)


def local_day(ms: int, zone: str) -> int:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(zone)).date().toordinal()


def money_truth(
    program: ProgramDocument,
    wins: Iterable[Win],
    bursts: Sequence[Burst],
    pause: dict[str, Any],
) -> dict[str, Any]:
    """Fraud holds, the operator's plan, denials, friend rewards, clawbacks and the pause, as
    the contract's rules settle them (see the module docstring for why each is exact)."""
    wins = sorted(wins, key=lambda w: (w.won_ms, w.prospect_id))
    limit = program.fraud.max_wins_per_day
    per_day = Counter((w.advocate_id, local_day(w.won_ms, program.time_zone)) for w in wins)
    excess: Counter[str] = Counter()
    for (advocate, _), n in per_day.items():
        if limit is not None and n > limit:
            excess[advocate] += n - limit
    deny = sorted(b.advocate.advocate_id for b in bursts if b.deny)
    approve = sorted(a for a in excess if a not in deny)
    denied = sum(excess[a] for a in deny)
    friend = program.rewards.friend_reward
    friends = len(wins) - denied if friend is not None else 0
    clawed = [w for w in wins if w.reversed_ms is not None] if program.rewards.clawback else []
    claw_amount = sum(_reward(program, wins, w) for w in clawed)
    if friend is not None:
        claw_amount += friend.amount_minor * len(clawed)
    return {
        "fraud_holds": sum(excess.values()),
        "operator": {"deny": deny, "approve": approve},
        "denials": denied,
        "rewards_owed": len(wins) - denied,
        "friend_rewards": {
            "count": friends,
            "amount_minor": friends * (friend.amount_minor if friend else 0),
        },
        "clawbacks": {
            "count": len(clawed) * (2 if friend is not None else 1),
            "amount_minor": claw_amount,
        },
        "pause": pause,
    }


def _reward(program: ProgramDocument, wins: Sequence[Win], win: Win) -> int:
    """The advocate's reward for `win` by the counting rule, in event-time order: its n counts
    the advocate's earlier wins not reversed before it (no denied win precedes a refund)."""
    n = 1 + sum(
        1
        for w in wins
        if w.advocate_id == win.advocate_id
        and w.won_ms < win.won_ms
        and (w.reversed_ms is None or w.reversed_ms > win.won_ms)
    )
    tier = program.rewards.tier_for(n)
    if tier.amount_minor is not None:
        return tier.amount_minor
    assert tier.percent is not None
    return percent_of(win.amount_minor, tier.percent)
