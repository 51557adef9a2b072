"""Each service runs as its own process against the real broker: it becomes ready, consumes its
inputs, dead-letters a malformed record with its reason, serves /metrics, and stops cleanly on
SIGTERM."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from datetime import UTC, datetime

import pytest

from referrals.contract.avro import AvroCodec
from referrals.contract.records import AdvocateProfile
from referrals.contract.topics import (
    ADVOCATES,
    CONVERSIONS,
    PAYOUT_RESULTS,
    STATUS,
    TopicNames,
    dlq_of,
)
from referrals.platform.settings import KafkaSettings
from referrals.streams.dlq import header_dict

from ..conftest import env_for
from .helpers import produce, read_topic, spawn_service

pytestmark = pytest.mark.broker

# (service, an input topic it consumes)
CASES = [("attribution", CONVERSIONS), ("rewards", PAYOUT_RESULTS), ("notifications", STATUS)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _wait_ready(port: int, proc: subprocess.Popen[bytes], within: float = 40.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the service exited during start-up"
        try:
            if _get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the service was not ready within {within} s")


def _metric(body: str, name: str, **labels: str) -> float:
    for line in body.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(("service", "topic"), CASES)
async def test_service_consumes_dead_letters_and_stops_cleanly(
    topics: KafkaSettings, service: str, topic: str
) -> None:
    port = _free_port()
    prefix = service.upper()
    env = env_for(
        topics,
        **{
            f"{prefix}_METRICS_PORT": str(port),
            f"{prefix}_GROUP_ID": f"{topics.topic_prefix}{service}",
        },
    )
    proc = spawn_service(service, env)
    try:
        _wait_ready(port, proc)
        profile = AdvocateProfile(
            "p",
            "adv-1",
            "a@example.com",
            "A",
            "0" * 64,
            False,
            True,
            datetime(2026, 1, 1, tzinfo=UTC),
        )
        await produce(topics, ADVOCATES, [(b"adv-1", AvroCodec().encode(profile))])
        await produce(topics, topic, [(b"k-bad", b"{not avro at all}")])

        dead = await read_topic(topics, dlq_of(topic), expect=1, within=30)
        assert len(dead) == 1
        assert dead[0].value == b"{not avro at all}" and dead[0].key == b"k-bad"
        headers = header_dict(dead[0].headers)
        assert headers["dlq.error.reason"] == "BAD_MAGIC"
        assert headers["dlq.service"] == service
        assert headers["dlq.original.topic"] == TopicNames(topics.topic_prefix)(topic)
        assert headers["dlq.original.offset"] == "0"

        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert _metric(body, "referrals_dead_letters_total", topic=topic, reason="BAD_MAGIC") == 1
        assert _metric(body, "referrals_records_in_total", topic=ADVOCATES) == 1
        assert _metric(body, "referrals_transactions_total", outcome="commit") >= 1
        health = json.loads(_get(f"http://127.0.0.1:{port}/healthz")[1])
        assert health["alive"] is True
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert b"stopped cleanly" in stderr
