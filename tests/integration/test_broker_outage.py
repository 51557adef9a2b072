"""A broker outage is ridden out by design: readiness false while the broker is gone, liveness
true, one log line when it goes and one when it comes back (not one per retry), and processing
resumes with every output exactly once. Runs against its own broker, which it stops and
starts; the session broker is left alone."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from referrals.contract.topics import TopicNames, create_topics
from referrals.platform.settings import KafkaSettings
from referrals.streams import runtime as runtime_module
from referrals.streams.kafka import make_admin, make_producer, started
from referrals.tools import broker

from ..conftest import _free_port
from .helpers import produce
from .test_runtime_faults import Counting, outputs, running, settings_for, share, until

pytestmark = pytest.mark.broker


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[broker.BrokerConfig]:
    cfg = broker.BrokerConfig(
        port=_free_port(), controller_port=_free_port(), data_dir=tmp_path / "kafka", partitions=3
    )
    try:
        broker.start(cfg, timeout=120)
    except broker.BrokerError as err:
        pytest.fail(f"the project's Kafka broker could not start:\n{err}", pytrace=False)
    yield cfg
    broker.stop(cfg)


async def _contract_topics(kafka: KafkaSettings) -> None:
    admin = make_admin(kafka, "tests")
    await admin.start()
    try:
        await create_topics(admin, TopicNames(kafka.topic_prefix), partitions=3)
    finally:
        await admin.close()


async def test_a_broker_outage_makes_the_service_unready_not_dead_and_it_resumes(
    own_broker: broker.BrokerConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(runtime_module, "BROKER_PROBE_S", 0.5)
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap, topic_prefix="o.")
    await _contract_topics(kafka)
    settings = settings_for(kafka, tmp_path / "state", commit_timeout_s=5.0)
    await produce(kafka, "referral.shares.v1", [share(i) for i in range(10)])
    async with running(Counting(), kafka, settings) as runtime:
        await outputs(kafka, expect=10)
        await until(runtime.health.is_ready)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="referrals"):
            await asyncio.to_thread(broker.stop, own_broker)
            lost = time.monotonic()
            await until(lambda: not runtime.health.is_ready(), within=30)
            down_for = time.monotonic()
            while time.monotonic() - down_for < 8:  # the outage goes on; the service lives
                assert runtime.health.alive()
                await asyncio.sleep(0.5)
            await asyncio.to_thread(broker.start, own_broker, timeout=120)
            await until(runtime.health.is_ready, within=60)
        assert down_for - lost < 30  # readiness false within 30 s (the contract's bound)
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("referrals")]
        assert lines.count("not ready: broker") == 1, lines
        assert lines.count("recovered: broker") == 1, lines
        assert len(lines) < 20, lines  # state changes, not a line per retry
        await produce(kafka, "referral.shares.v1", [share(i) for i in range(10, 30)])
        ids = await outputs(kafka, expect=30)
    assert sum(ids.values()) == 30 and max(ids.values()) == 1


async def test_a_service_started_while_the_broker_is_down_waits_for_it_instead_of_exiting(
    own_broker: broker.BrokerConfig, tmp_path: Path
) -> None:
    """Found by the fault suite: an instance restarted during a broker outage exited at once
    (status 1, "Unable to bootstrap"), and its supervisor restarted it into the same failure."""
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap, topic_prefix="s.")
    await _contract_topics(kafka)
    await asyncio.to_thread(broker.stop, own_broker)
    async with running(Counting(), kafka, settings_for(kafka, tmp_path / "state")) as runtime:
        await until(lambda: "broker" in runtime.health.problems, within=30)
        await asyncio.sleep(5)  # retrying, not exiting (`running` fails if the run ended)
        assert not runtime.health.is_ready() and runtime.health.alive()
        await asyncio.to_thread(broker.start, own_broker, timeout=120)
        await until(runtime.health.is_ready, within=90)
        await produce(kafka, "referral.shares.v1", [share(i) for i in range(10)])
        ids = await outputs(kafka, expect=10)
    assert sum(ids.values()) == 10 and max(ids.values()) == 1


class _HelperNeedsTheBroker(Counting):
    """Starts a producer of its own in `startup`, as the notifications' unsubscribe endpoint
    does; the broker goes away just before the first attempt."""

    def __init__(self, kafka: KafkaSettings, cfg: broker.BrokerConfig) -> None:
        super().__init__()
        self.kafka, self.cfg = kafka, cfg
        self.attempts = 0
        self.producer: AIOKafkaProducer | None = None

    async def startup(self) -> None:
        self.attempts += 1
        if self.attempts == 1:
            await asyncio.to_thread(broker.stop, self.cfg)
        self.producer = await started(make_producer(self.kafka, client_id="helper"))

    async def shutdown(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


async def test_a_broker_lost_while_the_processor_starts_its_helpers_is_waited_for(
    own_broker: broker.BrokerConfig, tmp_path: Path
) -> None:
    """Found by the fault suite: notifications, restarted 2 s before the broker stopped, got
    past the cluster check, then exited (status 1) when its unsubscribe endpoint's producer
    could not bootstrap."""
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap, topic_prefix="h.")
    await _contract_topics(kafka)
    processor = _HelperNeedsTheBroker(kafka, own_broker)
    async with running(processor, kafka, settings_for(kafka, tmp_path / "state")) as runtime:
        await until(lambda: "broker" in runtime.health.problems, within=60)
        await asyncio.sleep(3)  # retrying, not exiting (`running` fails if the run ended)
        assert not runtime.health.is_ready() and runtime.health.alive()
        assert processor.producer is None
        await asyncio.to_thread(broker.start, own_broker, timeout=120)
        await until(runtime.health.is_ready, within=90)
        assert processor.attempts >= 2 and processor.producer is not None
        await produce(kafka, "referral.shares.v1", [share(i) for i in range(10)])
        ids = await outputs(kafka, expect=10)
    assert sum(ids.values()) == 10 and max(ids.values()) == 1
