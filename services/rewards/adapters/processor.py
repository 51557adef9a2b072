"""The rewards processor: the pure core (`domain/`) wired to the shared stream runtime.

Task p is partition p of every input; all topics share one partition count and the default
(murmur2) partitioner, so a key lands on the same partition number in every topic:
- ledger side, keyed by advocate_id: WON / REVERSED on `referral.status.v1`, profiles on
  `referral.advocates.v1`, results and commands forwarded on `rewards.by-advocate.v1`, and the
  task's due timers (`ledgers`, `timers`);
- payout side, keyed by payout_id: finance's results on `rewards.payout-results.v1`, owner
  records and operator commands on `rewards.by-payout.v1` (`routing`).
Each poll's records of a task, the payouts, statuses, forwarded records and store changes they
cause, and the consumed offsets commit in one Kafka transaction (the runtime's job), which is
what makes each (payout_id, attempt) appear exactly once on `rewards.payouts.v1`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from referrals.contract.avro import AvroCodec
from referrals.contract.records import AdvocateProfile, ReferralStatus, ReferralStatusChanged
from referrals.contract.topics import (
    ADVOCATES,
    PAYOUT_RESULTS,
    REWARDS_BY_ADVOCATE,
    REWARDS_BY_PAYOUT,
    STATUS,
    spec_for,
)
from referrals.contract.validation import check_values
from referrals.platform.errors import PermanentError, UnknownProgram
from referrals.platform.metrics import RuntimeMetrics
from referrals.programs.catalog import ProgramAwareProcessor
from referrals.streams.processor import DeadLetterOut, Inbound, Output
from referrals.streams.state import Keyspace
from services.rewards.adapters import keyspace
from services.rewards.adapters.ledgers import LedgerBook
from services.rewards.adapters.metrics import RewardsMetrics
from services.rewards.adapters.parking import Kind, Parked, Parking
from services.rewards.adapters.program_rules import RulesCache
from services.rewards.adapters.routing import PayoutRouter
from services.rewards.adapters.settings import RewardsSettings
from services.rewards.adapters.timers import TimerIndex
from services.rewards.domain.ledger import Reason, to_ms

log = logging.getLogger(__name__)
EpochClock = Callable[[], float]
# Waits are hours to days long: looking for expired parked inputs once a second is plenty,
# and keeps a large backlog of waiting records from being scanned at every punctuation.
EXPIRY_SWEEP_MS = 1000


def is_reward_input(status: ReferralStatusChanged) -> bool:
    """Only a deal won or reversed concerns rewards. Every other status, including the ones this
    service emits and reads back from the same topic (its own REVERSED says the reward was
    cancelled), is not an input."""
    if status.status is ReferralStatus.WON:
        return True
    return status.status is ReferralStatus.REVERSED and status.reason != Reason.REWARD_CANCELLED


class RewardsProcessor(ProgramAwareProcessor):
    name = "rewards"
    inputs = (STATUS, ADVOCATES, PAYOUT_RESULTS, REWARDS_BY_PAYOUT, REWARDS_BY_ADVOCATE)
    stores = (keyspace.STORE,)
    internal_topics = (spec_for(REWARDS_BY_PAYOUT), spec_for(REWARDS_BY_ADVOCATE))
    # rewards.by-advocate carries PayoutResults too, which name no advocate: `ledgers` checks
    # the commands on it itself.
    keyed_inputs = (STATUS, ADVOCATES, PAYOUT_RESULTS, REWARDS_BY_PAYOUT)

    def __init__(
        self,
        metrics: RuntimeMetrics,
        settings: RewardsSettings,
        epoch_clock: EpochClock = time.time,
    ) -> None:
        super().__init__(metrics)
        self.settings = settings
        self.codec = AvroCodec()
        self._next_sweep: dict[int, int] = {}  # task -> when to look for expired inputs
        self.rules = RulesCache(self.programs)
        self.timers = TimerIndex(lambda task: self.space(task, keyspace.TIMERS))
        self.parking = Parking(lambda task: self.space(task, keyspace.PARKED))
        offset = settings.clock_offset_s
        self.rewards_metrics = RewardsMetrics(metrics.registry, lambda: epoch_clock() + offset)
        self.ledgers = LedgerBook(
            lambda task: self.space(task, keyspace.LEDGERS),
            self.timers,
            self.rewards_metrics,
            self.rules,
        )
        self.router = PayoutRouter(
            lambda task: self.space(task, keyspace.OWNERS),
            self.parking,
            self.rewards_metrics,
            self.codec,
            settings.unknown_payout_wait_s,
        )

    def space(self, task: int, prefix: bytes) -> Keyspace:
        """One keyspace of the task's store (its writes commit with the task's transaction)."""
        return Keyspace(self.store(task, keyspace.STORE), prefix)

    # -- records --------------------------------------------------------------------------------
    def process(self, record: Inbound, now: datetime) -> list[Output]:
        if record.topic == STATUS:
            return self._status(record, now)
        if record.topic == ADVOCATES:
            return self.ledgers.profile(record.partition, _profile(record), now)
        if record.topic in (PAYOUT_RESULTS, REWARDS_BY_PAYOUT):
            return self.router.handle(record, to_ms(now))
        if record.topic == REWARDS_BY_ADVOCATE:
            return self.ledgers.forwarded(record, now)
        return []

    def _status(self, record: Inbound, now: datetime) -> list[Output]:
        status = record.value
        if not isinstance(status, ReferralStatusChanged) or not is_reward_input(status):
            return []
        check_values(status, now)  # statuses are an output topic: the runtime does not check
        task = record.partition
        if self.programs.get(status.program_id) is None:
            self.parking.park(Kind.PROGRAM, status.program_id, record, to_ms(now))
            self.rewards_metrics.stage(task, self.rewards_metrics.parked.labels("program").inc)
            return []
        # Statuses of this program that arrived before its config go first, in arrival order.
        released = self._release(task, status.program_id, now)
        try:
            return [*released, *self.ledgers.status(task, status, now)]
        except PermanentError as err:  # raising would lose `released`, already out of the store
            return [*released, DeadLetterOut(record, err)]

    def _release(self, task: int, program_id: str, now: datetime) -> list[Output]:
        out: list[Output] = []
        for parked in self.parking.take(task, Kind.PROGRAM, program_id):
            inbound = parked.inbound(self.codec)
            assert isinstance(inbound.value, ReferralStatusChanged)
            try:
                out += self.ledgers.status(task, inbound.value, now)
            except PermanentError as err:
                out.append(DeadLetterOut(inbound, err))
            except Exception as err:  # a bug: it already left the store, so dead-letter it
                log.exception("releasing a parked status failed", extra={"task": task})
                out.append(DeadLetterOut(inbound, PermanentError(repr(err), reason="BUG")))
        return out

    # -- wall clock -----------------------------------------------------------------------------
    def punctuate(self, task: int, now: datetime) -> list[Output]:
        """Statuses whose program arrived, inputs that waited too long, rewards now due."""
        now_ms = to_ms(now)
        out: list[Output] = []
        for program_id in self.parking.groups(task, Kind.PROGRAM):
            if self.programs.get(program_id) is not None:
                out += self._release(task, program_id, now)
        if now_ms >= self._next_sweep.get(task, 0):
            self._next_sweep[task] = now_ms + EXPIRY_SWEEP_MS
            out += self._expire_statuses(task, now_ms)
            out += self.router.expire(task, now_ms)
        for due_ms, advocate_id in self.timers.due(task, now_ms, self.settings.max_releases):
            try:
                out += self.ledgers.tick(task, advocate_id, due_ms, now)
            except Exception:  # one corrupt ledger must not stop every other release
                log.exception("releasing due rewards failed", extra={"task": task})
        return out

    def _expire_statuses(self, task: int, now_ms: int) -> list[Output]:
        wait_s = self.settings.unknown_program_wait_s
        limit = now_ms - int(wait_s * 1000)
        return [
            self._unknown_program(p, wait_s)
            for p in self.parking.expired(task, Kind.PROGRAM, limit)
        ]

    def _unknown_program(self, parked: Parked, wait_s: float) -> DeadLetterOut:
        inbound = parked.inbound(self.codec)
        program_id = getattr(inbound.value, "program_id", "?")
        error = UnknownProgram(f"no config for program {program_id!r} arrived within {wait_s:g} s")
        return DeadLetterOut(inbound, error)

    # -- lifecycle ------------------------------------------------------------------------------
    async def assign(self, tasks: frozenset[int]) -> None:
        for task in tasks:
            self._load(task)
        self._gauges()

    async def revoke(self, tasks: frozenset[int]) -> None:
        for task in tasks:
            self.timers.drop(task)
            self.parking.drop(task)
            self.rewards_metrics.aborted(task)
        self._gauges()

    def committed(self, task: int) -> None:
        self.rewards_metrics.committed(task)
        self._gauges()

    def aborted(self, task: int) -> None:
        # The in-memory indexes saw uncommitted changes: rebuild them from the stores.
        self.rewards_metrics.aborted(task)
        if task in self.task_stores:
            self._load(task)

    def _load(self, task: int) -> None:
        self.timers.load(task)
        self.parking.load(task)

    def _gauges(self) -> None:
        m = self.rewards_metrics
        m.pending.set(self.timers.pending())
        m.waiting.labels("program").set(self.parking.count(Kind.PROGRAM))
        m.waiting.labels("payout").set(self.parking.count(Kind.PAYOUT))


def _profile(record: Inbound) -> AdvocateProfile:
    profile = record.value
    if not isinstance(profile, AdvocateProfile):
        raise PermanentError("not an AdvocateProfile", reason="WRONG_RECORD_TYPE")
    return profile
