"""Where a cycle hands a re-keyed record to its task: after that task's own records of the
cycle (as when it came back through the topic a transaction later), not written to the topic;
and written when the task's partition of the topic is not known to be drained. The cycle's
transaction is faked here: what it would commit is recorded."""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from aiokafka.structs import TopicPartition

from referrals.streams.loopback import Loopback
from referrals.streams.processor import Inbound, Outbound, Output, Processor
from referrals.streams.topics import Catalogue, Role, TopicSpec

from .runtime_builders import offline_runtime

IN = TopicSpec("in.v1", "Thing", "id", Role.INPUT)
BY_KEY = TopicSpec("by-key.v1", "Thing", "id", Role.INTERNAL)


class _Codec:
    def decode(self, data: bytes, expected: str | None = None) -> str:
        return data.decode()

    def encode(self, record: object, version: int | None = None) -> bytes:
        return str(record).encode()


class _ReKey(Processor):
    """ "fwd:<key>" on in.v1 goes on to by-key.v1 keyed <key>; every record handled is noted."""

    name = "rekey"
    inputs = ("in.v1", "by-key.v1")
    internal_topics = (BY_KEY,)
    loopback = ("by-key.v1",)

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []

    def process(self, record: Inbound, now: datetime) -> list[Output]:
        self.seen.append((record.topic, record.partition, record.value))
        if record.topic == "in.v1" and record.value.startswith("fwd:"):
            return [Outbound("by-key.v1", record.value[4:], record.value)]
        return []


def _cycle(settled: dict[TopicPartition, int]) -> tuple[_ReKey, list[Any], list[int]]:
    processor = _ReKey()
    runtime = offline_runtime(processor, _Codec(), IN)
    runtime.catalogue = Catalogue([IN, BY_KEY])
    loop = runtime._loopback = Loopback(["by-key.v1"], 2)
    key = next(
        k
        for k in (f"k{i}" for i in range(100))
        if loop.target("by-key.v1", k.encode()).partition == 1
    )
    committed: list[Any] = []
    tasks_committed: list[int] = []

    async def commit(tasks: list[int], pending: list[Any], *_: Any) -> bool:
        committed.extend(pending)
        tasks_committed.extend(tasks)
        return True

    runtime._commit = commit  # type: ignore[method-assign]
    runtime._tasks = {0, 1}

    def record(value: str, offset: int) -> Any:
        return SimpleNamespace(key=b"x", value=value.encode(), offset=offset, timestamp=0)

    work = {
        0: ([(TopicPartition("in.v1", 0), record(f"fwd:{key}", 5))], False),
        1: ([(TopicPartition("in.v1", 1), record("own", 9))], False),
    }
    asyncio.run(runtime._run_cycle(work, settled))
    return processor, committed, tasks_committed


def test_a_record_handed_over_comes_after_its_task_s_own_records_and_is_not_written() -> None:
    settled = {TopicPartition("by-key.v1", 0): 0, TopicPartition("by-key.v1", 1): 0}
    processor, committed, tasks = _cycle(settled)
    fwd = processor.seen[0][2]
    assert processor.seen == [("in.v1", 0, fwd), ("in.v1", 1, "own"), ("by-key.v1", 1, fwd)]
    assert not [p for p in committed if p.topic == "by-key.v1"]
    assert sorted(tasks) == [0, 1]


def test_a_record_for_a_partition_not_known_drained_is_written_to_the_topic() -> None:
    processor, committed, _ = _cycle({TopicPartition("by-key.v1", 0): 0})  # 1's end not read
    assert [r[0] for r in processor.seen] == ["in.v1", "in.v1"]
    assert [(p.topic, p.value) for p in committed if p.topic == "by-key.v1"] == [
        ("by-key.v1", processor.seen[0][2].encode())
    ]
