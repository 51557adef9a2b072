"""A new task owner reads committed offsets with require_stable (OffsetFetch v7, KIP-447): while
a transaction's offsets are pending in the group coordinator it waits, where a plain fetch
(aiokafka's `committed`, OffsetFetch v3) answers with the older offset and the batch would be
processed twice."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import TopicPartition

from referrals.contract.topics import SHARES, TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer, make_producer
from referrals.streams.offsets import stable_committed

pytestmark = pytest.mark.broker


async def test_pending_transactional_offsets_are_waited_for_not_read_stale(
    topics: KafkaSettings,
) -> None:
    group = f"{topics.topic_prefix}stable-{uuid.uuid4().hex[:6]}"
    tp = TopicPartition(TopicNames(topics.topic_prefix)(SHARES), 0)
    consumer = make_consumer(topics, group_id=group, client_id="tests-stable")
    producer = make_producer(topics, client_id="tests-stable", transactional_id=group)
    await consumer.start()
    await producer.start()
    try:
        assert await stable_committed(consumer, group, [tp], timeout_s=10) == {tp: None}

        await producer.begin_transaction()
        await producer.send_offsets_to_transaction({tp: 42}, group)
        # Pending: the plain fetch says "nothing committed"; the stable one will not answer.
        assert await consumer.committed(tp) is None
        with pytest.raises(TimeoutError, match="unstable"):
            await stable_committed(consumer, group, [tp], timeout_s=1.0)

        await producer.commit_transaction()
        assert await stable_committed(consumer, group, [tp], timeout_s=10) == {tp: 42}

        await producer.begin_transaction()
        await producer.send_offsets_to_transaction({tp: 77}, group)
        await producer.abort_transaction()
        assert await stable_committed(consumer, group, [tp], timeout_s=10) == {tp: 42}
    finally:
        await producer.stop()
        await consumer.stop()
