"""A transaction's consumed offsets carry the group member's generation (TxnOffsetCommit v3,
KIP-447), so a zombie is fenced by the group: after a rebalance it missed, its transaction is
refused and aborted, its outputs never readable. Against the real broker."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from aiokafka import TopicPartition

from referrals.contract.topics import NOTIFICATIONS_SENT, SHARES, TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer, make_producer
from referrals.streams.offsets import stable_committed
from referrals.streams.txn_offsets import GroupMetadata, GroupMoved, send_offsets

from .helpers import read_topic

pytestmark = pytest.mark.broker


async def test_offsets_commit_under_the_live_generation_and_a_stale_one_aborts_the_transaction(
    topics: KafkaSettings,
) -> None:
    names = TopicNames(topics.topic_prefix)
    group = f"{topics.topic_prefix}gen-{uuid.uuid4().hex[:6]}"
    consumer = make_consumer(topics, names(SHARES), group_id=group, client_id="tests-gen")
    producer = make_producer(topics, client_id="tests-gen", transactional_id=group)
    await consumer.start()
    await producer.start()
    try:
        await consumer.getmany(timeout_ms=3000)  # joined: a member id and generation
        assert consumer.assignment()
        coordinator = consumer._coordinator
        live = GroupMetadata(group, coordinator.generation, coordinator.member_id)
        assert live.generation > 0 and live.member_id
        tp = TopicPartition(names(SHARES), 0)

        await producer.begin_transaction()
        await producer.send(names(NOTIFICATIONS_SENT), b"live", key=b"k", partition=0)
        await send_offsets(producer, {tp: 5}, live)
        await producer.commit_transaction()
        assert await stable_committed(consumer, group, [tp], timeout_s=10) == {tp: 5}

        for stale in (
            dataclasses.replace(live, generation=live.generation - 1),
            dataclasses.replace(live, member_id="a-member-long-gone"),
        ):
            await producer.begin_transaction()
            await producer.send(names(NOTIFICATIONS_SENT), b"zombie", key=b"k", partition=0)
            with pytest.raises(GroupMoved, match="generation is over"):
                await send_offsets(producer, {tp: 9}, stale)
            await producer.abort_transaction()  # the producer itself lives on
            assert await stable_committed(consumer, group, [tp], timeout_s=10) == {tp: 5}
    finally:
        await producer.stop()
        await consumer.stop()
    seen = [m.value for m in await read_topic(topics, NOTIFICATIONS_SENT, within=3, quiet=1.0)]
    assert seen == [b"live"]
