"""Payouts are exactly once: the rewards service is SIGKILLed at progress points while it works
through well over a thousand wins (with duplicates and reversals) and restarted each time; a
read_committed reader then finds every expected (payout_id, attempt) exactly once and no other.

What "expected" means comes from an oracle: the pure core (`decide.*`) run in memory over the
same per-advocate input sequence. The service's status outputs, de-duplicated by status_id,
must be the oracle's too.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from referrals.contract.records import (
    PayoutCommand,
    ReferralStatus,
    ReferralStatusChanged,
    RewardType,
)
from referrals.contract.topics import PAYOUTS
from referrals.platform.settings import KafkaSettings
from services.rewards.adapters.operator import read_records
from services.rewards.domain.decide import new_ledger, on_reversed, on_won
from services.rewards.domain.ledger import Ledger
from services.rewards.domain.rules import Period, RewardRules, Tier

from .test_rewards_service import (
    Service,
    own_statuses,
    payouts,
    publish_statuses,
    put_program,
    start_rewards,
    status,
)

pytestmark = pytest.mark.broker
SLOW_REWARDS = ("tests.integration.slow_rewards",)
ADVOCATES = 240  # 3..7 wins each: about 1,200 wins
# deploy/programs/acme-b2b.yaml with hold_days 30 and no tax threshold: a win 40 days old is
# due at once, one a day old waits 29 more days (a reversal then cancels it), and wins of 5% of
# a deal over 20,000.00 wait for approval, so some reversals change later tiers.
RULES = RewardRules(
    program_id="acme-b2b",
    config_version=1,
    currency="USD",
    tiers=(
        Tier(1, RewardType.GIFT_CARD, amount_minor=5_000),
        Tier(3, RewardType.GIFT_CARD, amount_minor=7_500),
        Tier(6, RewardType.CHECK, percent=Decimal("5")),
    ),
    time_zone="America/New_York",
    period=Period.CALENDAR_YEAR,
    period_cap_minor=250_000,
    approval_threshold_minor=100_000,
    hold_days=30,
)


def _advocate_history(
    rng: random.Random, advocate: str, now: datetime
) -> list[ReferralStatusChanged]:
    events: list[ReferralStatusChanged] = []
    won: list[ReferralStatusChanged] = []
    for k in range(rng.randint(3, 7)):
        age = timedelta(days=1 if rng.random() < 0.25 else 40, seconds=rng.randint(0, 3600))
        amount = rng.randint(100_000, 3_000_000)
        event = status(advocate, f"{advocate}-r{k}", now - age, amount=amount)
        won.append(event)
        events.append(event)
        if rng.random() < 0.08:  # the same status delivered twice
            events.append(event)
        if rng.random() < 0.04:  # another WON for the same referral
            events.append(replace(event, status_id=f"won-again-{event.referral_id}"))
        if rng.random() < 0.12:
            target = rng.choice(won)
            events.append(replace(target, status=ReferralStatus.REVERSED, status_id=f"rev-{k}"))
    return events


def scenario(now: datetime) -> list[ReferralStatusChanged]:
    """Every advocate's history, interleaved at random; each advocate's own order is kept."""
    rng = random.Random(4)
    queues = [_advocate_history(rng, f"adv-{a:03d}", now) for a in range(ADVOCATES)]
    stream = []
    while queues:
        queue = rng.choice(queues)
        stream.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return stream


@dataclass
class Expected:
    payouts: dict[tuple[str, int], int]  # (payout_id, attempt) -> amount
    statuses: set[str]


def oracle(stream: list[ReferralStatusChanged], now: datetime) -> Expected:
    ledgers: dict[str, Ledger] = {}
    expected = Expected({}, set())
    for event in stream:
        book = ledgers.get(event.advocate_id) or new_ledger(event.program_id, event.advocate_id)
        if event.status is ReferralStatus.WON:
            decision = on_won(book, RULES, event, now)
        else:
            decision = on_reversed(book, event, now)
        ledgers[event.advocate_id] = decision.ledger
        for out in decision.outputs:
            if isinstance(out, PayoutCommand):
                expected.payouts[(out.payout_id, out.attempt)] = out.amount_minor
            else:
                expected.statuses.add(out.status_id)
    return expected


async def _committed_payouts(topics: KafkaSettings) -> int:
    """A snapshot: committed payouts up to the topic's current end."""
    return len(await read_records(topics, PAYOUTS))


async def _kill_after(topics: KafkaSettings, service: Service, more: int) -> tuple[int, int]:
    """SIGKILLs the service once it committed at least `more` payouts beyond those already
    there (so each kill lands mid-stream however loaded the machine is); returns the counts
    before and at the kill."""
    deadline = time.monotonic() + 90
    start = count = await _committed_payouts(topics)
    while time.monotonic() < deadline and service.proc.poll() is None:
        count = await _committed_payouts(topics)
        if count >= start + more:
            break
        await asyncio.sleep(0.1)
    assert service.proc.poll() is None, service.log.read_text()[-3000:]
    service.proc.send_signal(signal.SIGKILL)
    service.proc.wait(timeout=10)
    return start, count


async def test_payouts_are_exactly_once_across_repeated_sigkills(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    stream = scenario(now)
    wins = sum(1 for s in stream if s.status is ReferralStatus.WON)
    assert wins >= 1_000
    expected = oracle(stream, now)
    assert len(expected.payouts) > 500  # and some wins are pending, held or cancelled
    put_program(topics, tmp_path, hold_days=30, tax_threshold=None)
    await publish_statuses(topics, stream)

    state = tmp_path / "state"
    # The real service slowed by 3 ms a record (tests/integration/slow_rewards.py), in small
    # batches, so each kill lands while work is left.
    slow = {"SLOW_REWARDS_DELAY_MS": "3", "REWARDS_MAX_BATCH": "50"}
    progress = []
    for _ in range(3):
        service = start_rewards(topics, state, wait_ready=False, command=SLOW_REWARDS, **slow)
        progress.append(await _kill_after(topics, service, 150))

    final = start_rewards(topics, state)
    try:
        seen = await payouts(topics, expect=len(expected.payouts), within=180)

        async def all_statuses() -> set[str]:
            return {s.status_id for s in await own_statuses(topics)}

        deadline = time.monotonic() + 60
        statuses = await all_statuses()
        while statuses != expected.statuses and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            statuses = await all_statuses()
    finally:
        final.stop()

    # Each run was killed after it had made progress, with work still left to do.
    assert all(start < at_kill < len(expected.payouts) for start, at_kill in progress), progress
    counts = Counter((p.payout_id, p.attempt) for p in seen)
    assert set(counts) == set(expected.payouts), "payouts missing or unexpected"
    duplicates = {key: n for key, n in counts.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} payouts seen more than once"
    assert {(p.payout_id, p.attempt): p.amount_minor for p in seen} == expected.payouts
    assert statuses == expected.statuses
