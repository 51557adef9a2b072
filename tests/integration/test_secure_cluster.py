"""The three-node cluster secured (`referrals broker start --secure --nodes 3`): the nodes share
one CA and one set of SCRAM users, replicate to each other as the admin over SASL_SSL, every
node enforces the ACLs `referrals acl apply` set, and a node lost and started again rejoins
secured, its replicas back in sync, while a principal's writes go on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from referrals.contract import acls
from referrals.contract.topics import SHARES, STATUS
from referrals.streams.acls import describe
from referrals.streams.kafka import make_admin, make_producer
from referrals.tools import broker

from ..conftest import REPO, SecureBroker
from .helpers import read_topic
from .secure_probes import can_write
from .test_cluster import _free_ports, _wait_for_isr

pytestmark = pytest.mark.broker

NODES = 3


async def test_a_secured_cluster_enforces_the_acls_on_every_node_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    cfg = broker.BrokerConfig(
        port=_free_ports(NODES),
        controller_port=_free_ports(NODES),
        data_dir=tmp_path / "cluster",
        nodes=NODES,
        partitions=1,
    )
    secured = SecureBroker(cfg, "c.", acls.default_groups())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REFERRALS_"))}
    env["REFERRALS_BROKER_CONTROLLER_PORT"] = str(cfg.cport)
    start = [sys.executable, "-m", "referrals.tools.cli", "broker", "start", "--secure"]
    place = ["--nodes", str(NODES), "--port", str(cfg.port), "--data-dir", str(cfg.data_dir)]
    try:
        started = await asyncio.to_thread(
            subprocess.run, [*start, *place], env=env, cwd=REPO, capture_output=True,
            text=True, timeout=240, check=False,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        assert "secured: SASL_SSL" in started.stdout
        for step in (("topics", "create", "--partitions", "1"), ("acl", "apply")):
            done = await asyncio.to_thread(secured.cli, "admin", *step)
            assert done.returncode == 0, done.stdout + done.stderr
        status = broker.status(cfg)
        assert status["secure"] is True and status["running_nodes"] == NODES

        wanted = set(acls.bindings(secured.prefix, secured.groups))
        admin = make_admin(secured.settings("admin"), "tests-secure-cluster")
        await admin.start()
        try:
            for node_id in (1, 2, 3):  # each node's own authorizer holds the table
                held = await describe(admin, node_id)
                assert held == wanted, f"node {node_id}"
            shares = secured.prefix + SHARES
            (topic,) = await admin.describe_topics([shares])
            assert {len(p["replicas"]) for p in topic["partitions"]} == {NODES}
            assert await can_write(secured, "platform", SHARES)
            assert not await can_write(secured, "platform", STATUS)

            # Lose the leader: the platform's writes go on (two of three in sync), and the
            # node comes back secured, replicating over SASL_SSL as the admin.
            leader = next(p["leader"] for p in topic["partitions"] if p["partition"] == 0)
            assert await asyncio.to_thread(broker.kill_node, cfg, leader - 1)
            producer = make_producer(secured.settings("platform"), client_id="platform")
            await producer.start()
            try:
                await producer.send_and_wait(shares, b"during", key=b"k")
                await asyncio.to_thread(broker.start_node, cfg, leader - 1, timeout=180)
                assert await asyncio.to_thread(broker.cluster_brokers, cfg) == {1, 2, 3}
                await _wait_for_isr(admin, shares, NODES, within=90)
                await producer.send_and_wait(shares, b"after", key=b"k")
            finally:
                await producer.stop()
            got = await read_topic(secured.settings("operator"), SHARES, expect=2)
            assert [m.value for m in got] == [b"during", b"after"]
            assert await describe(admin, leader) == wanted  # the restarted node enforces it
        finally:
            await admin.close()
    finally:
        broker.stop(cfg)
