"""Money is exactly once: the rewards service is SIGKILLed at progress points while it works
through well over a thousand wins (with duplicates, reversals and refunds after payment), then
again while it works through operator commands, and restarted each time; a read_committed
reader then finds every expected (payout_id, attempt) exactly once on rewards.payouts.v1 (the
advocates' payouts) and on rewards.payouts.v2 (those, the friends' rewards and the clawbacks),
and exactly one CommandResult per command, with the expected outcome.

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from referrals.contract.records import (
    CommandResult,
    OperatorCommand,
    PayoutCommand,
    PayoutKind,
    Recipient,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
    RewardCommand,
    RewardType,
)
from referrals.contract.topics import COMMAND_RESULTS, OPERATOR_COMMANDS, PAYOUTS, PAYOUTS_V2
from referrals.platform.settings import KafkaSettings
from services.rewards.adapters.operator import read_records
from services.rewards.domain.decide import new_ledger, on_command, on_reversed, on_won
from services.rewards.domain.ledger import Ledger
from services.rewards.domain.outputs import COMMAND_APPLIED, Decision
from services.rewards.domain.rules import FriendReward, Period, RewardRules, Tier

from .helpers import produce
from .test_rewards_service import (
    CODEC,
    Service,
    own_statuses,
    publish_statuses,
    put_program,
    records,
    start_rewards,
    status,
)

pytestmark = pytest.mark.broker
SLOW_REWARDS = ("tests.integration.slow_rewards",)
ADVOCATES = 240  # 3..7 wins each: about 1,200 wins
# deploy/programs/acme-b2b.yaml (a friend reward, clawbacks) with hold_days 30, no tax
# threshold and at most 4 wins a day: a win 40 days old is due at once, one a day old waits 29
# more days (a reversal then cancels it; one of a paid win claws it back), wins of 5% of a deal
# over 20,000.00 wait for approval, and an advocate's fifth and later wins of one New York day
# wait for fraud review, so reversals and denials change later tiers.
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
    friend_reward=FriendReward(2_500, RewardType.BILL_CREDIT),
    clawback=True,
    max_wins_per_day=4,
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
class Oracle:
    """The pure core over the same inputs: what the service must have produced."""

    now: datetime
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    v1: dict[tuple[str, int], int] = field(default_factory=dict)  # (payout_id, attempt) -> amount
    v2: dict[tuple[str, int], int] = field(default_factory=dict)
    statuses: set[str] = field(default_factory=set)
    results: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id -> outcome

    def status(self, event: ReferralStatusChanged) -> None:
        book = self._book(event.advocate_id)
        if event.status is ReferralStatus.WON:
            self._record(event.advocate_id, on_won(book, RULES, event, self.now))
        else:
            self._record(
                event.advocate_id, on_reversed(book, event, self.now, clawback_on=RULES.clawback)
            )

    def command(self, advocate_id: str, command: RewardCommand) -> None:
        decision = on_command(self._book(advocate_id), RULES, command, self.now)
        self._record(advocate_id, decision)
        applied = decision.outcome in COMMAND_APPLIED
        reason = None if applied else decision.outcome.value
        self.results[command.command_id] = ("APPLIED" if applied else "REFUSED", reason)

    def _book(self, advocate_id: str) -> Ledger:
        return self.ledgers.get(advocate_id) or new_ledger(RULES.program_id, advocate_id)

    def _record(self, advocate_id: str, decision: Decision) -> None:
        self.ledgers[advocate_id] = decision.ledger
        for out in decision.outputs:
            if isinstance(out, PayoutCommand):
                self.v2[(out.payout_id, out.attempt)] = out.amount_minor
                if out.kind is PayoutKind.PAYOUT and out.recipient is Recipient.ADVOCATE:
                    self.v1[(out.payout_id, out.attempt)] = out.amount_minor
            else:
                self.statuses.add(out.status_id)


def operator_commands(oracle: Oracle, now: datetime) -> list[tuple[str, OperatorCommand]]:
    """An operator's day after the wins: each reward held for review approved (3 in 5) or
    denied, some by its friend's payout_id; and commands the ledger must refuse (approving a
    reward already issued, retrying one that did not fail). One command per referral: commands
    take different partitions on their way, so two for one referral could arrive in either
    order (second approvals and repeats are test_rewards_commands's)."""
    rng = random.Random(11)
    out: list[tuple[str, OperatorCommand]] = []
    for advocate_id, book in sorted(oracle.ledgers.items()):
        for entry in book.entries:
            n = len(out)
            target = entry.payout_id
            if entry.friend is not None and rng.random() < 0.2:
                target = entry.friend.payout_id
            if entry.under_review:
                action = RewardAction.APPROVE if rng.random() < 0.6 else RewardAction.DENY
                out.append((advocate_id, _command(f"cmd-{n}", action, target, now)))
            elif entry.issued and rng.random() < 0.05:
                action = rng.choice([RewardAction.APPROVE, RewardAction.RETRY])
                out.append((advocate_id, _command(f"cmd-{n}", action, target, now)))
    return out


def _command(command_id: str, action: RewardAction, target: str, now: datetime) -> OperatorCommand:
    return OperatorCommand(command_id, action, target, "ops", now, "kill test")


async def _count(topics: KafkaSettings, topic: str) -> int:
    """A snapshot: committed records up to the topic's current end."""
    return len(await read_records(topics, topic))


async def _kill_after(
    topics: KafkaSettings, service: Service, topic: str, more: int
) -> tuple[int, int]:
    """SIGKILLs the service once it committed at least `more` records to `topic` beyond those
    already there (so each kill lands mid-stream however loaded the machine is); returns the
    counts before and at the kill."""
    deadline = time.monotonic() + 90
    start = count = await _count(topics, topic)
    while time.monotonic() < deadline and service.proc.poll() is None:
        count = await _count(topics, topic)
        if count >= start + more:
            break
        await asyncio.sleep(0.1)
    assert service.proc.poll() is None, service.log.read_text()[-3000:]
    service.proc.send_signal(signal.SIGKILL)
    service.proc.wait(timeout=10)
    return start, count


async def _payouts(topics: KafkaSettings, topic: str, expect: int) -> list[PayoutCommand]:
    found = await records(topics, topic, expect=expect, within=180)
    return [p for p in found if isinstance(p, PayoutCommand)]


async def _settled(topics: KafkaSettings, oracle: Oracle) -> list[PayoutCommand]:
    """Waits for the oracle's v2 records and statuses; returns what v2 holds."""
    seen = await _payouts(topics, PAYOUTS_V2, expect=len(oracle.v2))
    deadline = time.monotonic() + 60
    statuses = {s.status_id for s in await own_statuses(topics)}
    while statuses != oracle.statuses and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        statuses = {s.status_id for s in await own_statuses(topics)}
    assert statuses == oracle.statuses
    return seen


def _exactly_once(seen: list[PayoutCommand], expected: dict[tuple[str, int], int]) -> None:
    counts = Counter((p.payout_id, p.attempt) for p in seen)
    assert set(counts) == set(expected), "payouts missing or unexpected"
    duplicates = {key: n for key, n in counts.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} payouts seen more than once"
    assert {(p.payout_id, p.attempt): p.amount_minor for p in seen} == expected


async def test_money_and_command_results_are_exactly_once_across_repeated_sigkills(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    stream = scenario(now)
    assert sum(1 for s in stream if s.status is ReferralStatus.WON) >= 1_000
    oracle = Oracle(now)
    for event in stream:
        oracle.status(event)
    friends = [k for k in oracle.v2 if k not in oracle.v1]
    assert len(oracle.v1) > 500 and len(friends) > 500  # and some held, pending, cancelled
    assert any(e.under_review for b in oracle.ledgers.values() for e in b.entries)
    put_program(
        topics, tmp_path, top={"fraud": {"max_wins_per_day": 4}}, hold_days=30, tax_threshold=None
    )
    await publish_statuses(topics, stream)

    # Phase 1: the wins, killed three times. The real service slowed by 3 ms a record
    # (tests/integration/slow_rewards.py), in small batches, so each kill lands mid-stream.
    state = tmp_path / "state"
    slow = {"SLOW_REWARDS_DELAY_MS": "3", "REWARDS_MAX_BATCH": "50"}
    progress = []
    for _ in range(3):
        service = start_rewards(topics, state, wait_ready=False, command=SLOW_REWARDS, **slow)
        progress.append(await _kill_after(topics, service, PAYOUTS_V2, 300))
    service = start_rewards(topics, state)
    try:
        _exactly_once(await _settled(topics, oracle), oracle.v2)
    finally:
        service.stop()
    assert all(start < at_kill < len(oracle.v2) for start, at_kill in progress), progress

    # Phase 2: the operator's commands, killed twice while answering them.
    commands = operator_commands(oracle, now)
    for advocate_id, command in commands:
        routed = RewardCommand(
            command.command_id, command.target_id, command.action, command.by, command.issued_at
        )
        oracle.command(advocate_id, routed)
    answers = Counter(outcome for outcome, _ in oracle.results.values())
    assert answers["APPLIED"] > 20 and answers["REFUSED"] > 5, answers
    published = [(c.command_id.encode(), CODEC.encode(c)) for _, c in commands]
    await produce(topics, OPERATOR_COMMANDS, published)
    # Commands are few (a few hundred records through two hops): slower still, and each kill
    # after a quarter of what is left, so that neither kill comes after the last answer (with a
    # fixed quarter of all, a first kill seen late left the second nothing to interrupt).
    slower = {"SLOW_REWARDS_DELAY_MS": "15", "REWARDS_MAX_BATCH": "20"}
    for _ in range(2):
        left = len(commands) - await _count(topics, COMMAND_RESULTS)
        service = start_rewards(topics, state, wait_ready=False, command=SLOW_REWARDS, **slower)
        progress.append(await _kill_after(topics, service, COMMAND_RESULTS, max(1, left // 4)))
    service = start_rewards(topics, state)
    try:
        found = await records(topics, COMMAND_RESULTS, expect=len(commands), within=180)
        seen = await _settled(topics, oracle)
    finally:
        service.stop()
    assert all(start < at_kill < len(commands) for start, at_kill in progress[3:]), progress

    _exactly_once(seen, oracle.v2)
    _exactly_once(await _payouts(topics, PAYOUTS, expect=len(oracle.v1)), oracle.v1)
    results = [r for r in found if isinstance(r, CommandResult)]
    per_command = Counter(r.command_id for r in results)
    assert {k: n for k, n in per_command.items() if n != 1} == {}, "results not exactly once"
    assert {r.command_id: (r.outcome.value, r.reason) for r in results} == oracle.results
