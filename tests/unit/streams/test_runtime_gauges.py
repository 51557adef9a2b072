"""The runtime's gauges SREs alert on: lag per topic and per owned partition (a partition given
away stops being reported here: its new owner reports it), and when the timers of the tasks
this instance owns last ran (a task whose timers keep failing holds it back, also while the
task is rebuilt after each failure)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from aiokafka import TopicPartition

from referrals.platform.metrics import Health, RuntimeMetrics
from referrals.platform.settings import KafkaSettings, ServiceSettings
from referrals.streams.processor import Inbound, Output, Processor
from referrals.streams.runtime import StreamRuntime
from referrals.streams.topics import Catalogue, Role, TopicSpec

TOPIC = "things.v1"
SPEC = TopicSpec(TOPIC, "Thing", "thing_id", Role.INPUT)
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


class _Timers(Processor):
    name = "timed"
    inputs = (TOPIC,)

    def __init__(self) -> None:
        self.failing: set[int] = set()

    def process(self, record: Inbound, now: datetime) -> list[Output]:
        return []

    def punctuate(self, task: int, now: datetime) -> list[Output]:
        if task in self.failing:
            raise RuntimeError("a timer failed")
        return []


class _Consumer:
    def __init__(self, ends: dict[TopicPartition, int]) -> None:
        self.ends = ends

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends.get(tp)

    def pause(self, *tps: TopicPartition) -> None:
        pass


def _runtime(processor: Processor, consumer: _Consumer) -> tuple[StreamRuntime, RuntimeMetrics]:
    metrics = RuntimeMetrics("timed")
    runtime = StreamRuntime(
        processor,
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),  # never connected here
        settings=ServiceSettings(),
        codec=None,  # type: ignore[arg-type]  # no record is decoded here
        catalogue=Catalogue([SPEC]),
        metrics=metrics,
        health=Health(),
    )
    runtime._consumer = consumer  # type: ignore[assignment]
    return runtime, metrics


def _gauge(metrics: RuntimeMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _refresh(runtime: StreamRuntime) -> None:
    runtime._lag_at = 0.0  # the gauges are set at most twice a second: now, for the test
    runtime._update_gauges()


def test_lag_is_reported_per_owned_partition_and_a_partition_given_away_disappears() -> None:
    consumer = _Consumer({TP0: 10, TP1: 5})
    runtime, metrics = _runtime(_Timers(), consumer)
    runtime._positions = {TP0: 4, TP1: 5}
    _refresh(runtime)
    lag = "referrals_consumer_partition_lag"
    assert _gauge(metrics, lag, topic=TOPIC, partition="0") == 6
    assert _gauge(metrics, lag, topic=TOPIC, partition="1") == 0
    assert _gauge(metrics, "referrals_consumer_lag", topic=TOPIC) == 6
    offset = "referrals_consumer_partition_offset"
    assert _gauge(metrics, offset, topic=TOPIC, partition="0") == 4

    consumer.ends = {TP1: 9}  # partition 0 went to another instance
    _refresh(runtime)
    assert _gauge(metrics, lag, topic=TOPIC, partition="0") is None
    assert _gauge(metrics, offset, topic=TOPIC, partition="0") is None
    assert _gauge(metrics, lag, topic=TOPIC, partition="1") == 4
    assert _gauge(metrics, "referrals_consumer_lag", topic=TOPIC) == 4

    consumer.ends = {}  # none of the topic's partitions left here
    _refresh(runtime)
    assert _gauge(metrics, lag, topic=TOPIC, partition="1") is None
    assert _gauge(metrics, "referrals_consumer_lag", topic=TOPIC) == 0


async def test_the_timers_gauge_is_the_oldest_owned_tasks_last_run_also_through_failures() -> None:
    processor = _Timers()
    runtime, metrics = _runtime(processor, _Consumer({}))
    runtime._wanted = frozenset({0, 1})
    runtime._tasks = {0, 1}
    runtime._timers_ran = {0: 100.0, 1: 200.0}
    last_run = "referrals_timers_last_run_timestamp_seconds"
    _refresh(runtime)
    assert _gauge(metrics, last_run) == 100.0

    before = time.time()
    await runtime._run_cycle({0: ([], True)})  # task 0's timers ran (nothing to commit)
    assert runtime._timers_ran[0] >= before
    _refresh(runtime)
    assert _gauge(metrics, last_run) == 200.0

    processor.failing.add(1)
    await runtime._run_cycle({1: ([], True)})  # fails: the task is closed to be rebuilt
    assert 1 not in runtime._tasks and "timers:task-1" in runtime.health.problems
    _refresh(runtime)
    assert _gauge(metrics, last_run) == 200.0  # still owed: not reset by the rebuild

    runtime._wanted = frozenset({0})  # the group gave task 1 to another instance
    _refresh(runtime)
    assert _gauge(metrics, last_run) == pytest.approx(runtime._timers_ran[0])

    runtime._wanted = frozenset()
    _refresh(runtime)
    assert (_gauge(metrics, last_run) or 0) >= before  # owning nothing, nothing is late
