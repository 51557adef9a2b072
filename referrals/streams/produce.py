"""A cycle's records sent as one batch per partition (aiokafka's `create_batch`/`send_batch`).

`AIOKafkaProducer.send` does, for every record: a metadata lookup that copies the topic's
partitions into a set, the partitioner's two more copies of them (all and available), a check
of the transaction, serializers, and a future of its own that the delivery resolves. For a
transaction's worth of records that is most of the producer's CPU in every service (7.6% of
rewards' samples in the all-WON blast, a fifth of it building those sets). Here the topic's
partitions are read once per call, each record is appended to its partition's batch in order
(the Kafka partition of a keyed record as `KeyPartitioner` picks it), and each batch is handed
over whole: one future per batch, and a record's offset is the batch's base offset plus the
record's place in it, as the broker assigns them.

A batch that fills (`max_batch_size`) is sent and another begun for the same partition;
aiokafka then waits for the first to be drained before queueing the next, as `send` does. The
order of records within a partition is the order given; across partitions there is none, as
with `send`. Nothing here changes what a transaction holds: `send_batch` adds the partition to
it as `send` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaProducer

from referrals.streams.murmur import KeyPartitioner

_PARTITIONER = KeyPartitioner()


class Sendable(Protocol):
    """A record ready to produce (an output, a dead letter)."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class Record(Sendable, Protocol):
    """What `send_all` sends (the runtime's pending outputs are such records)."""

    @property
    def partition(self) -> int | None:  # None: by key, as `KeyPartitioner` picks
        ...


class Sent(NamedTuple):
    """Where one record lands: its batch's delivery and its place in the batch."""

    batch: asyncio.Future[Any]  # resolves to the batch's RecordMetadata (its base offset)
    relative: int  # the record's offset within its batch

    @property
    def topic(self) -> str:
        return str(self.batch.result().topic)

    @property
    def partition(self) -> int:
        return int(self.batch.result().partition)

    @property
    def offset(self) -> int:
        """The record's offset; only once the batch is delivered (after flush or commit)."""
        return int(self.batch.result().offset) + self.relative


async def send_all(producer: AIOKafkaProducer, records: Sequence[Record]) -> list[Sent]:
    """Queues `records` for delivery, a batch per partition; their `Sent`, in the same order.
    Like `send`, it returns once everything is queued, not delivered."""
    partitions: dict[str, list[int]] = {}  # topic -> its partitions
    open_: dict[tuple[str, int], tuple[Any, list[tuple[int, int]]]] = {}  # builder, (index, rel)
    sent: list[Sent | None] = [None] * len(records)

    async def hand_over(topic: str, partition: int, builder: Any, members: list[Any]) -> None:
        builder.close()  # nothing else is appended to it (a `send` begins a batch of its own)
        future = await producer.send_batch(builder, topic, partition=partition)
        for index, relative in members:
            sent[index] = Sent(future, relative)

    for index, record in enumerate(records):
        topic, key, value, partition = record.topic, record.key, record.value, record.partition
        if partition is None:  # as `make_producer`'s partitioner picks for `send`
            parts = partitions.get(topic)
            if parts is None:
                parts = partitions[topic] = sorted(await producer.partitions_for(topic))
            partition = _PARTITIONER(key, parts, parts)
        batch = open_.get((topic, partition))
        if batch is None:
            batch = open_[topic, partition] = (producer.create_batch(), [])
        builder, members = batch
        listed = list(record.headers) if record.headers else None
        meta = builder.append(key=key, value=value, timestamp=None, headers=listed)
        if meta is None:  # full: send it, and begin the partition's next (a first append fits)
            await hand_over(topic, partition, builder, members)
            builder, members = open_[topic, partition] = (producer.create_batch(), [])
            meta = builder.append(key=key, value=value, timestamp=None, headers=listed)
            assert meta is not None, "a record is always appended to an empty batch"
        members.append((index, meta.offset))
    for (topic, partition), (builder, members) in open_.items():
        await hand_over(topic, partition, builder, members)
    assert all(s is not None for s in sent)
    return sent  # type: ignore[return-value]
