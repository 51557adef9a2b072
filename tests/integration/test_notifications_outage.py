"""A mail relay that is down (contract: "Faults"): messages wait durably, are retried with
backoff and delivered once it is back, each exactly once by Message-ID; only the delivery
deadline sends them to the .dlq (DEADLINE_EXCEEDED); waiting messages survive a SIGKILL of the
service with its local state gone (they come back from the changelog)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from referrals.contract.records import ReferralStatus
from referrals.contract.topics import NOTIFICATIONS_SENT, dlq_of
from referrals.platform.settings import KafkaSettings
from referrals.programs.model import MessageKind
from referrals.streams.dlq import header_dict

from .helpers import read_topic
from .test_notifications_support import (
    Service,
    SmtpSink,
    message_id,
    nid,
    profile,
    publish,
    put_program,
    running,
    sent_records,
    status,
)

pytestmark = pytest.mark.broker
S, K = ReferralStatus, MessageKind
N = 20
WAITING = "referrals_notifications_waiting_messages"
RETRIES = "referrals_notifications_retries_total"
DEAD = "referrals_notifications_dead_lettered_total"


def _advocates(prefix: str) -> list[str]:
    return [f"{prefix}-{i:02d}" for i in range(N)]


async def _leads(topics: KafkaSettings, advocates: list[str]) -> None:
    profiles = [profile(a, f"{a}@example.com") for a in advocates]
    await publish(topics, *profiles, *(status(a, "r1", S.LEAD) for a in advocates))


async def _health_shows(service: Service, down: list[str], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    detail: dict[str, object] = {}
    while time.monotonic() < deadline:
        detail = json.loads((await service.http("GET", "/healthz", service.metrics_port))[1])
        if detail.get("destinations_down") == down and detail.get("waiting_messages"):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"/healthz never showed {down} down with messages waiting: {detail}")


async def test_messages_due_while_the_relay_is_down_are_delivered_once_when_it_is_back(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    smtp = SmtpSink()  # not started: connections are refused
    put_program(topics, tmp_path, None)
    service = Service(topics, tmp_path, smtp.port)
    advocates = _advocates("down")
    with running(service):
        await service.start()
        await _leads(topics, advocates)
        await service.wait_metric(WAITING, N - 2)  # all but those being tried right now
        # Far more tries than the old limit of five each, and nothing given up on.
        await service.wait_metric(RETRIES, 6 * N, within=60, channel="EMAIL")
        assert await service.metric(DEAD) == 0
        assert await service.metric("referrals_notifications_destinations_down") == 1
        await _health_shows(service, ["smtp"])  # an SRE sees why mail is not going out
        smtp.start()
        try:
            await smtp.wait_for_ids(N, within=60)
            sent = await sent_records(topics, expect=N, within=30)
            assert await service.metric("referrals_notifications_destinations_down") == 0
            assert await service.metric(WAITING) == 0
            service.stop()
        finally:
            smtp.stop()
    assert Counter(m.message_id for m in smtp.received()) == {
        message_id(a, "r1", K.LEAD): 1 for a in advocates
    }
    assert Counter(r.notification_id for r in sent) == {nid(a, "r1", K.LEAD): 1 for a in advocates}
    assert await read_topic(topics, dlq_of(NOTIFICATIONS_SENT), within=2) == []
    logs = service.logs(tail=10**7)
    assert logs.count("destination down") == 1 and logs.count("destination back") == 1


async def test_past_the_delivery_deadline_waiting_messages_go_to_the_dlq(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    smtp = SmtpSink()  # never started
    put_program(topics, tmp_path, None)
    service = Service(topics, tmp_path, smtp.port, NOTIFICATIONS_DELIVERY_DEADLINE_S="3")
    advocates = _advocates("late")[:5]
    with running(service):
        await service.start()
        await _leads(topics, advocates)
        dead = await read_topic(topics, dlq_of(NOTIFICATIONS_SENT), expect=5, within=60)
        await service.wait_metric(DEAD, 5, channel="EMAIL", reason="DEADLINE_EXCEEDED")
        assert await service.metric(WAITING) == 0
        service.stop()
    assert sorted(m.key.decode() for m in dead) == advocates
    bodies = [json.loads(record.value) for record in dead]
    for record, body in zip(dead, bodies, strict=True):
        assert header_dict(record.headers)["dlq.error.reason"] == "DEADLINE_EXCEEDED"
        assert body["reason"] == "DEADLINE_EXCEEDED"
        # A relay that is down is probed one message at a time: on a busy machine a message
        # can wait behind the probe past its deadline without an attempt of its own.
        if body["attempts"] >= 1:
            assert "CONNECTION" in body["error"]
        else:
            assert "last error: none" in body["error"]
    assert any(body["attempts"] >= 1 for body in bodies)  # the probes did try the relay
    assert await sent_records(topics, within=2) == []


async def test_waiting_messages_survive_a_sigkill_with_the_local_state_gone(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    smtp = SmtpSink()
    put_program(topics, tmp_path, None)
    service = Service(topics, tmp_path, smtp.port)
    advocates = _advocates("kept")
    with running(service):
        await service.start()
        await _leads(topics, advocates)
        await service.wait_metric(WAITING, N - 2)
        await service.wait_metric(RETRIES, 2 * N, channel="EMAIL")
        service.kill()
        shutil.rmtree(tmp_path / "state")  # only the changelog can bring them back
        await service.start()
        await service.wait_metric(WAITING, N - 2)
        await service.wait_metric(RETRIES, N, channel="EMAIL")  # tried again, still down
        assert await service.metric(DEAD) == 0
        smtp.start()
        try:
            await smtp.wait_for_ids(N, within=60)
            sent = await sent_records(topics, expect=N, within=30)
            service.stop()
        finally:
            smtp.stop()
    assert Counter(m.message_id for m in smtp.received()) == {
        message_id(a, "r1", K.LEAD): 1 for a in advocates
    }
    assert Counter(r.notification_id for r in sent) == {nid(a, "r1", K.LEAD): 1 for a in advocates}
