"""The floors that decide when a re-keyed record may be handed straight to its task."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from referrals.streams.loopback import Loopback

TOPIC = "t.by-key.v1"
SOURCE = 0  # source tasks
OTHER = 1


def tp(task: int) -> TopicPartition:
    return TopicPartition(TOPIC, task)


def test_a_key_goes_to_the_partition_the_producer_would_write_it_to() -> None:
    loop = Loopback([TOPIC], 6)
    for i in range(500):
        key = f"prospect-{i}".encode()
        assert loop.target(TOPIC, key).partition == DefaultPartitioner()(key, list(range(6)), [])


def test_a_partition_is_settled_once_fetched_past_the_end_read_after_the_reset() -> None:
    loop = Loopback([TOPIC], 2)
    positions = {tp(0): 10, tp(1): 3}
    assert loop.settled([0, 1], positions.get) == {}  # no end read yet
    assert loop.missing([0, 1]) == [tp(0), tp(1)]
    loop.read({tp(0): 10, tp(1): 5}, loop.epoch)
    assert loop.missing([0, 1]) == []
    assert loop.settled([0, 1], positions.get) == {tp(0): 10}
    assert loop.settled([0, 1], {tp(0): None, tp(1): 5}.get) == {tp(1): 5}


def test_a_reset_forgets_the_ends_and_an_end_read_before_it_is_dropped() -> None:
    loop = Loopback([TOPIC], 1)
    epoch = loop.epoch
    loop.read({tp(0): 4}, epoch)
    loop.reset()
    assert loop.settled([0], {tp(0): 9}.get) == {}
    loop.read({tp(0): 4}, epoch)  # asked before the reset: stale
    assert loop.missing([0]) == [tp(0)]
    loop.read({tp(0): 4}, loop.epoch)
    assert loop.settled([0], {tp(0): 9}.get) == {tp(0): 9}


def test_a_source_task_waits_for_what_it_forwarded_and_other_tasks_do_not() -> None:
    loop = Loopback([TOPIC], 1)
    loop.forwarded(SOURCE, tp(0), 7)
    loop.forwarded(SOURCE, tp(0), 5)  # an earlier offset never lowers the floor
    assert loop.behind(SOURCE, tp(0), 7)
    assert not loop.behind(SOURCE, tp(0), 8)
    assert not loop.behind(OTHER, tp(0), 0)
    loop.reset()  # what we forwarded is remembered across resets
    assert loop.behind(SOURCE, tp(0), 7)
