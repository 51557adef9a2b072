"""Global tables: compacted topics every instance reads whole at start-up, then follows.

Program configs (and, for attribution, shares and profiles) are needed by every task, so each
instance reads all their partitions outside any consumer group. `bootstrap` reads them to their
end before the runtime processes any input; `follow` then applies new records as they come. A
processor keeping a durable copy says where to resume (`Processor.global_start`) and is told how
far it got (`global_position`) and how far behind the partition's end it still is
(`global_behind`: a processor that decides by event time can wait while a global table lags
its inputs). A bad record is dead-lettered directly: there is no transaction
to join outside a group. A record re-read at start-up that this service already dead-lettered
(found on the `.dlq` by its original coordinates and `dlq.service`) is not dead-lettered again,
so restarts add no copies; instances following the table together may still each report a new
bad record once, and DLQ readers de-duplicate by `dlq.original.*`.

The follower is supervised: any failure (a dead letter that cannot be sent, the broker gone)
reports a `globals` problem to Health (readiness false), rewinds to the first record not yet
handled and tries again with backoff; applying a record twice is harmless (tables are upserts).
A tombstone (null value) is handed to `Processor.on_global_deleted`: the key was deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from referrals.platform.errors import ConfigError, PermanentError
from referrals.platform.metrics import Health, RuntimeMetrics
from referrals.platform.settings import KafkaSettings
from referrals.streams.backoff import Backoff
from referrals.streams.dlq import header_dict
from referrals.streams.kafka import (
    BOUNDED_FETCH,
    FetchPacing,
    make_consumer,
    make_producer,
    partitions_of,
    stop_quietly,
)
from referrals.streams.processor import Processor
from referrals.streams.produce import Sendable
from referrals.streams.serde import Codec
from referrals.streams.topics import Catalogue, TopicNames, dlq_of

log = logging.getLogger(__name__)


DeadLetterOf = Callable[[TopicPartition, Any, BaseException], Sendable]


class GlobalTables:
    def __init__(
        self,
        processor: Processor,
        kafka: KafkaSettings,
        *,
        client_id: str,
        names: TopicNames,
        catalogue: Catalogue,
        codec: Codec,
        metrics: RuntimeMetrics,
        clock: Callable[[], datetime],
        dead_letter: DeadLetterOf,
        health: Health | None = None,
    ) -> None:
        self.p = processor
        self.kafka = kafka
        self.client_id = client_id
        self.names = names
        self.catalogue = catalogue
        self.codec = codec
        self.metrics = metrics
        self.clock = clock
        self.dead_letter = dead_letter
        self.health = health or Health()
        self._next: dict[TopicPartition, int] = {}  # first offset not yet handled
        self._bootstrapping = False
        # Partitions reported behind their end, and by how much, until they catch up.
        self._lagging: dict[TopicPartition, int] = {}
        self._reported: dict[str, set[tuple[int, int]]] = {}  # topic -> dead-lettered (p, off)
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq_producer: AIOKafkaProducer | None = None

    async def bootstrap(self) -> None:
        """Reads every global topic to its end (its last committed record) before any input."""
        self._consumer = consumer = make_consumer(
            self.kafka, client_id=f"{self.client_id}-globals", **BOUNDED_FETCH
        )
        await consumer.start()
        parts: list[TopicPartition] = []
        for topic in self.p.globals:
            parts += await partitions_of(consumer, self.names(topic))
        consumer.assign(parts)
        for topic in self.p.globals:
            self.metrics.global_lag.labels(topic).set(0)
        for tp in parts:  # resume where the processor's own durable copy says it is
            start = self.p.global_start(self.names.logical(tp.topic), tp.partition)
            if start is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, start)
        self._bootstrapping = True
        try:
            async for batch in _to_end(consumer, parts):
                await self._apply(batch)
        finally:
            self._bootstrapping = False
            self._reported.clear()
        log.info("global topics loaded", extra={"topics": list(self.p.globals)})

    async def follow(self, stop: asyncio.Event) -> None:
        """Applies new records until `stop` is set; failures are retried, never fatal."""
        consumer = self._consumer
        assert consumer is not None, "bootstrap first"
        pacing = FetchPacing(consumer)
        backoff = Backoff(0.5, 30.0)
        while not stop.is_set():
            batch: dict[TopicPartition, list[Any]] = {}
            try:
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                pacing.observe(sum(map(len, batch.values())))
                await self._apply(batch)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # supervised: reported, retried
                if self.health.problem("globals", f"following global tables: {err!r}"):
                    log.exception("following global tables failed; retrying")
                for tp, messages in batch.items():  # what was fetched, not handled, comes again
                    if messages:
                        consumer.seek(tp, max(self._next.get(tp, 0), messages[0].offset))
                await asyncio.sleep(backoff.next())
                continue
            if backoff.failures:
                backoff.reset()
                self.health.resolved("globals")

    async def close(self) -> None:
        for client in (self._consumer, self._dlq_producer):
            if client is not None:
                await stop_quietly(client)

    async def _apply(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, messages in batch.items():
            logical = self.names.logical(tp.topic)
            spec = self.catalogue.spec_for(logical)
            for msg in messages:
                self.metrics.records_in.labels(logical).inc()
                key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
                try:
                    if msg.value is None:  # a tombstone: the key is deleted (an erasure)
                        if key is not None:
                            self.p.on_global_deleted(logical, key)
                        self._next[tp] = msg.offset + 1
                        continue
                    record = self.codec.decode(msg.value, spec.record)
                    self.catalogue.validate(record, self.clock())
                    self.p.on_global(logical, key, record)
                except PermanentError as err:
                    await self._dead_letter_direct(tp, msg, err)
                except Exception as err:  # a bug must not silently stop following the table
                    log.exception("global record failed", extra={"topic": tp.topic})
                    await self._dead_letter_direct(tp, msg, err)
                self._next[tp] = msg.offset + 1
            if messages:
                self.p.global_position(logical, tp.partition, messages[-1].offset + 1)
        await self._report_behind([tp for tp, ms in batch.items() if ms])

    async def _report_behind(self, fetched: list[TopicPartition]) -> None:
        """Tells the processor how far each partition just read, or reported behind before, is
        from its last stable offset as the last fetch answer gave it."""
        consumer = self._consumer
        if consumer is None:
            return
        for tp in sorted({*fetched, *self._lagging}):
            end = consumer.last_stable_offset(tp)
            if end is None or end < 0:  # not known yet (no fetch answer for it)
                continue
            behind = max(0, end - await consumer.position(tp))
            logical = self.names.logical(tp.topic)
            if behind:
                self._lagging[tp] = behind
            elif self._lagging.pop(tp, None) is None:
                continue  # caught up before as now: nothing to tell
            self.metrics.global_lag.labels(logical).set(
                sum(n for t, n in self._lagging.items() if t.topic == tp.topic)
            )
            self.p.global_behind(logical, tp.partition, behind)

    async def _dead_letter_direct(self, tp: TopicPartition, msg: Any, err: BaseException) -> None:
        if self._bootstrapping and (tp.partition, msg.offset) in await self._dead_already(tp.topic):
            return  # reported by an earlier start of this service
        if self._dlq_producer is None:
            self._dlq_producer = make_producer(self.kafka, client_id=f"{self.p.name}-dlq")
            await self._dlq_producer.start()
        item = self.dead_letter(tp, msg, err)
        await self._dlq_producer.send_and_wait(
            item.topic, item.value, key=item.key, headers=list(item.headers)
        )

    async def _dead_already(self, topic: str) -> set[tuple[int, int]]:
        """(partition, offset) of `topic`'s records this service has dead-lettered, read from
        the `.dlq` once per start-up, and only when a bad record is met."""
        if topic not in self._reported:
            dlq = dlq_of(topic)
            consumer = make_consumer(
                self.kafka, client_id=f"{self.client_id}-dlq-check", read_committed=False
            )
            found: set[tuple[int, int]] = set()
            try:
                await consumer.start()
                parts = await partitions_of(consumer, dlq)
                consumer.assign(parts)
                await consumer.seek_to_beginning(*parts)
                async for batch in _to_end(consumer, parts):
                    for message in (m for ms in batch.values() for m in ms):
                        h = header_dict(message.headers)
                        if (
                            h.get("dlq.service") == self.p.name
                            and h.get("dlq.original.topic") == topic
                        ):
                            found.add(
                                (int(h["dlq.original.partition"]), int(h["dlq.original.offset"]))
                            )
            except ConfigError:  # no .dlq topic: nothing was reported there
                pass
            finally:
                await stop_quietly(consumer)
            self._reported[topic] = found
        return self._reported[topic]


async def _to_end(
    consumer: AIOKafkaConsumer, parts: list[TopicPartition]
) -> AsyncIterator[dict[TopicPartition, list[Any]]]:
    """The batches of the assigned `parts` from their positions to their ends as of now."""
    end = await consumer.end_offsets(parts)
    while await _behind(consumer, parts, end):
        yield await consumer.getmany(timeout_ms=200, max_records=5000)


async def _behind(
    consumer: AIOKafkaConsumer, parts: list[TopicPartition], end: dict[TopicPartition, int]
) -> bool:
    for tp in parts:
        if await consumer.position(tp) < end[tp]:
            return True
    return False
