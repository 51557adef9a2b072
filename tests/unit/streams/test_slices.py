"""A task's batch is handled in slices: other work on the event loop (heartbeats, fetches, the
other tasks, the notifications sender's SMTP conversations) gets turns while a long batch runs,
and the batch's records are still handled in order, each once, and committed together."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from aiokafka.structs import TopicPartition

from referrals.streams import runtime as rt
from referrals.streams.processor import Inbound, Output, Processor
from referrals.streams.runtime import StreamRuntime
from referrals.streams.topics import Role, TopicSpec

from .runtime_builders import offline_runtime

SPEC = TopicSpec("things.v1", "Thing", "thing_id", Role.INPUT)
WORK_S = 0.002  # CPU per record: a batch of 50 holds the loop 100 ms if never sliced


class _Codec:
    def decode(self, data: bytes, expected: str | None = None) -> str:
        return data.decode()

    def encode(self, record: object) -> bytes:
        raise NotImplementedError


class _Busy(Processor):
    name = "busy"
    inputs = ("things.v1",)

    def __init__(self) -> None:
        self.seen: list[int] = []

    def process(self, record: Inbound, now: datetime) -> list[Output]:
        until = time.perf_counter() + WORK_S
        while time.perf_counter() < until:
            pass
        self.seen.append(record.offset)
        return []


def _runtime(processor: Processor) -> StreamRuntime:
    return offline_runtime(processor, _Codec(), SPEC)


def test_a_long_batch_lets_the_event_loop_run_other_work_between_slices() -> None:
    processor = _Busy()
    runtime = _runtime(processor)
    committed: list[tuple[dict[TopicPartition, int], int]] = []

    async def commit(tasks: list[int], pending: list[Any], offsets: Any, n: int, *_: Any) -> bool:
        committed.append((dict(offsets), n))
        return True

    runtime._commit = commit  # type: ignore[method-assign]
    tp = TopicPartition("things.v1", 0)
    batch = [(tp, SimpleNamespace(key=None, value=b"t", offset=o, timestamp=0)) for o in range(50)]

    async def scenario() -> list[int]:
        ticks: list[int] = []  # how many records were handled at each turn the ticker got

        async def ticker() -> None:
            while True:
                ticks.append(len(processor.seen))
                await asyncio.sleep(0)

        other = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        runtime._tasks = {0}
        await runtime._run_cycle({0: (batch, False)})
        other.cancel()
        return ticks

    ticks = asyncio.run(scenario())
    assert processor.seen == list(range(50))  # in order, each once
    assert committed == [({tp: 50}, 50)]  # one transaction for the whole batch
    during = sorted({t for t in ticks if 0 < t < 50})
    # The ticker ran while the batch was half done, more than once: the batch yielded.
    assert len(during) >= 50 * WORK_S / rt.SLICE_S / 2, ticks
