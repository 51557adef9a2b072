"""A three-node cluster of the project's own broker: started by `referrals broker start --nodes
3`, topics replicated three ways with min ISR 2, and the loss of one node loses nothing and
stops nothing (CONTRACT.md, Faults). The session's single broker is not involved."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import (
    CATALOGUE,
    SHARES,
    TOPICS,
    TopicNames,
    create_topics,
    dlq_of,
)
from referrals.platform.metrics import Health, RuntimeMetrics
from referrals.platform.settings import KafkaSettings, ServiceSettings
from referrals.streams.kafka import make_admin, make_producer
from referrals.streams.runtime import StreamRuntime
from referrals.streams.stores import changelog_topic
from referrals.tools import broker
from services.rewards.adapters.processor import RewardsProcessor
from services.rewards.adapters.settings import RewardsSettings

from ..conftest import REPO
from .helpers import read_topic

pytestmark = pytest.mark.broker

NODES = 3


def _free_ports(count: int) -> int:
    """The first of `count` consecutive ports that are all free now."""
    for _ in range(100):
        with ExitStack() as stack:
            first = stack.enter_context(socket.socket())
            first.bind(("127.0.0.1", 0))
            base: int = first.getsockname()[1]
            try:
                for port in range(base + 1, base + count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


def _cli(cfg: broker.BrokerConfig, *args: str) -> subprocess.CompletedProcess[str]:
    """`referrals broker ...` for the test's cluster (its ports and folder)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REFERRALS_"))}
    env["REFERRALS_BROKER_CONTROLLER_PORT"] = str(cfg.cport)
    options = ["--port", str(cfg.port), "--data-dir", str(cfg.data_dir)]
    return subprocess.run(
        [sys.executable, "-m", "referrals.tools.cli", "broker", *args, *options],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def _wait_for_isr(admin: AIOKafkaAdminClient, topic: str, size: int, within: float) -> None:
    """Until every partition of `topic` has `size` in-sync replicas (fails after `within` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        (described,) = await admin.describe_topics([topic])
        isr = [len(p["isr"]) for p in described["partitions"]]
        if all(n == size for n in isr):
            return
        if loop.time() > deadline:
            pytest.fail(f"{topic}: in-sync replicas per partition {isr}, expected {size} each")
        await asyncio.sleep(0.5)


async def _service_topics(settings: KafkaSettings, state_dir: Path) -> list[str]:
    """Has the rewards service's runtime create its internal topics and changelogs (only its
    start-up step that does so, not the whole service); returns their names."""
    processor = RewardsProcessor(RuntimeMetrics("rewards"), RewardsSettings(), lambda: 0.0)
    runtime = StreamRuntime(
        processor,
        kafka=settings,
        settings=ServiceSettings(state_dir=state_dir),
        codec=AvroCodec(),
        catalogue=TOPICS,
        metrics=RuntimeMetrics("rewards"),
        health=Health(),
    )
    await runtime._prepare_state(partitions=1)
    assert runtime._restore_consumer is not None
    # aiokafka's NoGroupCoordinator fails its stop (CancelledError) when its reset task has not
    # run once yet: a stop right after start only happens here, not in a running service.
    await asyncio.sleep(0.5)
    await runtime._restore_consumer.stop()
    names = TopicNames(settings.topic_prefix)
    changelogs = [names(changelog_topic(processor.name, s)) for s in processor.stores]
    assert changelogs and processor.internal_topics
    return changelogs + [names(spec.name) for spec in processor.internal_topics]


async def _send(producer: object, topic: str, value: bytes) -> None:
    async with producer.transaction():  # type: ignore[attr-defined]
        await producer.send(topic, value, key=b"k", partition=0)  # type: ignore[attr-defined]


async def test_a_three_node_cluster_replicates_and_survives_losing_a_node(
    tmp_path: Path,
) -> None:
    cfg = broker.BrokerConfig(
        port=_free_ports(NODES),
        controller_port=_free_ports(NODES),
        data_dir=tmp_path / "cluster",
        nodes=NODES,
        partitions=3,
    )
    try:
        started = await asyncio.to_thread(_cli, cfg, "start", "--nodes", str(NODES))
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"cluster of {NODES} nodes running at {cfg.bootstrap}" in started.stdout
        status = await asyncio.to_thread(_cli, cfg, "status")  # the folder names the nodes
        assert status.returncode == 0, status.stdout + status.stderr
        state = json.loads(status.stdout)
        assert state["running"] is True and state["bootstrap"] == cfg.bootstrap
        assert [n["node_id"] for n in state["nodes"]] == [1, 2, 3]
        assert all(n["running"] for n in state["nodes"])

        settings = KafkaSettings(bootstrap_servers=cfg.bootstrap, topic_prefix="cluster.")
        names = TopicNames(settings.topic_prefix)
        shares = names(SHARES)
        admin = make_admin(settings, "tests-cluster")
        await admin.start()
        try:
            # The replication factor is the cluster's: nothing says 3 here. (One partition each
            # keeps the nodes' restarts short on a small machine.)
            created = await create_topics(admin, names, partitions=1)
            expected = {names(s.name) for s in CATALOGUE} | {
                names(dlq_of(s.name)) for s in CATALOGUE
            }
            assert set(created) == expected
            described = await admin.describe_topics(sorted(expected))
            replicas = {len(p["replicas"]) for t in described for p in t["partitions"]}
            assert replicas == {3}
            resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in sorted(expected)]
            min_isr = {
                name: {entry[0]: entry[1] for entry in entries}["min.insync.replicas"]
                for response in await admin.describe_configs(resources)
                for _, _, _, name, entries in response.resources
            }
            assert set(min_isr) == expected
            assert set(min_isr.values()) == {"2"}
            # So do the topics a running service creates for itself: its internal (re-keyed)
            # topics and its stores' changelogs, made by the runtime's own start-up step.
            internal = await _service_topics(settings, tmp_path / "state")
            described = await admin.describe_topics(sorted(internal))
            assert {t["topic"] for t in described} == set(internal)
            assert {len(p["replicas"]) for t in described for p in t["partitions"]} == {3}
            resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in sorted(internal)]
            configs = {
                name: {entry[0]: entry[1] for entry in entries}
                for response in await admin.describe_configs(resources)
                for _, _, _, name, entries in response.resources
            }
            assert {c["min.insync.replicas"] for c in configs.values()} == {"2"}, configs
            assert {configs[t]["cleanup.policy"] for t in internal if "changelog" in t} == {
                "compact"
            }

            producer = make_producer(settings, transactional_id="cluster-tx")
            await producer.start()
            try:
                await _send(producer, shares, b"before")
                before = await read_topic(settings, SHARES, expect=1)
                assert [m.value for m in before] == [b"before"]

                # Lose the leader of the partition written to.
                (topic,) = await admin.describe_topics([shares])
                leader = next(p["leader"] for p in topic["partitions"] if p["partition"] == 0)
                lost = leader - 1
                assert await asyncio.to_thread(broker.kill_node, cfg, lost)
                assert not broker.status(broker.node(cfg, lost))["running"]
                # Two of three in sync are enough: the transaction commits, readers read.
                await _send(producer, shares, b"during")
                during = await read_topic(settings, SHARES, expect=2)
                assert [m.value for m in during] == [b"before", b"during"]
                partial = broker.status(cfg)
                assert partial["running"] is False and partial["running_nodes"] == NODES - 1

                # Back: it rejoins the cluster and catches up to be in sync again.
                await asyncio.to_thread(broker.start_node, cfg, lost, timeout=120)
                assert await asyncio.to_thread(broker.cluster_brokers, cfg) == {1, 2, 3}
                await _wait_for_isr(admin, shares, NODES, within=60)
                await _send(producer, shares, b"after")
            finally:
                await producer.stop()
            after = await read_topic(settings, SHARES, expect=3)
            assert [m.value for m in after] == [b"before", b"during", b"after"]
        finally:
            await admin.close()

        stopped = await asyncio.to_thread(_cli, cfg, "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "stopped" in stopped.stdout
        assert not broker.status(cfg)["running"]
        assert all(broker.status(broker.node(cfg, i))["pid"] is None for i in range(NODES))
    finally:
        broker.stop(cfg)
