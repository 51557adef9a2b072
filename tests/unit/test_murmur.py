"""The project's murmur2 partitioning equals Kafka's (the Java client's, aiokafka's)."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_producer
from referrals.streams.murmur import KeyPartitioner, murmur2, partition_of

# Kafka's own test vectors (clients/src/test/.../common/utils/UtilsTest.java, testMurmur2),
# as the Java client returns them: signed 32-bit ints.
JAVA_CASES = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def signed(h: int) -> int:
    return h - (1 << 32) if h & 0x80000000 else h


@pytest.mark.parametrize(("key", "expected"), JAVA_CASES.items())
def test_the_hash_is_the_java_clients(key: bytes, expected: int) -> None:
    assert signed(murmur2(key)) == expected


def test_the_hash_equals_aiokafkas_for_every_tail_length_and_long_keys() -> None:
    rnd = random.Random(7)
    lengths = [*range(0, 41), 255, 256, 257, 1000]  # 0-3 tail bytes; past the word table
    for length in lengths:
        for _ in range(50):
            key = rnd.randbytes(length)
            assert murmur2(key) == aiokafka_murmur2(key), (length, key.hex())


def test_keys_go_to_the_partitions_aiokafkas_default_partitioner_chooses() -> None:
    rnd = random.Random(11)
    ours, theirs = KeyPartitioner(), DefaultPartitioner()
    for count in (1, 3, 6, 12, 50):
        parts = list(range(count))
        for i in range(300):
            key = f"adv-{rnd.randrange(10**9)}-{i}".encode()
            chosen = theirs(key, parts, parts)
            assert ours(key, parts, parts) == chosen
            assert partition_of(key, count) == chosen


def test_a_record_without_a_key_goes_to_an_available_partition_else_to_any() -> None:
    partitioner = KeyPartitioner()
    assert {partitioner(None, [0, 1, 2, 3], [2]) for _ in range(50)} == {2}
    assert {partitioner(None, [0, 1, 2], []) for _ in range(200)} == {0, 1, 2}


async def test_the_projects_producers_partition_with_it() -> None:
    producer = make_producer(KafkaSettings(bootstrap_servers="127.0.0.1:1"))  # never started
    try:
        assert isinstance(producer._partitioner, KeyPartitioner)
    finally:
        await producer.stop()
