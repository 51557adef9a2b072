"""The notifications processor: Kafka records in, the core's decisions carried out.

Per record: load the advocate's state, call the core (`domain.plan`), persist the new state and
its next wake-up, put each planned message in the `outbox` store and stage its sending as an
after-commit effect (`referrals.streams.effects`). Everything is written in the task's
transaction; only when it commits are the staged messages handed to the sender, so nothing is
sent for a transaction that did not commit (at most once).

The sender makes one attempt per channel and reports its outcome; the next punctuation records
it in the task's transaction: a `NotificationSent` on notifications.sent.v1 (or a dead letter on
its .dlq), the core's `on_delivered`, the outbox entry settled. A crash between a server's
acceptance and that record leaves the outbox entry, and assignment resends it with the same
notification_id.

A failure for now (the relay or webhook receiver down) is recorded durably instead: the outbox
entry counts the channel's failed tries and a retry timer (`storage`, prefix `r`) says when to
try again (`domain.retry`: backoff capped at NOTIFICATIONS_RETRY_MAX_S, jittered), so the message
waits in the store and changelog, surviving a SIGKILL or a rebalance, not in memory. Due retry
timers are handed to the sender only while fewer than NOTIFICATIONS_MAX_IN_FLIGHT deliveries
are out (a message planned when the sender is full gets a retry timer due now; a WON's
thank-you has NOTIFICATIONS_URGENT_IN_FLIGHT more room, so it skips that queue). Past
NOTIFICATIONS_DELIVERY_DEADLINE_S from its first due time a delivery goes to the .dlq with
DEADLINE_EXCEEDED; a permanent refusal goes there at once.

An erasure (a tombstone on the advocates topic) is carried out in `deleted`.

Stores and the journal are described in `storage`; wake-ups are the runtime's timers
(`referrals.streams.timers`, one per advocate). A record of a program whose config has not
arrived waits in the task's `WaitingLot` (`referrals.streams.waiting`) up to
`unknown_program_wait_s`, then goes to the .dlq with UNKNOWN_PROGRAM; an advocate's later
records wait behind it (ordering key: the advocate), so an advocate's records stay in order.
"""

from __future__ import annotations

import logging
import random
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
from referrals.platform.evolve import replace
from referrals.platform.metrics import RuntimeMetrics
from referrals.programs.catalog import Program, ProgramAwareProcessor
from referrals.programs.model import NotificationChannel
from referrals.streams.processor import Inbound, Output
from referrals.streams.state import Keyspace
from referrals.streams.timers import TimerIndex
from referrals.streams.waiting import Dependency, Waiting, WaitingLot, rerun
from services.notifications.adapters import outcomes, restart
from services.notifications.adapters.codec import OUTBOX_ENTRIES, STATES
from services.notifications.adapters.config import NotificationsSettings
from services.notifications.adapters.delivery import Delivery, Outcome, Sender
from services.notifications.adapters.failures import DEADLINE_EXCEEDED
from services.notifications.adapters.metrics import NotificationMetrics
from services.notifications.adapters.slots import urgent
from services.notifications.adapters.storage import (
    OUTBOX,
    PARKED,
    RETRIES,
    WAKEUPS,
    Journal,
    OutboxEntry,
    parse_retry_id,
    retry_id,
)
from services.notifications.adapters.tasks import TaskContext
from services.notifications.adapters.unsubscribe import UnsubscribeEndpoint
from services.notifications.domain import erasure, retry
from services.notifications.domain import plan as core
from services.notifications.domain.messages import Message, Plan
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
        self.policy = retry.RetryPolicy(
            base_ms=int(settings.retry_base_s * 1000),
            cap_ms=int(settings.retry_max_s * 1000),
            deadline_ms=int(settings.delivery_deadline_s * 1000),
        )
        self.rand: Callable[[], float] = random.random  # the jitter of retry waits
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
        self._carry_out(ctx, plan, now)

    def deleted(self, record: Inbound, now: datetime) -> Iterable[Output]:
        """A tombstone on the advocates topic erases the advocate, in this task's transaction:
        the state keeps no profile (`domain.erasure`), the cancelled messages' outbox entries
        and retry timers go, and so do the advocate's records waiting for their program (a
        waiting profile's bytes hold the address). The changelog's latest values hold no
        personal data once it commits."""
        if record.topic != ADVOCATES or record.key is None:
            return ()
        ctx = self._ctx(record.partition)
        advocate_id = record.key
        dropped = ctx.parked.discard(advocate_id)
        if dropped:
            self.stats.parked.dec(dropped)
        state = self.load_state(ctx.task, advocate_id)
        outbox = self.outbox(ctx.task)
        for notification_id in erasure.cancelled_outbox(state):
            key = notification_id.encode()
            raw = outbox.get(key)
            if raw is not None:
                for channel in OUTBOX_ENTRIES.decode(raw, key).channels:
                    ctx.retries.set(retry_id(notification_id, channel), None)
                outbox.delete(key)
        state, plan = erasure.on_erased(state, to_ms(now))
        self._save(ctx, state)
        self._carry_out(ctx, plan, now)
        self.after_commit(ctx.task, self.stats.erasures.inc)
        return ()

    # -- timers and recording -------------------------------------------------------------------
    def punctuate(self, task: int, now: datetime) -> Iterable[Output]:
        ctx = self._ctx(task)
        out: list[Output] = []
        out.extend(self._record(ctx, now))
        out.extend(self._unpark(ctx, now))
        out.extend(self._retry_due(ctx, now))
        # A failing timer or retry raises to the runtime, which aborts the task's transaction
        # (what `_save` wrote does not commit), reports `timers:task-N` not ready and runs the
        # timers again with backoff; caught here, a half-done tick committed and its timer
        # was dropped, or a retry waited for a rebalance with health green.
        for timer in ctx.wakeups.pop_due(to_ms(now), MAX_TICKS):
            self._tick(ctx, timer.id, now)
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
            self._carry_out(ctx, plan, now)

    def _record(self, ctx: TaskContext, now: datetime) -> list[Output]:
        """Records the outcomes the sender reported since the last punctuation."""
        out: list[Output] = []
        outbox = self.outbox(ctx.task)
        while ctx.outcomes:
            outcome = ctx.outcomes.popleft()
            ctx.in_flight.discard(retry_id(outcome.message.notification_id, outcome.channel))
            key = outcome.message.notification_id.encode()
            raw = outbox.get(key)
            entry = None if raw is None else OUTBOX_ENTRIES.decode(raw, key)
            if entry is None or outcome.channel not in entry.channels:
                continue  # recorded already (a resend's second outcome, a journal replay)
            ctx.recording.append(outcome)
            if outcome.retry:
                given_up = self._retry_later(ctx, entry, outcome, now)
                if given_up is None:
                    continue
                outcome = given_up
            elif not outcome.delivered:  # the attempts before this one count too
                earlier = entry.tries(outcome.channel).attempts
                outcome = replace(outcome, attempts=earlier + outcome.attempts)
            out.extend(self._settle(ctx, entry, outcome, now))
        return out

    def _retry_later(
        self, ctx: TaskContext, entry: OutboxEntry, outcome: Outcome, now: datetime
    ) -> Outcome | None:
        """A try failed for now: the next one is stored (None), or, past the deadline, the
        outcome to dead-letter."""
        message, channel = outcome.message, outcome.channel
        entry = entry.with_failure(channel, outcome.attempted, outcome.detail)
        tries = entry.tries(channel)
        first_due = to_ms(now) if entry.first_due_ms is None else entry.first_due_ms
        after = None if outcome.retry_after_s is None else int(outcome.retry_after_s * 1000)
        at = retry.next_try(self.policy, first_due, tries.tries, to_ms(now), self.rand(), after)
        if at is None:
            return self._expired(ctx, message, channel, tries.attempts, tries.error)
        entry = replace(entry, first_due_ms=first_due)
        self.outbox(ctx.task).put(message.notification_id.encode(), OUTBOX_ENTRIES.encode(entry))
        ctx.retries.set(retry_id(message.notification_id, channel), at)
        self.after_commit(ctx.task, self.stats.retries.labels(channel.value).inc)
        return None

    def _expired(
        self,
        ctx: TaskContext,
        message: Message,
        channel: NotificationChannel,
        attempts: int,
        detail: str,
    ) -> Outcome:
        ctx.expired += 1
        return Outcome(
            ctx.task,
            message,
            channel,
            attempts,
            None,
            DEADLINE_EXCEEDED,
            f"not delivered within {self.settings.delivery_deadline_s:g} s of being due; "
            f"last error: {detail or 'none'}"[:500],
        )

    def _settle(
        self, ctx: TaskContext, entry: OutboxEntry, outcome: Outcome, now: datetime
    ) -> list[Output]:
        """A channel's final outcome: its record (or dead letter), the outbox entry settled."""
        outbox = self.outbox(ctx.task)
        key = outcome.message.notification_id.encode()
        ctx.retries.set(retry_id(outcome.message.notification_id, outcome.channel), None)
        out = outcomes.to_output(ctx.task, outcome, now, self.stats)
        rest = entry.without(outcome.channel)
        if rest.channels:
            outbox.put(key, OUTBOX_ENTRIES.encode(rest))
            return out
        outbox.delete(key)
        state = self.load_state(ctx.task, entry.advocate_id)
        settle = core.on_delivered if outcome.delivered else core.on_dead_lettered
        self._save(ctx, settle(state, outcome.message.notification_id))
        return out

    def _retry_due(self, ctx: TaskContext, now: datetime) -> list[Output]:
        """Hands the due retries to the sender, as many as it has room for; dead-letters those
        past their deadline. The rest stay in the store until a later punctuation."""
        for timer_id in ctx.rearm:  # in flight when the previous owner stopped: try now
            if ctx.retries.due_ms(timer_id) is None and timer_id not in ctx.in_flight:
                ctx.retries.set(timer_id, to_ms(now))
        ctx.rearm.clear()
        room = self._room()
        out: list[Output] = []
        if room <= 0:
            return out
        for timer in ctx.retries.pop_due(to_ms(now), min(room, MAX_TICKS)):
            out.extend(self._retry_one(ctx, timer.id, now))  # a failure raises (see punctuate)
        if ctx.expired:
            log.warning(
                "deliveries passed their deadline: dead-lettered",
                extra={"task": ctx.task, "count": ctx.expired},
            )
            ctx.expired = 0
        return out

    def _retry_one(self, ctx: TaskContext, timer_id: str, now: datetime) -> list[Output]:
        notification_id, channel = parse_retry_id(timer_id)
        outbox = self.outbox(ctx.task)
        key = notification_id.encode()
        raw = outbox.get(key)
        entry = None if raw is None else OUTBOX_ENTRIES.decode(raw, key)
        if entry is None or channel not in entry.channels:
            return []  # settled meanwhile
        first_due = entry.first_due_ms
        if first_due is None:  # written before deadlines existed: due from now
            first_due = to_ms(now)
            entry = replace(entry, first_due_ms=first_due)
            outbox.put(key, OUTBOX_ENTRIES.encode(entry))
        program = self.programs.get(entry.program_id)
        if program is None:  # its config is gone for now: look again later
            ctx.retries.set(timer_id, to_ms(now) + self.policy.cap_ms)
            return []
        state = self.load_state(ctx.task, entry.advocate_id)
        unsent = core.unsent(state, program.document, now)
        message = next((m for m in unsent if m.notification_id == notification_id), None)
        if message is None:  # the advocate opted out meanwhile: nothing to send
            rest = entry.without(channel)
            if rest.channels:
                outbox.put(key, OUTBOX_ENTRIES.encode(rest))
            else:
                outbox.delete(key)
            return []
        if retry.expired(first_due, to_ms(now), self.policy):
            tries = entry.tries(channel)
            outcome = self._expired(ctx, message, channel, tries.attempts, tries.error)
            return self._settle(ctx, entry, outcome, now)
        ctx.staged += 1
        delivery = Delivery(ctx.task, message, program.document, (channel,))
        self.after_commit(ctx.task, partial(self._submit, delivery))
        return []

    def _room(self, urgent: bool = False) -> int:
        """How many more deliveries the sender may be handed (NOTIFICATIONS_MAX_IN_FLIGHT, and
        for a thank-you NOTIFICATIONS_URGENT_IN_FLIGHT more)."""
        used = sum(len(c.in_flight) + c.staged for c in self._tasks.values())
        limit = self.settings.max_in_flight
        return limit + self.settings.urgent_in_flight - used if urgent else limit - used

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

    def _carry_out(self, ctx: TaskContext, plan: Plan, now: datetime) -> None:
        outbox = self.outbox(ctx.task)
        for message in plan.messages:
            program_id = str(message.context["program_id"])
            program = self.programs.get(program_id)
            assert program is not None  # the core planned it with this program
            entry = OutboxEntry(message.advocate_id, program_id, message.channels, to_ms(now))
            outbox.put(message.notification_id.encode(), OUTBOX_ENTRIES.encode(entry))
            room = max(self._room(urgent(message)), 0)
            sending, waiting = message.channels[:room], message.channels[room:]
            for channel in waiting:  # the sender is full: tried once it has room
                ctx.retries.set(retry_id(message.notification_id, channel), to_ms(now))
            if sending:
                ctx.staged += len(sending)
                delivery = Delivery(ctx.task, message, program.document, sending)
                self.after_commit(ctx.task, partial(self._submit, delivery))
        for suppressed in plan.suppressed:
            self.after_commit(ctx.task, self.stats.suppressed.labels(suppressed.reason.value).inc)

    def _submit(self, delivery: Delivery) -> None:
        ctx = self._tasks.get(delivery.task)
        if ctx is None:
            return  # the task moved on: its new owner tries the outbox entry again
        nid = delivery.message.notification_id
        ctx.in_flight.update(retry_id(nid, channel) for channel in delivery.channels)
        self.sender.submit(delivery)

    # -- transactions ---------------------------------------------------------------------------
    def committed(self, task: int) -> None:
        super().committed(task)  # the staged sends and counts
        ctx = self._tasks.get(task)
        if ctx is None:
            return
        ctx.recording.clear()
        ctx.staged = 0
        self.stats.timers.set(sum(len(c.wakeups) for c in self._tasks.values()))
        self.stats.waiting.set(sum(len(c.retries) for c in self._tasks.values()))

    def aborted(self, task: int) -> None:
        super().aborted(task)  # nothing staged is sent or counted
        # The runtime rebuilds an aborted task (revoke, then assign): what was recorded in the
        # transaction goes back to be recorded again, or journaled on revoke.
        ctx = self._tasks.get(task)
        if ctx is None:
            return
        ctx.outcomes.extendleft(reversed(ctx.recording))
        ctx.recording.clear()
        ctx.staged = 0

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
            retries = TimerIndex(Keyspace(index, RETRIES))
            ctx = self._tasks[task] = TaskContext(task, wakeups, parked, retries)
        return ctx

    async def assign(self, tasks: frozenset[int]) -> None:
        now = self.clock()
        for task in sorted(tasks):
            self._tasks.pop(task, None)
            ctx = self._ctx(task)
            restart.resume(self, ctx, self.journal.take(task), now)
        self.stats.parked.set(sum(len(c.parked) for c in self._tasks.values()))
        self.stats.waiting.set(sum(len(c.retries) for c in self._tasks.values()))

    async def revoke(self, tasks: frozenset[int]) -> None:
        await self.sender.drain(tasks, self.settings.shutdown_grace_s)
        for task in sorted(tasks):
            ctx = self._tasks.pop(task, None)
            if ctx is not None:
                # Failures for now are not journaled: the entry is tried again on assignment.
                final = [o for o in [*ctx.recording, *ctx.outcomes] if not o.retry]
                self.journal.write(task, outcomes.to_journal(final))

    async def startup(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.start()

    def health_detail(self) -> dict[str, object]:
        """Destinations down now and the messages waiting in state for a retry."""
        return {
            "destinations_down": self.sender.down(),
            "waiting_messages": sum(len(c.retries) for c in self._tasks.values()),
        }

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
