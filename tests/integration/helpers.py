"""Helpers for tests against the real broker: read a topic whole, produce, run the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

from aiokafka import TopicPartition

from referrals.contract.topics import TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer, make_producer

from ..conftest import REPO, env_for

CLI = [sys.executable, "-m", "referrals.tools.cli"]


async def read_topic(
    settings: KafkaSettings,
    topic: str,
    *,
    expect: int | None = None,
    within: float = 15.0,
    quiet: float = 1.0,
    read_committed: bool = True,
) -> list[Any]:
    """All records of a logical topic (read_committed): until `expect` records arrived, or until
    nothing new came for `quiet` seconds, or `within` seconds in all."""
    physical = TopicNames(settings.topic_prefix)(topic)
    consumer = make_consumer(settings, client_id="tests-reader", read_committed=read_committed)
    await consumer.start()
    try:
        parts = [TopicPartition(physical, p) for p in consumer.partitions_for_topic(physical) or ()]
        if not parts:
            await consumer._client.force_metadata_update()
            found = consumer.partitions_for_topic(physical) or ()
            parts = [TopicPartition(physical, p) for p in found]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        out: list[Any] = []
        deadline = time.monotonic() + within
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            got = [m for ms in batch.values() for m in ms]
            if got:
                out.extend(got)
                last = time.monotonic()
            if expect is not None and len(out) >= expect:
                await asyncio.sleep(0.3)  # linger a moment: extra (duplicate) records would show
                batch = await consumer.getmany(timeout_ms=200)
                out.extend(m for ms in batch.values() for m in ms)
                break
            if expect is None and time.monotonic() - last >= quiet:
                break
        return out
    finally:
        await consumer.stop()


async def produce(
    settings: KafkaSettings, topic: str, items: list[tuple[bytes | None, bytes]]
) -> None:
    producer = make_producer(settings, client_id="tests-producer")
    await producer.start()
    try:
        physical = TopicNames(settings.topic_prefix)(topic)
        for key, value in items:
            await producer.send(physical, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def run_cli(
    settings: KafkaSettings, *args: str, stdin: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env_for(settings),
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def spawn_service(service: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`referrals run SERVICE` as a process with `env`; its stderr kept for a failing test."""
    return subprocess.Popen(
        [sys.executable, "-m", "referrals.tools.cli", "run", service],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
