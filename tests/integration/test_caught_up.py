"""`CaughtUp`: whether consumer groups have committed past every data record of their inputs,
exactly, against the real broker. A transactional partition ends in a commit marker with an
offset of its own, so a group that processed everything still trails the last stable offset
by one: the check must read what lies between, and count only data records."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import TopicPartition

from referrals.contract.topics import SHARES, STATUS, TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer, make_producer
from referrals.tools.caught_up import CaughtUp, Group

pytestmark = pytest.mark.broker


async def _ends(caught_up: CaughtUp, tp: TopicPartition, end: int) -> dict[TopicPartition, int]:
    """The last stable offsets once `tp`'s is `end`: the coordinator writes a transaction's
    markers after it answers the commit, so the offset moves a moment later."""
    for _ in range(100):
        ends = await caught_up.ends()
        if ends[tp] == end:
            return ends
        await asyncio.sleep(0.05)
    raise AssertionError(f"{tp}'s last stable offset is {ends[tp]}, not {end}")


async def test_a_group_is_caught_up_past_commit_markers_and_aborted_records_only(
    topics: KafkaSettings,
) -> None:
    names = TopicNames(topics.topic_prefix)
    topic = names(SHARES)
    tp = TopicPartition(topic, 0)
    group = f"{topics.topic_prefix}caught-{uuid.uuid4().hex[:6]}"
    producer = make_producer(topics, client_id="tests-caught", transactional_id=group)
    committer = make_consumer(topics, group_id=group, client_id="tests-caught")
    await producer.start()
    await committer.start()
    committer.assign([tp])  # commits without joining the group
    try:
        async with CaughtUp([Group(group, (topic,), topics)]) as caught_up:
            assert await caught_up.wait(within=5.0)  # nothing published: nothing to do

            async with producer.transaction():  # offsets 0, 1, 2; its marker at 3
                for n in range(3):
                    await producer.send(topic, b"r%d" % n, key=b"k", partition=0)
            ends = await _ends(caught_up, tp, 4)
            group_ = caught_up.groups[0]
            assert not await caught_up.done(group_, ends)  # nothing committed: all 3 ahead

            await committer.commit({tp: 2})  # record 2 not processed
            assert not await caught_up.done(group_, ends)
            assert not await caught_up.wait(within=0.3)

            await committer.commit({tp: 3})  # past every record: only the marker is ahead
            assert await caught_up.done(group_, ends)
            assert await caught_up.wait(within=5.0)

            await producer.begin_transaction()  # aborted: offsets 4, 5, its marker at 6
            await producer.send(topic, b"gone", key=b"k", partition=0)
            await producer.send(topic, b"gone", key=b"k", partition=0)
            await producer.abort_transaction()
            ends = await _ends(caught_up, tp, 7)
            assert await caught_up.done(group_, ends)  # aborted records are never read

            async with producer.transaction():  # offset 7 committed, marker at 8
                await producer.send(topic, b"new", key=b"k", partition=0)
            assert not await caught_up.wait(within=0.3)
            await committer.commit({tp: 8})
            assert await caught_up.wait(within=5.0)
    finally:
        await committer.stop()
        await producer.stop()


async def test_chained_groups_are_caught_up_only_when_the_second_took_the_firsts_output(
    topics: KafkaSettings,
) -> None:
    """Attribution's statuses feed rewards: the first group done is not enough while the
    second has not committed past what the first wrote."""
    names = TopicNames(topics.topic_prefix)
    shares, statuses = names(SHARES), names(STATUS)
    first, second = (f"{topics.topic_prefix}{n}-{uuid.uuid4().hex[:6]}" for n in ("a", "b"))
    producer = make_producer(topics, client_id="tests-caught", transactional_id=first)
    commit_first = make_consumer(topics, group_id=first, client_id="tests-caught")
    commit_second = make_consumer(topics, group_id=second, client_id="tests-caught")
    for client in (producer, commit_first, commit_second):
        await client.start()
    commit_first.assign([TopicPartition(shares, 1)])
    commit_second.assign([TopicPartition(statuses, 2)])
    groups = [Group(first, (shares,), topics), Group(second, (statuses,), topics)]
    try:
        async with CaughtUp(groups) as caught_up:
            async with producer.transaction():
                await producer.send(shares, b"in", key=b"k", partition=1)
            async with producer.transaction():  # the first group's output, and its offsets
                await producer.send(statuses, b"out", key=b"k", partition=2)
            await commit_first.commit({TopicPartition(shares, 1): 1})
            assert not await caught_up.wait(within=0.3)  # the second has the status ahead

            await commit_second.commit({TopicPartition(statuses, 2): 1})
            assert await caught_up.wait(within=5.0)
    finally:
        for client in (producer, commit_first, commit_second):
            await client.stop()
