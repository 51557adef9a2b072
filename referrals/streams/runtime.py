"""The stream runtime every service runs on: consume, decode, process, produce, commit.

Exactly-once by construction (Kafka Streams' model, built on aiokafka):
- Task p is partition p of every input topic (all topics share one partition count; the
  co-partitioned assignor keeps a task on one member). Each task has its own transactional
  producer, `transactional_id = <group>-<p>`: starting it fences any zombie owner of the task
  and aborts its open transaction.
- Each poll's records are grouped by task; per task, the outputs, the dead letters and the
  consumed offsets go out in ONE transaction. Many records share a transaction, so throughput
  does not pay a commit per record.
- Inputs are read `read_committed`; a batch fetched before a rebalance is dropped (its records
  will be fetched again from the committed offsets), and rebalance callbacks wait for the
  in-flight transaction to finish (a lock).
- Bad input (PermanentError) goes to `<topic>.dlq` in the same transaction and the task moves
  on. A failed transaction is aborted, the task's state is rebuilt and its partitions rewound
  to the committed offsets. A fenced producer means another member owns the task: the process
  stops with an error rather than fight it.

Beside it: global tables (`globals`), state stores and their changelogs (`state`, `stores`),
the processor port (`processor`), topics and key checks (`topics`), dead letters (`dlq`).
Waiting, timers and after-commit effects (`waiting`, `timers`, `effects`) are used by the
processors inside their transactions; the runtime needs to know nothing of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from referrals.platform.errors import ConfigError, PermanentError
from referrals.platform.metrics import Health, RuntimeMetrics
from referrals.platform.settings import KafkaSettings, ServiceSettings
from referrals.streams.assignor import CopartitionedAssignor
from referrals.streams.dlq import dead_letter
from referrals.streams.globals import GlobalTables
from referrals.streams.kafka import make_admin, make_consumer, make_producer, partitions_of
from referrals.streams.processor import DeadLetterOut, Inbound, Output, Processor
from referrals.streams.serde import Codec
from referrals.streams.state import TaskStore
from referrals.streams.stores import StoreManager, changelog_topic
from referrals.streams.topics import (
    ANY_RECORD,
    Catalogue,
    Role,
    TopicNames,
    check_key,
    create_named_topics,
)

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
MAX_CONSECUTIVE_FAILURES = 5


def utc_now() -> datetime:
    return datetime.now(UTC)


class FatalRuntimeError(Exception):
    """The runtime cannot continue safely (e.g. its producer was fenced)."""


@dataclass(frozen=True, slots=True)
class _Pending:
    topic: str  # physical
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    partition: int | None = None  # changelog entries go to their task's partition


@dataclass(frozen=True, slots=True)
class _Consumed:
    """The parts of a consumed record a dead letter needs (for one sent after the fact)."""

    key: bytes | None
    value: bytes | None
    offset: int
    timestamp: int


class StreamRuntime:
    def __init__(
        self,
        processor: Processor,
        *,
        kafka: KafkaSettings,
        settings: ServiceSettings,
        codec: Codec,
        catalogue: Catalogue,
        metrics: RuntimeMetrics,
        health: Health,
        clock: Clock = utc_now,
    ) -> None:
        self.p = processor
        self.kafka = kafka
        self.settings = settings
        self.codec = codec
        self.catalogue = catalogue
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.names = TopicNames(kafka.topic_prefix)
        self.group_id = settings.group_id or f"referrals-{processor.name}"
        self._lock = asyncio.Lock()
        self._generation = 0
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._globals: GlobalTables | None = None
        self._failures = 0
        self._last_punctuate = 0.0
        self._positions: dict[TopicPartition, int] = {}  # next offset to consume, per partition
        self._stores: StoreManager | None = None
        self._closing = False
        self._timers_disabled: set[int] = set()
        self._restore_consumer: AIOKafkaConsumer | None = None
        self.p.task_stores = {}

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        follower: asyncio.Task[None] | None = None
        try:
            if self.p.globals:
                self._globals = GlobalTables(
                    self.p,
                    self.kafka,
                    client_id=f"{self.p.name}-{self.settings.instance_id}",
                    names=self.names,
                    catalogue=self.catalogue,
                    codec=self.codec,
                    metrics=self.metrics,
                    clock=self.clock,
                    dead_letter=self._dead_letter,
                )
                await self._globals.bootstrap()
                follower = asyncio.create_task(self._globals.follow(stop))
            partitions = await self._check_copartitioned()
            await self._prepare_state(partitions)
            self._consumer = make_consumer(
                self.kafka,
                group_id=self.group_id,
                client_id=f"{self.p.name}-{self.settings.instance_id}",
                partition_assignment_strategy=(CopartitionedAssignor,),
                session_timeout_ms=self.settings.session_timeout_ms,
                heartbeat_interval_ms=max(1000, self.settings.session_timeout_ms // 4),
            )
            topics = [self.names(t) for t in self.p.inputs]
            self._consumer.subscribe(topics, listener=_Listener(self))
            await self.p.startup()
            await self._consumer.start()
            self.health.ready = True
            await self._loop(stop)
        finally:
            self.health.ready = False
            if follower is not None:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
            await self._shutdown()

    async def _shutdown(self) -> None:
        async with self._lock:
            self._closing = True  # a rebalance finishing during shutdown opens no new tasks
            await self._flush_tasks()
            await self._close_tasks(frozenset(self._producers), checkpoint=True)
        for client in (self._consumer, self._restore_consumer):
            if client is not None:
                await client.stop()
        if self._globals is not None:
            await self._globals.close()
        for producer in list(self._producers.values()):  # opened while the consumer stopped
            await producer.stop()
        self._producers.clear()
        await self.p.shutdown()

    async def _flush_tasks(self) -> None:
        """Runs every owned task's timers and commits what they produce (a processor may hold
        results, e.g. accepted deliveries, that must be recorded before the task moves)."""
        for task in sorted(self._producers):
            try:
                await self._run_task(task, [], due=True)
            except Exception:  # the task is leaving anyway; what was not recorded is redone
                log.exception("final flush failed", extra={"task": task})

    async def _loop(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None
        stop_wait = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self.health.tick()
                generation = self._generation
                fetch = asyncio.create_task(
                    self._consumer.getmany(
                        timeout_ms=self.settings.poll_timeout_ms,
                        max_records=self.settings.max_batch,
                    )
                )
                await asyncio.wait({fetch, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    await asyncio.gather(fetch, return_exceptions=True)
                    break
                batch = fetch.result()
                async with self._lock:
                    if generation != self._generation:
                        self._rewind(batch)  # fetched across a rebalance: fetch it again
                        continue
                    await self._process_batch(batch)
                self._update_lag()
        finally:
            stop_wait.cancel()

    def _rewind(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Seeks back to the first record of a dropped batch. The consumer's position already
        moved past it; without this the records would be skipped until the next restart."""
        assert self._consumer is not None
        owned = self._consumer.assignment()
        for tp, messages in batch.items():
            if messages and tp in owned:
                self._consumer.seek(tp, messages[0].offset)

    # -- processing -----------------------------------------------------------------------------
    async def _process_batch(self, batch: dict[TopicPartition, list[Any]]) -> None:
        by_task: dict[int, list[tuple[TopicPartition, Any]]] = defaultdict(list)
        for tp, messages in batch.items():
            if tp.partition in self._producers:
                by_task[tp.partition].extend((tp, m) for m in messages)
        due = time.monotonic() - self._last_punctuate >= self.settings.punctuate_ms / 1000
        if due:
            self._last_punctuate = time.monotonic()
        tasks = set(by_task) | (set(self._producers) if due else set())
        if not tasks:
            return
        results = await asyncio.gather(
            *(self._run_task(t, by_task.get(t, []), due) for t in sorted(tasks)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, FatalRuntimeError):
                raise result
            if isinstance(result, BaseException):
                raise result

    async def _run_task(
        self, task: int, messages: list[tuple[TopicPartition, Any]], due: bool
    ) -> None:
        now = self.clock()
        pending: list[_Pending] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, msg in messages:
            offsets[tp] = msg.offset + 1
            pending.extend(self._handle(tp, msg, now))
        if due and task not in self._timers_disabled:
            try:
                pending.extend(self._encode(self.p.punctuate(task, now)))
            except Exception:
                # A timer bug must neither stop the service nor commit half a batch: abort the
                # task's work, rebuild it, and run it without timers (loudly) from now on.
                log.exception(
                    "punctuate failed; timers disabled for the task", extra={"task": task}
                )
                self.metrics.transactions.labels("punctuate_error").inc()
                self._timers_disabled.add(task)
                self.health.detail["timers_disabled_tasks"] = sorted(self._timers_disabled)
                self._finish_stores(task, committed=False)
                await self._recover(task)
                return
        pending.extend(self._changelog_entries(task))
        if not pending and not offsets:
            return
        await self._commit(task, pending, offsets, len(messages))

    def _handle(self, tp: TopicPartition, msg: Any, now: datetime) -> list[_Pending]:
        """One record: its outputs, or its dead letter with its store writes undone."""
        stores = list(self.p.task_stores.get(tp.partition, {}).values())
        for store in stores:
            store.begin_record()
        outputs = self._handle_record(tp, msg, now, stores)
        for store in stores:
            store.end_record()
        return outputs

    def _handle_record(
        self, tp: TopicPartition, msg: Any, now: datetime, stores: list[TaskStore]
    ) -> list[_Pending]:
        logical = self.names.logical(tp.topic)
        self.metrics.records_in.labels(logical).inc()
        spec = self.catalogue.spec_for(logical)
        try:
            expected = None if spec.record == ANY_RECORD else spec.record
            record = self.codec.decode(msg.value, expected) if msg.value is not None else None
            if record is None:
                raise PermanentError("record has no value (a tombstone)", reason="TOMBSTONE")
            if spec.role is Role.INPUT:
                self.catalogue.validate(record, now)
            key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
            if logical in self.p.keyed_inputs:
                check_key(spec, key, record)
            inbound = Inbound(
                logical, tp.partition, msg.offset, key, record, msg.timestamp, msg.key, msg.value
            )
            return self._encode(self.p.process(inbound, now))
        except PermanentError as err:
            for store in stores:
                store.undo_record()
            return [self._dead_letter(tp, msg, err)]
        except Exception as err:  # a bug must not stop every other record: DLQ it, loudly
            log.exception("processing failed", extra={"topic": tp.topic, "offset": msg.offset})
            for store in stores:
                store.undo_record()
            return [self._dead_letter(tp, msg, err)]

    def _changelog_entries(self, task: int) -> list[_Pending]:
        out: list[_Pending] = []
        for name, store in self.p.task_stores.get(task, {}).items():
            topic = self.names(changelog_topic(self.p.name, name))
            out.extend(_Pending(topic, k, v, partition=task) for k, v in store.changes())
        return out

    def _finish_stores(self, task: int, *, committed: bool) -> None:
        for store in self.p.task_stores.get(task, {}).values():
            if committed:
                store.commit()
            else:
                store.abort()
        if committed:
            self.p.committed(task)
        else:
            self.p.aborted(task)

    def _dead_letter(self, tp: TopicPartition, msg: Any, err: BaseException) -> _Pending:
        """The DLQ entry for consumed record `msg` (anything with key/value/offset/timestamp)."""
        dl = dead_letter(
            service=self.p.name,
            topic=tp.topic,
            partition=tp.partition,
            offset=msg.offset,
            timestamp_ms=msg.timestamp,
            key=msg.key,
            value=msg.value,
            error=err,
        )
        reason = dict(dl.headers)["dlq.error.reason"].decode()
        self.metrics.dead_letters.labels(self.names.logical(tp.topic), reason).inc()
        log.warning(
            "dead-lettered",
            extra={
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": msg.offset,
                "reason": reason,
                "error": str(err)[:300],
            },
        )
        return _Pending(dl.topic, dl.key, dl.value, dl.headers)

    def _encode(self, outputs: Iterable[Output]) -> list[_Pending]:
        out = []
        for o in outputs:
            if isinstance(o, DeadLetterOut):
                r = o.record
                tp = TopicPartition(self.names(r.topic), r.partition)
                late = _Consumed(r.raw_key, r.raw_value, r.offset, r.timestamp_ms)
                out.append(self._dead_letter(tp, late, o.error))
                continue
            out.append(_Pending(self.names(o.topic), o.key.encode(), self.codec.encode(o.value)))
            self.metrics.records_out.labels(o.topic).inc()
        return out

    async def _commit(
        self,
        task: int,
        pending: list[_Pending],
        offsets: dict[TopicPartition, int],
        n_in: int,
    ) -> None:
        producer = self._producers[task]
        started = time.perf_counter()
        try:
            await producer.begin_transaction()
            for item in pending:
                await producer.send(
                    item.topic,
                    item.value,
                    key=item.key,
                    headers=list(item.headers),
                    partition=item.partition,
                )
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.group_id)
            await producer.commit_transaction()
        except ProducerFenced as err:
            self._finish_stores(task, committed=False)
            self.metrics.transactions.labels("fenced").inc()
            raise FatalRuntimeError(f"task {task}: producer fenced by another owner") from err
        except (TimeoutError, KafkaError, OSError) as err:
            self._finish_stores(task, committed=False)
            self.metrics.transactions.labels("abort").inc()
            log.warning(
                "transaction failed; rewinding task", extra={"task": task, "error": repr(err)}
            )
            await self._recover(task)
            return
        self._finish_stores(task, committed=True)
        self._failures = 0
        self._positions.update(offsets)
        self.metrics.transactions.labels("commit").inc()
        self.metrics.batch_records.observe(n_in)
        self.metrics.commit_seconds.observe(time.perf_counter() - started)

    async def _recover(self, task: int) -> None:
        """Abort, rebuild the task's state and rewind it to its committed offsets."""
        self._failures += 1
        if self._failures > MAX_CONSECUTIVE_FAILURES:
            raise FatalRuntimeError(f"task {task}: {self._failures} transactions failed in a row")
        await asyncio.sleep(min(0.1 * 2**self._failures, 5.0))  # exponential backoff
        # The transaction's outcome is unknown: rebuild the task's state from its changelog.
        await self._close_tasks(frozenset({task}), checkpoint=False)
        await self._open_tasks(frozenset({task}))
        assert self._consumer is not None
        for tp in self._consumer.assignment():
            if tp.partition == task:
                committed = await self._consumer.committed(tp)
                if committed is None:
                    await self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, committed)
        self._generation += 1

    # -- tasks ----------------------------------------------------------------------------------
    async def _open_tasks(self, tasks: frozenset[int]) -> None:
        for task in sorted(tasks):
            producer = make_producer(
                self.kafka,
                client_id=f"{self.p.name}-{self.settings.instance_id}-t{task}",
                transactional_id=f"{self.group_id}-{task}",
            )
            await producer.start()  # InitProducerId: fences a zombie owner, aborts its txn
            self._producers[task] = producer
        if self._stores is not None and tasks:  # after fencing: no zombie writes a changelog
            await self._stores.open_tasks(tasks)
        if tasks:
            await self.p.assign(tasks)
        self.metrics.assigned.set(len(self._producers))

    async def _close_tasks(self, tasks: frozenset[int], *, checkpoint: bool = True) -> None:
        if tasks:
            await self.p.revoke(tasks)
        for task in tasks:
            if self._stores is not None:
                await self._stores.close_task(task, checkpoint=checkpoint)
            producer = self._producers.pop(task, None)
            if producer is not None:
                await producer.stop()
        self.metrics.assigned.set(len(self._producers))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            if self._closing:
                return
            wanted = frozenset(tp.partition for tp in assigned)
            owned = frozenset(self._producers)
            await self._close_tasks(owned - wanted)
            await self._open_tasks(wanted - owned)
            self._generation += 1
            log.info("tasks assigned", extra={"tasks": sorted(wanted)})

    # -- checks and metrics ---------------------------------------------------------------------
    async def _prepare_state(self, partitions: int) -> None:
        """Creates the service's internal topics and changelogs; sets up store restores."""
        for spec in self.p.internal_topics:
            self.catalogue.register(spec)
        changelogs = {s: self.names(changelog_topic(self.p.name, s)) for s in self.p.stores}
        wanted: dict[str, dict[str, str]] = {self.names(s.name): {} for s in self.p.internal_topics}
        wanted |= {t: {"cleanup.policy": "compact"} for t in changelogs.values()}
        if not wanted:
            return
        admin = make_admin(self.kafka, f"{self.p.name}-setup")
        await admin.start()
        try:
            await create_named_topics(admin, wanted, partitions=partitions)
        finally:
            await admin.close()
        if self.p.stores:
            self._restore_consumer = make_consumer(
                self.kafka,
                client_id=f"{self.p.name}-{self.settings.instance_id}-restore",
                fetch_max_wait_ms=50,  # restores run inside the rebalance: never idle-wait long
            )
            await self._restore_consumer.start()
            self._stores = StoreManager(
                processor=self.p.name,
                stores=self.p.stores,
                physical=changelogs,
                state_dir=self.settings.state_dir / self.group_id,
                backend=self.settings.state_backend,
                consumer=self._restore_consumer,
            )
            self.p.task_stores = self._stores.open

    async def _check_copartitioned(self) -> int:
        consumer = make_consumer(self.kafka, client_id=f"{self.p.name}-check")
        await consumer.start()
        try:
            counts = {t: len(await partitions_of(consumer, self.names(t))) for t in self.p.inputs}
        finally:
            await consumer.stop()
        if len(set(counts.values())) > 1:
            raise ConfigError(
                f"input topics must have equal partition counts to be processed as tasks: {counts}"
            )
        return next(iter(counts.values()), 1)

    def _update_lag(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        lag: dict[str, int] = defaultdict(int)
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            position = self._positions.get(tp)
            if high is not None and position is not None:
                lag[self.names.logical(tp.topic)] += max(0, high - position)
        for topic, value in lag.items():
            self.metrics.lag.labels(topic).set(value)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: StreamRuntime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Waits for the in-flight transaction, then flushes every task's timers while this
        # member still owns them (no other member can have fenced our producers yet). Tasks
        # are closed lazily in on_partitions_assigned, so a task that stays keeps its state.
        async with self.runtime._lock:
            self.runtime._generation += 1
            await self.runtime._flush_tasks()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.runtime.on_assigned(assigned)
