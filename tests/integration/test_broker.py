"""The project's own broker: it runs, transactions work on one node, the CLI controls it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from referrals.contract.topics import SHARES, TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_producer
from referrals.tools import broker

from ..conftest import REPO
from .helpers import read_topic

pytestmark = pytest.mark.broker


def _cli_env(cfg: broker.BrokerConfig) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "REFERRALS_BROKER_PORT": str(cfg.port),
        "REFERRALS_BROKER_CONTROLLER_PORT": str(cfg.cport),
        "REFERRALS_BROKER_DATA_DIR": str(cfg.data_dir),
    }


def test_broker_status_reports_the_running_broker(kafka_broker: broker.BrokerConfig) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "referrals.tools.cli", "broker", "status"],
        env=_cli_env(kafka_broker),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout)
    assert state["running"] is True
    assert state["bootstrap"] == kafka_broker.bootstrap


def test_starting_a_running_broker_returns_the_same_process(
    kafka_broker: broker.BrokerConfig,
) -> None:
    pid = broker.status(kafka_broker)["pid"]
    assert broker.start(kafka_broker) == pid


async def test_read_committed_consumers_see_committed_transactions_only(
    topics: KafkaSettings,
) -> None:
    physical = TopicNames(topics.topic_prefix)(SHARES)
    producer = make_producer(topics, transactional_id=f"{topics.topic_prefix}tx")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(physical, b"committed", key=b"k")
        await producer.begin_transaction()
        await producer.send(physical, b"aborted", key=b"k")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(physical, b"after", key=b"k")
    finally:
        await producer.stop()
    committed = await read_topic(topics, SHARES, expect=2)
    assert [m.value for m in committed] == [b"committed", b"after"]
    uncommitted = await read_topic(topics, SHARES, expect=3, read_committed=False)
    assert b"aborted" in [m.value for m in uncommitted]


def test_a_second_broker_on_a_taken_port_is_refused_with_a_clear_error(
    kafka_broker: broker.BrokerConfig, tmp_path: object
) -> None:
    other = broker.BrokerConfig(
        port=kafka_broker.port,
        controller_port=kafka_broker.cport,
        data_dir=tmp_path,  # type: ignore[arg-type]
    )
    with pytest.raises(broker.BrokerError, match=r"port .* is taken"):
        broker.start(other, timeout=10)
