"""referrals_cycle_seconds{phase}: where a committed cycle's time went, against the broker.

`queued` is the age of a cycle's oldest record when the cycle began (from the record's
timestamp); `handle`, `produce`, `offsets` and `commit` are observed once per committed
transaction."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from referrals.contract.topics import SHARES
from referrals.platform.metrics import CYCLE_BUCKETS, CYCLE_PHASES
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_producer
from referrals.streams.runtime import StreamRuntime
from referrals.streams.topics import TopicNames

from .test_runtime_faults import Counting, outputs, running, settings_for, share, until

pytestmark = pytest.mark.broker
AGE_S = 30.0  # how old the first records are when published


async def publish(kafka: KafkaSettings, first: int, n: int, timestamp_ms: int) -> None:
    producer = make_producer(kafka, client_id="tests-cycle-phases")
    await producer.start()
    try:
        topic = TopicNames(kafka.topic_prefix)(SHARES)
        for i in range(first, first + n):
            key, value = share(i)
            await producer.send(topic, value, key=key, timestamp_ms=timestamp_ms)
        await producer.flush()
    finally:
        await producer.stop()


def sample(runtime: StreamRuntime, name: str, **labels: str) -> float:
    value = runtime.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def queued_within(runtime: StreamRuntime, seconds: str) -> float:
    """Cycles whose oldest record had waited at most `seconds` (a bucket bound)."""
    assert float(seconds) in CYCLE_BUCKETS, f"{seconds} is not a bucket bound"
    return sample(runtime, "referrals_cycle_seconds_bucket", phase="queued", le=seconds)


async def test_a_cycle_s_phases_are_observed_once_per_commit_and_queued_is_the_records_age(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    async with running(Counting(), topics, settings_for(topics, tmp_path)) as runtime:
        await publish(topics, 0, 20, int((time.time() - AGE_S) * 1000))
        await outputs(topics, expect=20)
        queued = sample(runtime, "referrals_cycle_seconds_count", phase="queued")
        assert queued >= 1, "no cycle with records observed how long they had waited"
        assert queued_within(runtime, "5.0") == 0, (
            "records published 30 s in the past were counted as queued for 5 s or less"
        )
        assert sample(runtime, "referrals_cycle_seconds_sum", phase="queued") >= AGE_S * queued

        await publish(topics, 20, 5, int(time.time() * 1000))
        await outputs(topics, expect=25)
        await until(lambda: queued_within(runtime, "5.0") >= 1, within=10)

        commits = sample(runtime, "referrals_transactions_total", outcome="commit")
        assert commits >= 2
        for phase in CYCLE_PHASES[1:]:
            count = sample(runtime, "referrals_cycle_seconds_count", phase=phase)
            assert count == commits, f"{phase}: {count:.0f} observations, {commits:.0f} commits"
            assert sample(runtime, "referrals_cycle_seconds_sum", phase=phase) > 0
        assert sample(runtime, "referrals_cycle_seconds_count", phase="queued") <= commits
