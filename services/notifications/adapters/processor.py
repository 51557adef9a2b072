"""The notifications processor: Kafka records in, the core's decisions carried out.

Per record: load the advocate's state, call the core (`domain.plan`), persist the new state and
its next wake-up, put each planned message in the `outbox` store and stage its sending as an
after-commit effect (`referrals.streams.effects`). Everything is written in the task's
transaction; only when it commits are the staged messages handed to the sender, so nothing is
sent for a transaction that did not commit (at most once).

The sender reports each channel's outcome back; the next punctuation records it in the task's
transaction: a `NotificationSent` on notifications.sent.v1 (or a dead letter on its .dlq), the
core's `on_delivered`, the outbox entry settled. A crash between a server's acceptance and that
record leaves the outbox entry, and assignment resends it with the same notification_id.

Stores and the journal are described in `storage`; wake-ups are the runtime's timers
(`referrals.streams.timers`, one per advocate). A record of a program whose config has not
arrived waits in the task's `WaitingLot` (`referrals.streams.waiting`) up to
`unknown_program_wait_s`, then goes to the .dlq with UNKNOWN_PROGRAM; an advocate's later
records wait behind it (ordering key: the advocate), so an advocate's records stay in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    ProgramConfig,
    Record,
    ReferralStatusChanged,
    ShareEvent,
    UnsubscribeRequest,
)
from referrals.contract.topics import ADVOCATES, SHARES, STATUS, UNSUBSCRIBES
from referrals.platform.errors import PermanentError, UnknownProgram
from referrals.platform.metrics import RuntimeMetrics
from referrals.programs.catalog import Program, ProgramAwareProcessor
from referrals.streams.processor import Inbound, Output
from referrals.streams.state import Keyspace
from referrals.streams.timers import TimerIndex
from referrals.streams.waiting import Dependency, Waiting, WaitingLot, rerun
from services.notifications.adapters import outcomes, restart
from services.notifications.adapters.codec import OUTBOX_ENTRIES, STATES
from services.notifications.adapters.config import NotificationsSettings
from services.notifications.adapters.delivery import Delivery, Outcome, Sender
from services.notifications.adapters.metrics import NotificationMetrics
from services.notifications.adapters.storage import (
    OUTBOX,
    PARKED,
    WAKEUPS,
    Journal,
    OutboxEntry,
)
from services.notifications.adapters.tasks import TaskContext
from services.notifications.adapters.unsubscribe import UnsubscribeEndpoint
from services.notifications.domain import plan as core
from services.notifications.domain.messages import Plan
from services.notifications.domain.state import State, new_state, to_ms

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
Input = ReferralStatusChanged | AdvocateProfile | ShareEvent | UnsubscribeRequest
# Advocates ticked per punctuation and task: bounds one transaction when many timers fire at
# once (after a long outage); the rest fire at the next punctuation, a moment later.
MAX_TICKS = 500


class NotificationsProcessor(ProgramAwareProcessor):
    name = "notifications"
    inputs = (STATUS, ADVOCATES, SHARES, UNSUBSCRIBES)
    # An advocate's whole state (and rate limit) lives in the task its key maps to.
    keyed_inputs = inputs
    stores = ("advocates", "index")

    def __init__(
        self, metrics: RuntimeMetrics, settings: NotificationsSettings, clock: Clock
    ) -> None:
        super().__init__(metrics)
        self.settings = settings
        self.clock = clock
        self.stats = NotificationMetrics(metrics.registry)
        self.sender = Sender(settings, self.stats, clock, self._reported)
        group = settings.group_id or f"referrals-{self.name}"
        self.journal = Journal(settings.state_dir / group / self.name / "journal")
        self._codec = AvroCodec()
        self._tasks: dict[int, TaskContext] = {}
        # Served beside the processor when it runs as a service (set by app.build).
        self.endpoint: UnsubscribeEndpoint | None = None

    # -- inputs ---------------------------------------------------------------------------------
    def process(self, record: Inbound, now: datetime) -> Iterable[Output]:
        value = record.value
        if not isinstance(value, Input):
            raise PermanentError(f"unexpected {type(value).__name__}", reason="WRONG_RECORD_TYPE")
        ctx = self._ctx(record.partition)
        waits = self.programs.get(value.program_id) is None or ctx.parked.holds(value.advocate_id)
        if waits and not isinstance(value, UnsubscribeRequest):  # an opt-out never waits
            ctx.parked.park(record, _program(value.program_id), now, order_key=value.advocate_id)
            self.stats.parked.inc()
            return ()
        self._apply(ctx, value, now)
        return ()

    def _apply(self, ctx: TaskContext, value: Input, now: datetime) -> None:
        state = self.load_state(ctx.task, value.advocate_id)
        program = self.programs.get(value.program_id)
        plan = Plan()
        if isinstance(value, UnsubscribeRequest):
            state, plan = core.on_unsubscribe(state, value.requested_at)
        elif isinstance(value, ShareEvent):
            state, plan = core.on_share(state, value)
        elif program is None:  # parking made sure the program is known
            raise UnknownProgram(f"program {value.program_id!r} is unknown")
        elif isinstance(value, ReferralStatusChanged):
            state, plan = core.on_status(state, value, program.document, now)
        else:
            state, plan = core.on_profile(state, value, program.document, now)
        self._save(ctx, state)
        self._carry_out(ctx, plan)

    # -- timers and recording -------------------------------------------------------------------
    def punctuate(self, task: int, now: datetime) -> Iterable[Output]:
        ctx = self._ctx(task)
        out: list[Output] = []
        out.extend(self._record(ctx, now))
        out.extend(self._unpark(ctx, now))
        for timer in ctx.wakeups.pop_due(to_ms(now), MAX_TICKS):
            try:
                self._tick(ctx, timer.id, now)
            except Exception:  # one advocate's bad state must not stop every other timer
                log.exception("timer failed", extra={"task": task, "advocate_id": timer.id})
        outbox = self.outbox(task)
        for notification_id in ctx.obsolete:
            outbox.delete(notification_id.encode())
        ctx.obsolete.clear()
        return out

    def _tick(self, ctx: TaskContext, advocate_id: str, now: datetime) -> None:
        state = self.load_state(ctx.task, advocate_id)
        program = self._program_of(state)
        if program is not None:
            state, plan = core.on_tick(state, program.document, now)
            self._save(ctx, state)
            self._carry_out(ctx, plan)

    def _record(self, ctx: TaskContext, now: datetime) -> list[Output]:
        """Records the outcomes the sender reported since the last punctuation."""
        out: list[Output] = []
        outbox = self.outbox(ctx.task)
        while ctx.outcomes:
            outcome = ctx.outcomes.popleft()
            key = outcome.message.notification_id.encode()
            raw = outbox.get(key)
            entry = None if raw is None else OUTBOX_ENTRIES.decode(raw, key)
            if entry is None or outcome.channel not in entry.channels:
                continue  # recorded already (a resend's second outcome, a journal replay)
            ctx.recording.append(outcome)
            out.append(outcomes.to_output(ctx.task, outcome, now, self.stats))
            rest = entry.without(outcome.channel)
            if rest.channels:
                outbox.put(key, OUTBOX_ENTRIES.encode(rest))
                continue
            outbox.delete(key)
            state = self.load_state(ctx.task, entry.advocate_id)
            settle = core.on_delivered if outcome.delivered else core.on_dead_lettered
            self._save(ctx, settle(state, outcome.message.notification_id))
        return out

    def _unpark(self, ctx: TaskContext, now: datetime) -> list[Output]:
        if not ctx.parked.due(now):  # no program arrived that a record waits for, none too old
            return []
        swept = ctx.parked.sweep(self._known, now)

        def apply(record: Inbound) -> list[Output]:
            self._apply(ctx, record.value, now)
            return []

        out = [*rerun(swept.ready, self._codec, apply), *swept.dead]
        self.stats.parked.dec(len(swept.ready) + len(swept.dead))
        return out

    def _known(self, dependency: Dependency) -> bool:
        return self.programs.get(dependency[1]) is not None

    def _unknown_program(self, waiting: Waiting) -> UnknownProgram:
        return UnknownProgram(
            f"no config for program {waiting.dependency[1]!r} arrived within "
            f"{self.settings.unknown_program_wait_s:g} s"
        )

    def on_global(self, topic: str, key: str | None, record: Record) -> None:
        super().on_global(topic, key, record)
        if isinstance(record, ProgramConfig):
            for ctx in self._tasks.values():
                ctx.parked.arrived(_program(record.program_id))

    # -- state ----------------------------------------------------------------------------------
    def load_state(self, task: int, advocate_id: str) -> State:
        key = advocate_id.encode()
        raw = self.store(task, "advocates").get(key)
        return new_state(advocate_id) if raw is None else STATES.decode(raw, key)

    def _save(self, ctx: TaskContext, state: State) -> None:
        self.store(ctx.task, "advocates").put(state.advocate_id.encode(), STATES.encode(state))
        program = self._program_of(state)
        due = None if program is None else core.next_wakeup(state, program.document)
        ctx.wakeups.set(state.advocate_id, None if due is None else to_ms(due))

    def outbox(self, task: int) -> Keyspace:
        return Keyspace(self.store(task, "index"), OUTBOX)

    def _program_of(self, state: State) -> Program | None:
        return None if state.profile is None else self.programs.get(state.profile.program_id)

    def _carry_out(self, ctx: TaskContext, plan: Plan) -> None:
        outbox = self.outbox(ctx.task)
        for message in plan.messages:
            program_id = str(message.context["program_id"])
            program = self.programs.get(program_id)
            assert program is not None  # the core planned it with this program
            entry = OutboxEntry(message.advocate_id, program_id, message.channels)
            outbox.put(message.notification_id.encode(), OUTBOX_ENTRIES.encode(entry))
            delivery = Delivery(ctx.task, message, program.document, message.channels)
            self.after_commit(ctx.task, partial(self._submit, delivery))
        for suppressed in plan.suppressed:
            self.after_commit(ctx.task, self.stats.suppressed.labels(suppressed.reason.value).inc)

    def _submit(self, delivery: Delivery) -> None:
        self.sender.submit(delivery)

    # -- transactions ---------------------------------------------------------------------------
    def committed(self, task: int) -> None:
        super().committed(task)  # the staged sends and counts
        ctx = self._tasks.get(task)
        if ctx is None:
            return
        ctx.recording.clear()
        self.stats.timers.set(sum(len(c.wakeups) for c in self._tasks.values()))

    def aborted(self, task: int) -> None:
        super().aborted(task)  # nothing staged is sent or counted
        # The runtime rebuilds an aborted task (revoke, then assign): what was recorded in the
        # transaction goes back to be recorded again, or journaled on revoke.
        ctx = self._tasks.get(task)
        if ctx is None:
            return
        ctx.outcomes.extendleft(reversed(ctx.recording))
        ctx.recording.clear()

    def _reported(self, outcome: Outcome) -> None:
        ctx = self._tasks.get(outcome.task)
        if ctx is not None:  # else the task moved on: its new owner resends from the outbox
            ctx.outcomes.append(outcome)

    # -- assignment -----------------------------------------------------------------------------
    def _ctx(self, task: int) -> TaskContext:
        ctx = self._tasks.get(task)
        if ctx is None:
            index = self.store(task, "index")
            wakeups = TimerIndex(Keyspace(index, WAKEUPS))
            wait_ms = int(self.settings.unknown_program_wait_s * 1000)
            parked = WaitingLot(
                Keyspace(index, PARKED), wait_ms=wait_ms, expired=self._unknown_program
            )
            ctx = self._tasks[task] = TaskContext(task, wakeups, parked)
        return ctx

    async def assign(self, tasks: frozenset[int]) -> None:
        now = self.clock()
        for task in sorted(tasks):
            self._tasks.pop(task, None)
            ctx = self._ctx(task)
            restart.resume(self, ctx, self.journal.take(task), now)
        self.stats.parked.set(sum(len(c.parked) for c in self._tasks.values()))

    async def revoke(self, tasks: frozenset[int]) -> None:
        await self.sender.drain(tasks, self.settings.shutdown_grace_s)
        for task in sorted(tasks):
            ctx = self._tasks.pop(task, None)
            if ctx is not None:
                self.journal.write(task, outcomes.to_journal([*ctx.recording, *ctx.outcomes]))

    async def startup(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.start()

    async def shutdown(self) -> None:
        """After the runtime closed every task: the unsubscribe endpoint, then the sender."""
        if self.endpoint is not None:
            await self.endpoint.stop()
        await self.close()

    async def close(self) -> None:
        """Stops the sender (after the runtime has closed every task)."""
        await self.sender.close()


def _program(program_id: str) -> Dependency:
    """What a record of an unknown program waits for."""
    return ("program", program_id)
