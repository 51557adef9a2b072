"""The port between a service's logic and the stream runtime.

A processor receives typed records and returns the records to produce; it never touches Kafka.
The runtime (`referrals.streams.runtime`) decodes, calls it, and writes its outputs together
with the consumed offsets in one Kafka transaction per task."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from referrals.platform.errors import PermanentError
from referrals.streams.effects import AfterCommit, E, Effect
from referrals.streams.state import TaskStore
from referrals.streams.topics import TopicSpec


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str  # logical topic name
    partition: int
    offset: int
    key: str | None
    value: Any  # the decoded record (the application's type; the runtime never looks inside)
    timestamp_ms: int
    raw_key: bytes | None = None  # the bytes as consumed, for a dead letter sent later
    raw_value: bytes | None = None


@dataclass(frozen=True, slots=True)
class Outbound:
    topic: str  # logical topic name
    key: str
    value: Any  # the decoded record (the application's type; the runtime never looks inside)
    # A consumed record forwarded unchanged (a re-key): its bytes as consumed (the Inbound's
    # raw_value), written as they are rather than encoded again; and a task of this process
    # handed the record in the same cycle takes `value` rather than decoding them. Only where
    # `value` is what those bytes decode to.
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterOut:
    """Send an input record to its topic's .dlq now (e.g. its program never arrived)."""

    record: Inbound
    error: PermanentError


Output = Outbound | DeadLetterOut


class Processor:
    """Base processor: override what the service needs. Tasks are input partition numbers."""

    name: str = "processor"
    inputs: tuple[str, ...] = ()
    # Compacted topics every instance reads whole at start-up, then follows (e.g. program
    # configs). Inputs are not processed before these are read to their end.
    globals: tuple[str, ...] = ()
    # Durable key-value stores per task, each backed by a changelog (`referrals.streams.stores`).
    stores: tuple[str, ...] = ()
    # Topics only this service uses (e.g. a re-keyed copy of an input); created at start-up.
    internal_topics: tuple[TopicSpec, ...] = ()
    # Inputs whose every record must be keyed by its spec's `key_field` (the task that owns a
    # key owns all its state, so a record keyed otherwise would split it across tasks). The
    # runtime dead-letters a mismatch with reason KEY_MISMATCH before `process` sees it.
    keyed_inputs: tuple[str, ...] = ()
    # Internal topics (inputs too, one partition per task) whose records the runtime may hand
    # straight to their task in the transaction that made them, when the task is open here,
    # rather than write them and fetch them back (`referrals.streams.loopback`). The record
    # then reaches `process` with offset -1.
    loopback: tuple[str, ...] = ()
    # Set by the runtime: task -> store name -> store.
    task_stores: dict[int, dict[str, TaskStore]]

    def store(self, task: int, name: str) -> TaskStore:
        """This task's store `name`; its writes commit with the task's transaction."""
        return self.task_stores[task][name]

    @contextmanager
    def unit_of_work(self, task: int) -> Iterator[None]:
        """The task's store writes inside the block are undone if it raises: one timer's work,
        say, that a caller catches to go on with the next one must not leave half of itself to
        commit with the rest. Not for use inside `process` (the runtime journals each record)."""
        stores = list(self.task_stores.get(task, {}).values())
        for store in stores:
            store.begin_record()
        try:
            yield
        except BaseException:
            for store in stores:
                store.undo_record()
            raise
        for store in stores:
            store.end_record()

    def on_global(self, topic: str, key: str | None, record: Any) -> None:
        """A record of a global topic arrived (in order, per partition)."""

    def on_global_deleted(self, topic: str, key: str) -> None:
        """A tombstone of a global topic arrived (in order, per partition): the key was
        deleted, e.g. an advocate's erasure. Ignored unless the processor keeps that table."""

    def global_start(self, topic: str, partition: int) -> int | None:
        """Where to start reading a global topic's partition (None: from the beginning). A
        processor keeping a durable copy of a global table returns the offset it holds."""
        return None

    def global_position(self, topic: str, partition: int, next_offset: int) -> None:
        """Records of a global topic partition up to `next_offset` have been handed over."""

    def global_behind(self, topic: str, partition: int, offsets: int) -> None:
        """The follower knows of `offsets` more committed offsets on a global topic partition
        than it has handed over (its last stable offset less its position). Told after each
        batch while the partition is behind, and once with 0 when it caught up."""

    @cached_property
    def effects(self) -> AfterCommit:
        """The effects staged per task until its transaction's outcome (`effects`)."""
        return AfterCommit()

    def after_commit(self, task: int, effect: Effect) -> None:
        """Runs `effect` once the task's open transaction commits, never if it aborts: for side
        effects a replay must not repeat (counting a metric, sending an email)."""
        self.effects.stage(task, effect)

    def after_commit_once(self, task: int, key: Hashable, factory: Callable[[], E]) -> E:
        """The effect staged under `key` for the task's open transaction (`factory()` staged if
        none is yet): one effect many records add to, e.g. a tally of counters."""
        return self.effects.once(task, key, factory)

    def committed(self, task: int) -> None:
        """The task's transaction committed: its outputs and store writes are durable; runs the
        effects staged for it. An override calls `super().committed(task)`."""
        self.effects.commit(task)

    def aborted(self, task: int) -> None:
        """The task's transaction was aborted: drops the effects staged for it. An override
        calls `super().aborted(task)`."""
        self.effects.abort(task)

    def health_detail(self) -> dict[str, object]:
        """Small JSON values shown on the health endpoints (refreshed every few seconds), e.g.
        which destinations are down and how many messages wait for them."""
        return {}

    async def startup(self) -> None:
        """After global tables are loaded and before any task: start helpers (servers,
        senders) the processor owns. A broker error (`KafkaError`, `OSError`, `TimeoutError`)
        has it called again after a backoff, so one that raises leaves nothing started."""

    async def shutdown(self) -> None:
        """Once, after every task closed: stop what startup started."""

    async def assign(self, tasks: frozenset[int]) -> None:
        """These tasks are now ours: restore their state before records arrive."""

    async def revoke(self, tasks: frozenset[int]) -> None:
        """These tasks are no longer ours: drop their state."""

    def process(self, record: Inbound, now: datetime) -> Iterable[Output]:
        """Handles one input record; raise a PermanentError for bad input (it goes to the DLQ)."""
        return ()

    def deleted(self, record: Inbound, now: datetime) -> Iterable[Output]:
        """A tombstone on a compacted input (`record.value` is None): the key was deleted, e.g.
        an advocate's erasure request. Ignored unless the processor keeps that table."""
        return ()

    def punctuate(self, task: int, now: datetime) -> Iterable[Output]:
        """Called about once a second per task: emit what has become due by the wall clock."""
        return ()
