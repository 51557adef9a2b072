"""`referrals doctor` against the real broker and the four services running as processes: a
healthy setup is diagnosed healthy (exit 0); the same setup broken on purpose (a topic deleted,
one given another partition count, a program record no service can read, the notifications
service stopped while its input grows) is diagnosed with exactly those problems and their fixes
(exit 1); a broker that is not there is exit 2."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka.admin import NewPartitions

from referrals.contract.topics import PROGRAMS, TopicNames, create_topics
from referrals.platform.settings import KafkaSettings
from referrals.programs.put import load_program, put
from referrals.streams.kafka import make_admin

from ..conftest import REPO, env_for
from .api_support import free_port
from .helpers import produce, run_cli, spawn_service

pytestmark = pytest.mark.broker

SERVICES = ("attribution", "rewards", "notifications", "api")
PROGRAM = REPO / "deploy" / "programs" / "acme-b2b.yaml"
READY_WITHIN_S = 90.0  # four services starting at once on a shared 2-core machine


@dataclass
class Setup:
    settings: KafkaSettings
    env: dict[str, str]  # the services' environment; doctor reads the same
    procs: dict[str, subprocess.Popen[bytes]]


def _service_env(settings: KafkaSettings, work: Path) -> dict[str, str]:
    token = uuid.uuid4().hex
    (work / "tokens.txt").write_text(f"portal {hashlib.sha256(token.encode()).hexdigest()}\n")
    env = {f"{s.upper()}_METRICS_PORT": str(free_port()) for s in SERVICES}
    for service in ("attribution", "rewards", "notifications"):
        env[f"{service.upper()}_GROUP_ID"] = f"{settings.topic_prefix}{service}"
        env[f"{service.upper()}_STATE_DIR"] = str(work / "state")
    return env | {
        "API_GRPC_PORT": str(free_port()),
        "API_TOKENS_FILE": str(work / "tokens.txt"),
        "API_STATE_DIR": str(work / "api"),
        "NOTIFICATIONS_SMTP_PORT": str(free_port()),
        "NOTIFICATIONS_UNSUBSCRIBE_PORT": str(free_port()),
        "NOTIFICATIONS_UNSUBSCRIBE_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
    }


def _ready(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _wait_ready(setup: Setup) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    waiting = set(SERVICES)
    while waiting and time.monotonic() < deadline:
        for service in sorted(waiting):
            proc = setup.procs[service]
            if proc.poll() is not None:
                raise AssertionError(f"{service} exited: {proc.communicate()[1][-2000:]!r}")
            if _ready(setup.env[f"{service.upper()}_METRICS_PORT"]):
                waiting.discard(service)
        time.sleep(0.3)
    assert not waiting, f"not ready within {READY_WITHIN_S} s: {sorted(waiting)}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest_asyncio.fixture(scope="module")
async def setup(
    kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Setup]:
    """Topics created under a prefix of its own, the example program put, the four services
    running and ready."""
    prefix = f"doc{uuid.uuid4().hex[:8]}."
    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, topic_prefix=prefix)
    admin = make_admin(settings, "tests")
    await admin.start()
    try:
        await create_topics(admin, TopicNames(prefix), partitions=3)
    finally:
        await admin.close()
    await put(settings, load_program(PROGRAM), "tests")
    env = env_for(settings, **_service_env(settings, tmp_path_factory.mktemp("doctor")))
    running = Setup(settings, env, {s: spawn_service(s, env) for s in SERVICES})
    try:
        _wait_ready(running)
        yield running
    finally:
        for proc in running.procs.values():
            _stop(proc)


def _doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "referrals.tools.cli", "doctor", "--json", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def _problems(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(f["check"], f["subject"]): f for f in report["findings"] if f["status"] == "problem"}


async def test_a_healthy_setup_is_diagnosed_healthy(setup: Setup) -> None:
    status, report = _doctor(setup.env)
    assert _problems(report) == {}
    assert status == 0 and report["healthy"] is True
    checked = {(f["check"], f["subject"]) for f in report["findings"]}
    assert {("services", s) for s in SERVICES} <= checked
    assert {("lag", s) for s in SERVICES if s != "api"} <= checked
    [topics] = [f for f in report["findings"] if f["check"] == "topics"]
    assert topics["detail"].startswith("all 36 topics as expected: 3 partitions")
    assert any(f["detail"].endswith("acme-b2b v1") for f in report["findings"])


def _share(i: int) -> str:
    return json.dumps(
        {
            "event_id": f"ev-{i}",
            "program_id": "acme-b2b",
            "advocate_id": f"adv-{i}",
            "channel": "EMAIL",
            "referral_code": f"code-{i}",
            "occurred_at": datetime.now(UTC).isoformat(),
        }
    )


async def test_a_broken_setup_is_diagnosed_with_each_problem_and_its_fix(setup: Setup) -> None:
    names = TopicNames(setup.settings.topic_prefix)
    admin = make_admin(setup.settings, "tests")
    await admin.start()
    try:  # topics no service reads or writes while nothing goes wrong
        await admin.delete_topics([names("operator.command-results.v1.dlq")])
        await admin.create_partitions({names("rewards.payouts.v1.dlq"): NewPartitions(4)})
    finally:
        await admin.close()
    await produce(setup.settings, PROGRAMS, [(b"acme-b2b", b"a program nobody can read")])
    _stop(setup.procs["notifications"])
    shares = "\n".join(_share(i) for i in range(10))
    published = run_cli(setup.settings, "publish", "referral.shares.v1", "-", stdin=shares)
    assert published.returncode == 0, published.stderr

    status, report = _doctor(setup.env, "--max-lag", "5")

    problems = _problems(report)
    assert set(problems) == {
        ("topics", names("operator.command-results.v1.dlq")),
        ("topics", names("rewards.payouts.v1.dlq")),
        ("programs", "acme-b2b"),
        ("services", "notifications"),
        ("lag", "notifications"),
    }, problems
    assert status == 1 and report["healthy"] is False
    missing = problems[("topics", names("operator.command-results.v1.dlq"))]
    assert missing["detail"] == "missing"
    assert missing["fix"].startswith("referrals topics create --partitions 3")
    partitions = problems[("topics", names("rewards.payouts.v1.dlq"))]
    assert partitions["detail"].startswith("4 partitions, expected 3")
    program = problems[("programs", "acme-b2b")]
    assert "BAD_MAGIC" in program["detail"] and "version 1 stays in force" in program["detail"]
    stopped = problems[("services", "notifications")]
    assert "connection refused" in stopped["detail"]
    assert stopped["fix"].startswith("start it: referrals run notifications")
    lagging = problems[("lag", "notifications")]
    assert "0 members" in lagging["detail"] and "referral.shares.v1" in lagging["detail"]
    assert lagging["fix"].startswith("no instance of notifications is consuming")


def test_a_broker_that_cannot_be_reached_is_exit_status_2_and_services_are_still_checked() -> None:
    nowhere = env_for(KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"))
    api = f"api=http://127.0.0.1:{free_port()}"
    status, report = _doctor(nowhere, "--timeout", "3", "--services", "api", "--url", api)
    assert status == 2 and report["exit_status"] == 2
    assert [(f["check"], f["status"]) for f in report["findings"]] == [
        ("broker", "problem"),  # and nothing else that needs the broker
        ("services", "problem"),
    ]
    assert "KAFKA_BOOTSTRAP_SERVERS" in report["findings"][0]["fix"]
