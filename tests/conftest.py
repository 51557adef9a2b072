"""Shared fixtures. The Kafka broker is the project's own (deploy/kafka), started once per test
session on free ports with a fresh data directory. If it cannot start, every test that needs it
FAILS with the broker's log; nothing is ever skipped for lack of a broker."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from referrals.contract.acls import SERVICES
from referrals.contract.topics import TopicNames, create_topics
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_admin
from referrals.tools import broker, broker_secure

REPO = Path(__file__).resolve().parent.parent


@dataclass
class BrokerFacts:
    """What the session learned about the broker, printed in the terminal summary."""

    bootstrap: str = ""
    cluster_id: str = ""
    pid: int = 0
    topics_created: int = field(default=0)


FACTS = BrokerFacts()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[broker.BrokerConfig]:
    # TEST_KAFKA_PORT pins the session broker's port; in a parallel run only the first
    # worker's (the others' brokers take free ports, as two cannot share one).
    pinned = os.environ.get("PYTEST_XDIST_WORKER", "gw0") == "gw0"
    port = (int(os.environ.get("TEST_KAFKA_PORT", "0")) if pinned else 0) or _free_port()
    cfg = broker.BrokerConfig(
        port=port,
        controller_port=_free_port(),
        data_dir=tmp_path_factory.mktemp("kafka"),
        partitions=3,
    )
    try:
        FACTS.pid = broker.start(cfg, timeout=120)
    except broker.BrokerError as err:
        pytest.fail(f"the project's Kafka broker could not start:\n{err}", pytrace=False)
    FACTS.bootstrap = cfg.bootstrap
    meta = (cfg.data_dir / "data" / "meta.properties").read_text()
    FACTS.cluster_id = next(
        (line.split("=", 1)[1] for line in meta.splitlines() if line.startswith("cluster.id")), "?"
    )
    yield cfg
    broker.stop(cfg)


@pytest.fixture(scope="session")
def kafka(kafka_broker: broker.BrokerConfig) -> KafkaSettings:
    """Client settings for the session broker (no topic prefix)."""
    return KafkaSettings(bootstrap_servers=kafka_broker.bootstrap)


@pytest_asyncio.fixture
async def topics(kafka: KafkaSettings) -> AsyncIterator[KafkaSettings]:
    """Creates the contract's topics under a prefix unique to this test; returns its settings."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, topic_prefix=prefix)
    admin = make_admin(settings, "tests")
    await admin.start()
    try:
        created = await create_topics(admin, TopicNames(prefix), partitions=3)
        FACTS.topics_created += len(created)
    finally:
        await admin.close()
    yield settings


@dataclass
class SecureBroker:
    """A secured broker (`referrals broker start --secure`) with the contract's topics under
    `prefix`, the services' consumer `groups`, and the contract's ACLs applied."""

    cfg: broker.BrokerConfig
    prefix: str
    groups: dict[str, str]

    def settings(self, principal: str) -> KafkaSettings:
        """Client settings of `principal` (a SCRAM user), as its .env file gives them."""
        return broker_secure.client_settings(self.cfg, principal, self.prefix)

    def env(self, principal: str, **extra: str) -> dict[str, str]:
        """A subprocess's environment running as `principal`: only its KAFKA_* settings (from
        its .env file), the topic prefix and the services' group ids."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REFERRALS_"))}
        env |= broker_secure.env_of(self.cfg, principal)
        env |= {"KAFKA_TOPIC_PREFIX": self.prefix}
        env |= {f"{service.upper()}_GROUP_ID": group for service, group in self.groups.items()}
        return env | extra

    def cli(
        self, principal: str, *args: str, stdin: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """`referrals ARGS` run as `principal`."""
        return subprocess.run(
            [sys.executable, "-m", "referrals.tools.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(principal),
            cwd=REPO,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """The project's broker started secured through the CLI, as an operator would: `referrals
    broker start --secure`, then, as the admin principal, `referrals topics create` and
    `referrals acl apply`. Any step failing FAILS the tests that need it, with its output."""
    cfg = broker.BrokerConfig(
        port=_free_port(),
        controller_port=_free_port(),
        data_dir=tmp_path_factory.mktemp("kafka-secure"),
        partitions=3,
    )
    secured = SecureBroker(cfg, "sec.", {s: f"sec-{s}" for s in SERVICES})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REFERRALS_"))}
    env["REFERRALS_BROKER_CONTROLLER_PORT"] = str(cfg.cport)
    place = ["--port", str(cfg.port), "--data-dir", str(cfg.data_dir)]
    started = subprocess.run(
        [sys.executable, "-m", "referrals.tools.cli", "broker", "start", "--secure", *place],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        if started.returncode != 0:
            pytest.fail(f"the secured broker could not start:\n{started.stderr}", pytrace=False)
        for step in (("topics", "create", "--partitions", "3"), ("acl", "apply")):
            done = secured.cli("admin", *step)
            if done.returncode != 0:
                pytest.fail(
                    f"`referrals {' '.join(step)}` as admin failed on the secured broker:\n"
                    f"{done.stdout}{done.stderr}",
                    pytrace=False,
                )
        yield secured
    finally:
        broker.stop(cfg)


# The notifications service refuses to start without an unsubscribe secret of its own.
UNSUBSCRIBE_SECRET = secrets.token_urlsafe(32)


def env_for(settings: KafkaSettings, **extra: str) -> dict[str, str]:
    """Environment for a subprocess (CLI or service) talking to the test broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REFERRALS_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        KAFKA_TOPIC_PREFIX=settings.topic_prefix,
        NOTIFICATIONS_UNSUBSCRIBE_SECRET=UNSUBSCRIBE_SECRET,
    )
    env.update(extra)
    return env


def _broker_line(facts: BrokerFacts) -> str:
    return (
        f"Kafka: integration tests ran against the project's Apache Kafka broker "
        f"(KRaft, deploy/kafka) at {facts.bootstrap}, pid {facts.pid}, cluster id "
        f"{facts.cluster_id}; {facts.topics_created} topics created on it."
    )


WORKER_BROKERS: list[str] = []  # in the controller of a parallel run: one line per worker


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A parallel run's worker (pytest-xdist) hands its broker's line to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None and FACTS.bootstrap:
        output["broker"] = _broker_line(FACTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    line = getattr(node, "workeroutput", {}).get("broker")
    if line:
        WORKER_BROKERS.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in [_broker_line(FACTS)] if FACTS.bootstrap else sorted(WORKER_BROKERS):
        terminalreporter.write_line(line)
