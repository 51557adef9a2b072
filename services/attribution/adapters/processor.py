"""The attribution adapter: records in, the core's decisions carried out, statuses out.

Routing. A referral lives in the task of its prospect: conversions are keyed by prospect_id; a
deal, keyed by deal_id, is forwarded unchanged to DEALS_BY_PROSPECT keyed by prospect_id (in
the same transaction) and handled when it comes back. So every event of one referral reaches
one task, in order per topic.

Global tables. Program configs feed the catalogue; shares and profiles feed the RocksDB
directory (`directory`); a profile's tombstone (an erasure) leaves the erased marker there.
A share, profile or erasure that arrives is noted, for every task owned here, as a wakeup (its
code, email hash or advocate); `punctuate` decides again the referrals of the
task waiting for it (`table.waiting_on`). Wakeups live in memory, so each task also keeps a
watermark: the global positions up to which its wakeups were applied, written in the same
transaction as their outcome. A task opened after a crash or moved from another instance
re-notes everything the directory's change log holds after its watermark.

Time. Stream time is per task (the largest occurred_at of its events) and drives `expire`
(see `table`). Expiry waits while the directory's follower is behind its topics' ends
(`global_behind`): inputs replayed at speed can run a window of event time ahead of the shares,
and a share published but not yet read must not find its conversion dropped. The wall clock
only bounds the wait for an unknown program: such an event waits in the task's `WaitingLot`
(`referrals.streams.waiting`, keyspace `u` of the task's store), runs when its program arrives
(before the program's next event) and goes to the .dlq with UNKNOWN_PROGRAM after
`unknown_program_wait_s`.

Metrics are tallied per transaction in a `Staged` after-commit effect: counted once it commits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from referrals.contract.records import (
    AdvocateProfile,
    ConversionEvent,
    DealEvent,
    ProgramConfig,
    Record,
    ShareEvent,
)
from referrals.contract.topics import (
    ADVOCATES,
    CONVERSIONS,
    DEALS,
    DEALS_BY_PROSPECT,
    PROGRAMS,
    SHARES,
    STATUS,
    spec_for,
)
from referrals.platform.errors import DecodeError, UnknownProgram
from referrals.platform.metrics import RuntimeMetrics
from referrals.programs.catalog import Program, ProgramAwareProcessor
from referrals.streams.processor import Inbound, Outbound, Output
from referrals.streams.serde import Codec
from referrals.streams.state import Keyspace
from referrals.streams.waiting import Dependency, Swept, Waiting, WaitingLot, rerun
from services.attribution.adapters.directory import RocksDirectory
from services.attribution.adapters.keys import WaitKey, referral_key
from services.attribution.adapters.metrics import NO_CHANNEL, AttributionMetrics, Staged
from services.attribution.adapters.program_rules import rules_for
from services.attribution.adapters.table import STORE, ReferralTable
from services.attribution.domain.model import Rules
from services.attribution.domain.referral import expire, on_conversion, on_deal, on_dependency
from services.attribution.domain.state import ReferralState, Step, from_ms

log = logging.getLogger(__name__)
PARKED = b"u"  # the waiting lot's keyspace in the task's store
DIRECTORY_TOPICS = (SHARES, ADVOCATES)
# With no wakeup to apply, a task's watermark is still moved on this often (if the globals
# moved), so a restart re-notes at most this much of the change log.
WATERMARK_EVERY_S = 30.0
# Arrivals since a task's watermark beyond which re-deciding all its waiting referrals is the
# cheaper way to catch up (and keeps a restart after a long outage from holding them all).
MAX_CATCH_UP = 100_000
DEFAULT_WINDOW_DAYS = 90  # a program's attribution window when its document names none
# A year past the longest window: a conversion up to a year late still meets its share and gets
# the OUTSIDE_WINDOW rejection the contract names (a pruned share looks as if it never came).
TOUCH_RETENTION_MARGIN_DAYS = 365.0
_DAY_MS = 86_400_000


@dataclass
class TaskState:
    task: int
    table: ReferralTable
    parked: WaitingLot
    pending: set[WaitKey] = field(default_factory=set)
    rescan_all: bool = False  # no watermark yet: wake every waiting referral once
    # An expiry horizon reached while the directory's follower lagged: applied once it caught
    # up (in memory: after a restart the next horizon, an hour of stream time on, covers it).
    deferred: int | None = None
    watermark_at: float = float("-inf")  # monotonic time the watermark was last written


class AttributionProcessor(ProgramAwareProcessor):
    name = "attribution"
    inputs = (CONVERSIONS, DEALS, DEALS_BY_PROSPECT)
    # Conversions by prospect_id, deals by deal_id (the contract), the re-keyed deals by
    # prospect_id: a record keyed otherwise goes to the .dlq (KEY_MISMATCH, BAD_KEY).
    keyed_inputs = inputs
    # ProgramAwareProcessor's `globals` is inferred as a 1-tuple; the port allows any tuple.
    globals = (PROGRAMS, SHARES, ADVOCATES)  # type: ignore[assignment]
    stores = (STORE,)
    internal_topics = (spec_for(DEALS_BY_PROSPECT),)
    # A deal whose prospect's task is open here is joined in the transaction that re-keyed
    # it, not written and fetched back (`referrals.streams.loopback`): one transaction, not
    # two, between the deal and its status.
    loopback = (DEALS_BY_PROSPECT,)

    def __init__(
        self,
        metrics: RuntimeMetrics,
        directory_path: Path,
        *,
        codec: Codec,  # to run again, from their bytes, records that waited for their program
        unknown_program_wait_s: float,
        wall: Callable[[], float] = time.time,
        touch_margin_days: float = TOUCH_RETENTION_MARGIN_DAYS,
    ) -> None:
        super().__init__(metrics)
        self.directory = RocksDirectory(directory_path, self._rules)
        # Touches are kept for the longest window of any program seen, plus this margin.
        self.touch_margin_days = touch_margin_days
        self.longest_window_days = DEFAULT_WINDOW_DAYS
        self.own = AttributionMetrics(metrics.registry)
        self.codec = codec
        self.unknown_program_wait_s = unknown_program_wait_s
        self.wall = wall
        self.tasks: dict[int, TaskState] = {}
        # Directory partitions (shares, profiles) whose follower is behind their end.
        self.directory_behind: set[tuple[str, int]] = set()
        # program_id -> (the catalogue's program version, its rules): rules are looked up a few
        # times per record; a new version (a new Program object) is translated again.
        self._rules_of: dict[str, tuple[Program, Rules]] = {}

    def close(self) -> None:
        self.directory.close()

    async def shutdown(self) -> None:
        self.close()  # after every task closed: the RocksDB directory's lock is released

    # -- global tables --------------------------------------------------------------------------
    def on_global(self, topic: str, key: str | None, record: Record) -> None:
        if isinstance(record, ShareEvent):
            self.own.records_in.labels(SHARES, record.channel.value).inc()
            keys = self.directory.add_share(record)
            if not keys:
                self.own.duplicate_shares.inc()
            self._note(keys)
        elif isinstance(record, AdvocateProfile):
            self.own.records_in.labels(ADVOCATES, NO_CHANNEL).inc()
            self._note(self.directory.add_profile(record))
        else:
            super().on_global(topic, key, record)
            if isinstance(record, ProgramConfig):
                program = self.programs.get(record.program_id)
                if program is not None:
                    window = program.document.attribution.window_days
                    self.longest_window_days = max(self.longest_window_days, window)
                for state in self.tasks.values():
                    state.parked.arrived(_program(record.program_id))

    def on_global_deleted(self, topic: str, key: str) -> None:
        """A tombstone on the advocates topic erases the advocate: the directory keeps only the
        erased marker, and referrals waiting for the profile are decided again (rejected)."""
        if topic == ADVOCATES:
            self.own.erasures.inc()
            self._note(self.directory.erase(key))

    def global_start(self, topic: str, partition: int) -> int | None:
        return self.directory.position(topic, partition) if topic in DIRECTORY_TOPICS else None

    def global_position(self, topic: str, partition: int, next_offset: int) -> None:
        if topic in DIRECTORY_TOPICS:
            self.directory.mark(topic, partition, next_offset)

    def global_behind(self, topic: str, partition: int, offsets: int) -> None:
        if topic not in DIRECTORY_TOPICS:
            return
        if offsets:
            self.directory_behind.add((topic, partition))
        else:
            self.directory_behind.discard((topic, partition))

    def _note(self, keys: list[WaitKey]) -> None:
        for state in self.tasks.values():
            state.pending.update(keys)

    # -- inputs ---------------------------------------------------------------------------------
    def process(self, record: Inbound, now: datetime) -> Iterable[Output]:
        state = self.tasks[record.partition]
        event = record.value
        if not isinstance(event, ConversionEvent | DealEvent):
            raise DecodeError(f"unexpected {type(event).__name__}", reason="WRONG_RECORD_TYPE")
        self._staged(record.partition).record_in(record.topic)
        program = _program(event.program_id)
        if not self._known(event.program_id):
            state.parked.park(record, program, now)
            return []
        out: list[Output] = []
        if state.parked.waiting_for(program):  # keep the program's events in order
            out += self._rerun(state, Swept(state.parked.release(program), []))
        return out + self._dispatch(state, record)

    def _dispatch(self, state: TaskState, record: Inbound) -> list[Output]:
        event = record.value
        if record.topic == DEALS and isinstance(event, DealEvent):
            return [Outbound(DEALS_BY_PROSPECT, event.prospect_id, event, raw=record.raw_value)]
        assert isinstance(event, ConversionEvent | DealEvent)
        out = self._expire(state, event.occurred_at)
        key = referral_key(event.program_id, event.prospect_id)
        old = state.table.load(key)
        if isinstance(event, ConversionEvent):
            step = on_conversion(old, event, self.directory)
        else:
            step = on_deal(old, event, self.directory)
        return out + self._apply(state, key, old, step)

    def _expire(self, state: TaskState, occurred_at: datetime) -> list[Output]:
        horizon = state.table.advance(occurred_at)
        if horizon is not None:
            state.deferred = max(horizon, state.deferred or horizon)
        return self._expire_due(state)

    def _expire_due(self, state: TaskState) -> list[Output]:
        """Stops waiting past the deadlines before the task's horizon, unless the directory's
        follower is behind: stream time comes from the inputs, so when they run ahead of the
        shares and profiles (a backlog replayed at speed), a share already published but not
        yet read would find its conversion dropped. It waits until the follower caught up."""
        horizon = state.deferred
        if horizon is None or self.directory_behind:
            return []
        state.deferred = None
        out: list[Output] = []
        if state.pending or state.rescan_all:
            # A share or profile already read is decided before anything expires: with only
            # the timers waking referrals, whether one was attributed or dropped depended on
            # whether a punctuation fell between its share's arrival and this event (a year
            # replayed in a second: 200 ms is 73 days of event time). The watermark is left
            # to the timers; waking again after a crash decides the same.
            out += self._wake(state)[1]
        for key in state.table.due(horizon):
            old = state.table.load(key)
            if old is not None:
                out += self._apply(state, key, old, expire(old, from_ms(horizon)))
        return out

    def _apply(
        self, state: TaskState, key: bytes, old: ReferralState | None, step: Step
    ) -> list[Output]:
        state.table.apply(key, old, step)
        self._staged(state.task).step(step.counters, step.outputs)
        return [Outbound(STATUS, status.advocate_id, status) for status in step.outputs]

    def _rerun(self, state: TaskState, released: Swept) -> list[Output]:
        handle = partial(self._dispatch, state)
        return [*released.dead, *rerun(released.ready, self.codec, handle)]

    def _unknown(self, waiting: Waiting) -> UnknownProgram:
        return UnknownProgram(
            f"no config for program {waiting.dependency[1]!r} arrived within "
            f"{self.unknown_program_wait_s:g} s",
            reason="UNKNOWN_PROGRAM",
        )

    def _staged(self, task: int) -> Staged:
        """The task's metric tally for its open transaction, applied once it commits."""
        return self.after_commit_once(task, Staged, lambda: Staged(self.own, self.wall))

    # -- timers ---------------------------------------------------------------------------------
    def punctuate(self, task: int, now: datetime) -> Iterable[Output]:
        state = self.tasks.get(task)
        if state is None:
            return []
        out: list[Output] = []
        if state.parked.due(now):
            out += self._rerun(state, state.parked.sweep(self._program_known, now))
        # Punctuation runs only after the global tables were loaded: every program's window
        # is known before any touch is pruned. A no-op read-free check when none is due.
        self.directory.prune_touches(self.touch_retention_ms())
        stale = time.monotonic() - state.watermark_at >= WATERMARK_EVERY_S
        if state.pending or state.rescan_all or stale:
            positions = self.directory.positions()  # before draining: every record below is noted
            woken, outputs = self._wake(state)
            out += outputs
            if woken or stale:
                state.table.set_watermark(positions)
                state.watermark_at = time.monotonic()
        return out + self._expire_due(state)  # a horizon held while the directory lagged

    def _wake(self, state: TaskState) -> tuple[int, list[Output]]:
        """Decides again every referral of the task waiting for what arrived."""
        if state.rescan_all:
            keys = state.table.all_waiting()
        else:
            keys = {k for wait in sorted(state.pending) for k in state.table.waiting_on(wait)}
        state.pending, state.rescan_all = set(), False
        out: list[Output] = []
        for key in sorted(keys):
            old = state.table.load(key)
            if old is None:
                continue
            try:
                step = on_dependency(old, self.directory)
            except Exception:  # a bug must not stop the task's timers: leave this one waiting
                log.exception("deciding a woken referral failed", extra={"referral": key.decode()})
                continue
            out += self._apply(state, key, old, step)
        self._staged(state.task).wakeups(len(keys))
        return len(keys), out

    # -- tasks and transactions -----------------------------------------------------------------
    async def assign(self, tasks: frozenset[int]) -> None:
        for task in sorted(tasks):
            store = self.store(task, STORE)
            table = ReferralTable(store)
            wait_ms = int(self.unknown_program_wait_s * 1000)
            parked = WaitingLot(Keyspace(store, PARKED), wait_ms=wait_ms, expired=self._unknown)
            state = TaskState(task, table, parked)
            watermark = table.watermark()
            changes = (
                None if watermark is None else self.directory.changes_since(watermark, MAX_CATCH_UP)
            )
            if changes is None:
                state.rescan_all = True
            else:
                state.pending = changes
            self.tasks[task] = state
        self._set_gauges()

    async def revoke(self, tasks: frozenset[int]) -> None:
        for task in tasks:
            self.tasks.pop(task, None)
        self._set_gauges()

    def committed(self, task: int) -> None:
        super().committed(task)  # the transaction's tally (`_staged`)
        self._set_gauges()

    def _set_gauges(self) -> None:
        states = self.tasks.values()
        self.own.waiting.labels("conversion").set(sum(s.table.waiting[0] for s in states))
        self.own.waiting.labels("deal").set(sum(s.table.waiting[1] for s in states))
        self.own.parked.set(sum(len(s.parked) for s in states))

    # -- programs -------------------------------------------------------------------------------
    def _known(self, program_id: str) -> bool:
        return self.programs.get(program_id) is not None

    def _program_known(self, dependency: Dependency) -> bool:
        return self._known(dependency[1])

    def touch_retention_ms(self) -> int:
        """How far behind the newest share a touch is kept: longest window plus the margin."""
        return int((self.longest_window_days + self.touch_margin_days) * _DAY_MS)

    def _rules(self, program_id: str) -> Rules:
        program = self.programs.get(program_id)
        if program is None:
            raise KeyError(f"program {program_id!r} is not known")
        held = self._rules_of.get(program_id)
        if held is not None and held[0] is program:
            return held[1]
        rules = rules_for(program)
        self._rules_of[program_id] = (program, rules)
        return rules


def _program(program_id: str) -> Dependency:
    """What an event of an unknown program waits for."""
    return ("program", program_id)
