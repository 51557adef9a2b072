"""The workload: N referrals whose outcomes are known before anything runs.

One program (`PROGRAM_DOC`) pays a fixed 50.00 USD gift card for every won deal, with no hold,
cap, approval or tax threshold, so each WON referral yields exactly one payout whose id is
computed here with the rewards service's own id function (`services.rewards.domain.ids`), from
the referral id attribution derives (`services.attribution.domain.ids`).

Each referral: its advocate's profile (an advocate has one to three referrals), a share with a
referral code, the prospect's conversion naming the code, a deal OPEN then QUALIFIED, then WON
(about 60%), LOST (25%) or never closed. Within a referral the share comes first except in one
referral of ten, whose conversion arrives before the share (the contract's "any arrival order").
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    PayoutKind,
    Recipient,
    Record,
    ShareEvent,
)
from referrals.contract.topics import ADVOCATES, CONVERSIONS, DEALS, SHARES
from services.attribution.domain.ids import referral_id
from services.rewards.domain.ids import payout_id

PROGRAM_ID = "faults-fixed"
RULE_ID = "referral-reward"  # the program's default rule id, part of every payout id
AMOUNT_MINOR = 5_000
FRIEND_MINOR = 1_000  # two-sided: the friend's reward rides on rewards.payouts.v2 only
PROGRAM_DOC = f"""\
program_id: {PROGRAM_ID}
currency: USD
rewards:
  tiers:
    - {{from_referral: 1, amount: "50.00", reward_type: GIFT_CARD}}
  friend_reward: {{amount: "10.00", reward_type: BILL_CREDIT}}
notifications:
  channels: [EMAIL]
  from_address: referrals@faults.example
  rate_limit: {{max_per_day: 100}}
"""

Event = tuple[str, str, Record]  # (topic, key, record)


@dataclass(frozen=True)
class Referral:
    index: int
    advocate_id: str
    prospect_id: str
    outcome: str  # WON, LOST or OPEN
    referral_id: str
    payout_id: str | None


@dataclass
class Workload:
    referrals: list[Referral]
    events: list[Event]  # in publishing order
    expected: dict[str, int] = field(default_factory=dict)  # payout_id -> amount_minor
    friends: dict[str, int] = field(default_factory=dict)  # the friends' payouts (v2 only)

    @property
    def outcomes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.referrals:
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def generate(n: int, seed: int, now: datetime) -> Workload:
    """N referrals, their events interleaved at random (each referral's own order kept)."""
    rng = random.Random(seed)
    referrals: list[Referral] = []
    queues: list[list[Event]] = []
    advocate = -1
    left_for_advocate = 0
    profiles: list[Event] = []
    for i in range(n):
        if left_for_advocate == 0:
            advocate += 1
            left_for_advocate = rng.randint(1, 3)
            adv_id = f"adv-{seed}-{advocate:05d}"
            email = f"{adv_id}@advocates.example"
            profiles.append(
                (
                    ADVOCATES,
                    adv_id,
                    AdvocateProfile(
                        program_id=PROGRAM_ID,
                        advocate_id=adv_id,
                        email=email,
                        display_name=f"Advocate {advocate}",
                        email_sha256=_sha(email),
                        opted_out=False,
                        tax_form_on_file=True,
                        updated_at=now - timedelta(hours=2),
                    ),
                )
            )
        left_for_advocate -= 1
        adv_id = f"adv-{seed}-{advocate:05d}"
        prospect = f"pr-{seed}-{i:06d}"
        roll = rng.random()
        outcome = "WON" if roll < 0.6 else "LOST" if roll < 0.85 else "OPEN"
        rid = referral_id(PROGRAM_ID, prospect)
        pid = payout_id(PROGRAM_ID, rid, RULE_ID) if outcome == "WON" else None
        referrals.append(Referral(i, adv_id, prospect, outcome, rid, pid))
        t0 = now - timedelta(minutes=90) + timedelta(seconds=rng.randint(0, 3600))
        code = f"code-{seed}-{i:06d}"
        share = ShareEvent(
            event_id=f"sh-{seed}-{i}",
            program_id=PROGRAM_ID,
            advocate_id=adv_id,
            channel=rng.choice(list(Channel)),
            referral_code=code,
            occurred_at=t0,
        )
        conversion = ConversionEvent(
            event_id=f"cv-{seed}-{i}",
            program_id=PROGRAM_ID,
            prospect_id=prospect,
            referral_code=code,
            occurred_at=t0 + timedelta(minutes=1),
        )
        first: list[Event] = [(SHARES, adv_id, share), (CONVERSIONS, prospect, conversion)]
        if rng.random() < 0.1:
            first.reverse()
        stages = [DealStage.OPEN, DealStage.QUALIFIED]
        if outcome != "OPEN":
            stages.append(DealStage(outcome))
        deals: list[Event] = [
            (
                DEALS,
                f"deal-{seed}-{i}",
                DealEvent(
                    event_id=f"dl-{seed}-{i}-{k}",
                    program_id=PROGRAM_ID,
                    deal_id=f"deal-{seed}-{i}",
                    prospect_id=prospect,
                    stage=stage,
                    occurred_at=t0 + timedelta(minutes=2 + k),
                    amount_minor=100_000,
                    currency="USD",
                ),
            )
            for k, stage in enumerate(stages)
        ]
        queues.append(first + deals)
    events: list[Event] = list(profiles)  # profiles first: the advocates exist before sharing
    while queues:
        q = rng.randrange(len(queues))
        events.append(queues[q].pop(0))
        if not queues[q]:
            queues[q] = queues[-1]
            queues.pop()
    expected = {r.payout_id: AMOUNT_MINOR for r in referrals if r.payout_id}
    friends = {
        payout_id(PROGRAM_ID, r.referral_id, "friend", PayoutKind.PAYOUT, Recipient.FRIEND): (
            FRIEND_MINOR
        )
        for r in referrals
        if r.payout_id
    }
    return Workload(referrals, events, expected, friends)
