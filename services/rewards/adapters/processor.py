"""The rewards processor: the pure core (`domain/`) wired to the shared stream runtime.

Task p is partition p of every input; all topics share one partition count and the default
(murmur2) partitioner, so a key lands on the same partition number in every topic:
- ledger side, keyed by advocate_id: WON / REVERSED on `referral.status.v1`, profiles on
  `referral.advocates.v1`, results and commands forwarded on `rewards.by-advocate.v1`, and the
  task's due timers (`ledgers`; `referrals.streams.timers`, one per advocate);
- payout side, keyed by payout_id: finance's results on `rewards.payout-results.v1`, owner
  records and operator commands on `rewards.by-payout.v1` (`routing`);
- operator commands as published, keyed by command_id on `operator.commands.v1`: each goes on
  to `rewards.by-payout.v1` (keyed by its payout), and the ledger's answer comes back as a
  CommandResult on `operator.command-results.v1`.
Each poll's records of a task, the payouts, statuses, forwarded records and store changes they
cause, and the consumed offsets commit in one Kafka transaction (the runtime's job), which is
what makes each (payout_id, attempt) appear exactly once on `rewards.payouts.v1`.
A status of a program whose config has not arrived waits in the task's program lot
(`referrals.streams.waiting`), a result or command of an unknown payout in its payout lot.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    OperatorCommand,
    ProgramConfig,
    Record,
    ReferralStatus,
    ReferralStatusChanged,
    RewardCommand,
)
from referrals.contract.topics import (
    ADVOCATES,
    OPERATOR_COMMANDS,
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
from referrals.streams.processor import DeadLetterOut, Inbound, Outbound, Output
from referrals.streams.state import Backend, Keyspace
from referrals.streams.timers import TimerIndex
from referrals.streams.waiting import Dependency, Waiting, WaitingLot, rerun
from services.rewards.adapters import keyspace
from services.rewards.adapters.archive import EntryArchive
from services.rewards.adapters.holds import (
    Committed,
    HoldIndex,
    Reader,
    oldest_since_ms,
    totals,
)
from services.rewards.adapters.ledgers import LedgerBook
from services.rewards.adapters.metrics import HeldCollector, RewardsMetrics, TaskHolds
from services.rewards.adapters.program_rules import RulesCache
from services.rewards.adapters.routing import Owners, PayoutRouter, unknown_payout
from services.rewards.adapters.settings import RewardsSettings
from services.rewards.domain.ledger import OWN_REVERSALS, to_ms

log = logging.getLogger(__name__)
EpochClock = Callable[[], float]
# Keyspaces of the two waiting lots, inside the parked one.
AWAITING_PROGRAM, AWAITING_OWNER = keyspace.PARKED + b"S", keyspace.PARKED + b"P"


def is_reward_input(status: ReferralStatusChanged) -> bool:
    """Only a deal won or reversed concerns rewards. Every other status, including the ones this
    service emits and reads back from the same topic (its own REVERSED says the reward was
    cancelled or clawed back), is not an input."""
    if status.status is ReferralStatus.WON:
        return True
    return status.status is ReferralStatus.REVERSED and status.reason not in OWN_REVERSALS


class RewardsProcessor(ProgramAwareProcessor):
    name = "rewards"
    inputs = (
        STATUS,
        ADVOCATES,
        PAYOUT_RESULTS,
        REWARDS_BY_PAYOUT,
        REWARDS_BY_ADVOCATE,
        OPERATOR_COMMANDS,
    )
    stores = (keyspace.STORE,)
    internal_topics = (spec_for(REWARDS_BY_PAYOUT), spec_for(REWARDS_BY_ADVOCATE))
    # A payout's owner record, a result or a command whose task is open here is handled in the
    # transaction that forwarded it (`referrals.streams.loopback`): finance's answer reaches
    # the advocate's ledger, and its PAID status the topic, a transaction sooner.
    loopback = (REWARDS_BY_PAYOUT, REWARDS_BY_ADVOCATE)
    # rewards.by-advocate carries PayoutResults too, which name no advocate: `ledgers` checks
    # the commands on it itself.
    keyed_inputs = (STATUS, ADVOCATES, PAYOUT_RESULTS, REWARDS_BY_PAYOUT, OPERATOR_COMMANDS)

    def __init__(
        self,
        metrics: RuntimeMetrics,
        settings: RewardsSettings,
        epoch_clock: EpochClock = time.time,
    ) -> None:
        super().__init__(metrics)
        self.settings = settings
        self.codec = AvroCodec()
        self.rules = RulesCache(self.programs)
        # Per task, built from its store on assignment and after an aborted transaction.
        self.timers: dict[int, TimerIndex] = {}
        self.awaiting_program: dict[int, WaitingLot] = {}
        self.awaiting_owner: dict[int, WaitingLot] = {}
        self.owners: dict[int, Owners] = {}
        offset = settings.clock_offset_s
        self.rewards_metrics = RewardsMetrics(
            metrics.registry, lambda: epoch_clock() + offset, self.after_commit
        )
        self.ledgers = LedgerBook(
            lambda task: self.space(task, keyspace.LEDGERS),
            self.timers,
            self.rewards_metrics,
            self.rules,
            lambda task: EntryArchive(lambda prefix: self.space(task, prefix)),
            lambda task: HoldIndex(lambda prefix: self.space(task, prefix)),
        )
        metrics.registry.register(HeldCollector(self._held))
        self.router = PayoutRouter(
            self.owners,
            self.awaiting_owner,
            self.rewards_metrics,
            self.codec,
            retention_ms=int(settings.owner_retention_days * 86_400_000),
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
            return self.router.handle(record, now)
        if record.topic == REWARDS_BY_ADVOCATE:
            return self.ledgers.forwarded(record, now)
        if record.topic == OPERATOR_COMMANDS:
            return [_to_payout(record)]
        return []

    def _status(self, record: Inbound, now: datetime) -> list[Output]:
        status = record.value
        if not isinstance(status, ReferralStatusChanged) or not is_reward_input(status):
            return []
        check_values(status, now)  # statuses are an output topic: the runtime does not check
        task = record.partition
        if self.programs.get(status.program_id) is None:
            self.awaiting_program[task].park(record, _program(status.program_id), now)
            self.rewards_metrics.stage(task, self.rewards_metrics.parked.labels("program").inc)
            return []
        # Statuses of this program that arrived before its config go first, in arrival order.
        released = self._run(
            task, self.awaiting_program[task].release(_program(status.program_id)), now
        )
        try:
            return [*released, *self.ledgers.status(task, status, now)]
        except PermanentError as err:  # raising would lose `released`, already out of the store
            return [*released, DeadLetterOut(record, err)]

    def _run(self, task: int, released: list[Waiting], now: datetime) -> list[Output]:
        """Statuses that waited for their program, handled now (in arrival order)."""
        return rerun(released, self.codec, lambda r: self.ledgers.status(task, r.value, now))

    # -- wall clock -----------------------------------------------------------------------------
    def punctuate(self, task: int, now: datetime) -> list[Output]:
        """Statuses whose program arrived, inputs that waited too long, rewards now due, owners
        of payouts settled past the retention."""
        out: list[Output] = []
        lot = self.awaiting_program[task]
        if lot.due(now):  # a program some status waits for arrived, or one waited too long
            swept = lot.sweep(self._known, now)
            out += [*self._run(task, swept.ready, now), *swept.dead]
        out += self.router.expire(task, now)
        self.router.prune(task, now, self.settings.max_releases)
        out += self._resume(task, now)
        # A failing release raises to the runtime, which aborts the task's transaction (none of
        # this punctuation's writes commit), reports `timers:task-N` not ready and runs the
        # timers again with backoff: kept aside here, it waited for a rebalance, health green.
        for timer in self.timers[task].pop_due(to_ms(now), self.settings.max_releases):
            out += self.ledgers.tick(task, timer.id, now)
        return out

    def _resume(self, task: int, now: datetime) -> list[Output]:
        """Rewards held PROGRAM_PAUSED in programs that are no longer paused, a bounded number
        of advocates per punctuation."""
        out: list[Output] = []
        archive = self.ledgers.archive(task)
        for program_id in archive.paused_programs():  # a failure raises, as releases do
            out += self.ledgers.resume(task, program_id, now, self.settings.max_releases)
        return out

    def on_global(self, topic: str, key: str | None, record: Record) -> None:
        super().on_global(topic, key, record)
        if isinstance(record, ProgramConfig):
            for lot in self.awaiting_program.values():
                lot.arrived(_program(record.program_id))

    def _known(self, dependency: Dependency) -> bool:
        return self.programs.get(dependency[1]) is not None

    def _unknown_program(self, waiting: Waiting) -> UnknownProgram:
        wait_s = self.settings.unknown_program_wait_s
        program_id = waiting.dependency[1]
        return UnknownProgram(f"no config for program {program_id!r} arrived within {wait_s:g} s")

    # -- lifecycle ------------------------------------------------------------------------------
    async def assign(self, tasks: frozenset[int]) -> None:
        for task in tasks:
            self._load(task)
        self._gauges()

    async def revoke(self, tasks: frozenset[int]) -> None:
        for task in tasks:
            self.timers.pop(task, None)
            self.ledgers.forget(task)
            self.awaiting_program.pop(task, None)
            self.awaiting_owner.pop(task, None)
            self.owners.pop(task, None)
            self.effects.abort(task)
        self._gauges()

    def committed(self, task: int) -> None:
        super().committed(task)  # the staged metrics
        self._gauges()

    def aborted(self, task: int) -> None:
        super().aborted(task)
        # The in-memory indexes saw uncommitted changes: rebuild them from the stores.
        if task in self.task_stores:
            self._load(task)

    def _load(self, task: int) -> None:
        self.timers[task] = TimerIndex(self.space(task, keyspace.TIMERS))
        self.owners[task] = Owners(
            self.space(task, keyspace.OWNERS),
            self.space(task, keyspace.SETTLED),
            self.space(task, keyspace.OWNERS_BY_PRUNE),
        )
        wait_s = self.settings.unknown_program_wait_s
        self.awaiting_program[task] = WaitingLot(
            self.space(task, AWAITING_PROGRAM),
            wait_ms=int(wait_s * 1000),
            expired=self._unknown_program,
        )
        wait_s = self.settings.unknown_payout_wait_s
        self.awaiting_owner[task] = WaitingLot(
            self.space(task, AWAITING_OWNER),
            wait_ms=int(wait_s * 1000),
            expired=unknown_payout(wait_s),
        )

    def _held(self) -> list[TaskHolds]:
        """Per task this instance owns: its holds now, read from the committed state."""
        out: list[TaskHolds] = []
        for task in list(self.timers):
            stores = self.task_stores.get(task)
            if not stores:
                continue
            backend = stores[keyspace.STORE].backend

            def space(prefix: bytes, backend: Backend = backend) -> Reader:
                return Committed(backend, prefix)

            out.append((totals(space), functools.partial(oldest_since_ms, space)))
        return out

    def _gauges(self) -> None:
        m = self.rewards_metrics
        m.pending.set(sum(len(t) for t in self.timers.values()))
        m.waiting.labels("program").set(sum(len(w) for w in self.awaiting_program.values()))
        m.waiting.labels("payout").set(sum(len(w) for w in self.awaiting_owner.values()))


def _profile(record: Inbound) -> AdvocateProfile:
    profile = record.value
    if not isinstance(profile, AdvocateProfile):
        raise PermanentError("not an AdvocateProfile", reason="WRONG_RECORD_TYPE")
    return profile


def _to_payout(record: Inbound) -> Outbound:
    """An operator's command, on to the task that knows its payout's owner."""
    command = record.value
    if not isinstance(command, OperatorCommand):
        raise PermanentError("not an OperatorCommand", reason="WRONG_RECORD_TYPE")
    return Outbound(REWARDS_BY_PAYOUT, command.target_id, reward_command(command))


def reward_command(command: OperatorCommand) -> RewardCommand:
    """An operator's command as the ledger takes it (`referrals program preview` replays the
    recorded ones through the same translation)."""
    return RewardCommand(
        command_id=command.command_id,
        payout_id=command.target_id,
        action=command.action,
        requested_by=command.by,
        requested_at=command.issued_at,
        reason=command.reason,
    )


def _program(program_id: str) -> Dependency:
    """What a status of an unknown program waits for."""
    return ("program", program_id)
