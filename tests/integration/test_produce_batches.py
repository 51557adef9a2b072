"""`send_all`: a transaction's records sent as one batch per partition, against the broker.
Every record must land where `send` would put it (a keyed record on its murmur2 partition, an
explicit one on its own), in the order given within its partition, with its key, value and
headers, and at the offset its `Sent` reports; batches that fill are followed by more."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from aiokafka import TopicPartition

from referrals.contract.topics import SHARES, STATUS, TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer, make_producer
from referrals.streams.murmur import partition_of
from referrals.streams.produce import Sent, send_all

pytestmark = pytest.mark.broker

PARTITIONS = 3  # the `topics` fixture's


class Out:
    """A record to send, as the runtime's pending outputs carry them."""

    def __init__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: tuple[tuple[str, bytes], ...] = (),
        partition: int | None = None,
    ) -> None:
        self.topic, self.key, self.value = topic, key, value
        self.headers, self.partition = headers, partition


async def _read(settings: KafkaSettings, tps: list[TopicPartition], ends: dict) -> dict:
    """Every committed record of `tps`, by (topic, partition, offset)."""
    consumer = make_consumer(settings, client_id="tests-batches", isolation_level="read_committed")
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: dict[tuple[str, int, int], tuple] = {}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for r in records:
                    got[tp.topic, tp.partition, r.offset] = (r.key, r.value, tuple(r.headers))
        return got
    finally:
        await consumer.stop()


async def _send(settings: KafkaSettings, records: list[Out], **overrides: object) -> list[Sent]:
    producer = make_producer(
        settings,
        client_id="tests-batches",
        transactional_id=f"tests-batches-{uuid.uuid4().hex[:8]}",
        **overrides,
    )
    await producer.start()
    try:
        async with producer.transaction():
            sent = await send_all(producer, records)
        return sent
    finally:
        await producer.stop()


def _check(records: list[Out], sent: list[Sent], got: dict) -> None:
    assert len(sent) == len(records)
    places = set()
    by_partition: dict[tuple[str, int], list[int]] = defaultdict(list)
    for n, (record, where) in enumerate(zip(records, sent, strict=True)):
        place = (where.topic, where.partition, where.offset)
        assert place not in places, f"record {n} reported at {place}, as another was"
        places.add(place)
        assert where.topic == record.topic
        if record.partition is not None:
            assert where.partition == record.partition
        elif record.key is not None:
            assert where.partition == partition_of(record.key, PARTITIONS)
        assert got[place] == (record.key, record.value, record.headers), f"record {n} at {place}"
        by_partition[where.topic, where.partition].append(where.offset)
    for offsets in by_partition.values():  # the order given, within each partition
        assert offsets == sorted(offsets)
    assert len(got) == len(records)  # nothing else was written


async def test_records_land_where_send_puts_them_at_the_offsets_reported(
    topics: KafkaSettings,
) -> None:
    names = TopicNames(topics.topic_prefix)
    shares, status = names(SHARES), names(STATUS)
    records = [
        Out(shares if n % 3 else status, f"key-{n % 17}".encode(), b"v%d" % n) for n in range(120)
    ]
    records += [Out(status, b"pinned", b"p%d" % n, partition=n % PARTITIONS) for n in range(9)]
    records += [Out(shares, None, b"unkeyed-%d" % n) for n in range(6)]
    records += [Out(status, b"h", b"with headers", headers=(("a", b"1"), ("b", b"2")))]
    sent = await _send(topics, records)
    tps = [TopicPartition(t, p) for t in (shares, status) for p in range(PARTITIONS)]
    ends = {tp: 0 for tp in tps}
    for where in sent:
        tp = TopicPartition(where.topic, where.partition)
        ends[tp] = max(ends[tp], where.offset + 1)
    _check(records, sent, await _read(topics, tps, ends))


async def test_a_full_batch_is_followed_by_another_for_the_same_partition(
    topics: KafkaSettings,
) -> None:
    topic = TopicNames(topics.topic_prefix)(SHARES)
    # 1 KB batches: each holds two or three of these records, so each partition takes several
    records = [Out(topic, b"k%d" % (n % 4), bytes([65 + n % 26]) * 400) for n in range(40)]
    records.insert(5, Out(topic, b"k1", b"x" * 3000))  # larger than a batch: one of its own
    sent = await _send(topics, records, max_batch_size=1024)
    assert len({s.batch for s in sent}) > 2 * PARTITIONS  # batches filled and more followed
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends = {tp: 0 for tp in tps}
    for where in sent:
        tp = TopicPartition(where.topic, where.partition)
        ends[tp] = max(ends[tp], where.offset + 1)
    _check(records, sent, await _read(topics, tps, ends))
