"""The sender with fake transports: retries with backoff, giving up, isolation of slow
destinations, and what a stop does to deliveries in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage

import pytest
from notifications_builders import NOW, known_advocate, program, status

from referrals.contract.records import ReferralStatus
from referrals.platform.metrics import RuntimeMetrics
from referrals.programs.model import NotificationChannel, ProgramDocument, Webhook
from services.notifications.adapters.config import NotificationsSettings
from services.notifications.adapters.delivery import Delivery, Outcome, Sender
from services.notifications.adapters.failures import (
    DeliveryFailure,
    PermanentFailure,
    TransientFailure,
)
from services.notifications.adapters.metrics import NotificationMetrics
from services.notifications.domain.messages import Message
from services.notifications.domain.plan import on_status

EMAIL, WEBHOOK = NotificationChannel.EMAIL, NotificationChannel.WEBHOOK
FAST = NotificationsSettings(retry_base_s=0.001, retry_max_s=0.002, smtp_max_attempts=4)


@dataclass
class FakeSmtp:
    failures: list[DeliveryFailure] = field(default_factory=list)  # raised first, in order
    sent: list[EmailMessage] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set up, each send waits for it

    async def close(self) -> None:
        self.closed = True

    async def send(self, email: EmailMessage, sender: str, recipient: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(email)


@dataclass
class FakeWebhooks:
    slow_host: str = ""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    posted: list[str] = field(default_factory=list)

    async def post(self, webhook: Webhook, payload: bytes, headers: Mapping[str, str]) -> None:
        if self.slow_host and self.slow_host in webhook.url:
            await self.release.wait()
        self.posted.append(webhook.url)

    async def close(self) -> None:
        pass


def _sender(settings: NotificationsSettings = FAST) -> tuple[Sender, list[Outcome]]:
    outcomes: list[Outcome] = []
    metrics = NotificationMetrics(RuntimeMetrics("t").registry)
    sender = Sender(settings, metrics, lambda: NOW, outcomes.append, rand=lambda: 0.5)
    return sender, outcomes


def _message(referral: str = "r1", doc: ProgramDocument | None = None) -> Message:
    _, plan = on_status(
        known_advocate(doc), status(referral, ReferralStatus.LEAD), doc or program(), NOW
    )
    return plan.messages[0]


def _delivery(message: Message, doc: ProgramDocument, *channels: NotificationChannel) -> Delivery:
    return Delivery(0, message, doc, channels or (EMAIL,))


async def _settle(outcomes: list[Outcome], count: int) -> None:
    for _ in range(500):
        if len(outcomes) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{len(outcomes)} outcomes, expected {count}")


def _sample(sender: Sender, name: str, **labels: str) -> float:
    return sender.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_transient_failures_are_retried_until_the_server_accepts() -> None:
    sender, outcomes = _sender()
    smtp = FakeSmtp(
        [TransientFailure("CONNECTION", "refused"), TransientFailure("SMTP_4XX", "451")]
    )
    sender.smtp = smtp  # type: ignore[assignment]
    sender.submit(_delivery(_message(), program()))
    await _settle(outcomes, 1)
    [outcome] = outcomes
    assert (outcome.delivered, outcome.attempts, outcome.accepted_at) == (True, 3, NOW)
    assert smtp.sent[0]["Message-ID"] == f"<{outcome.message.notification_id}@referrals.local>"
    assert _sample(sender, "referrals_notifications_retries_total", channel="EMAIL") == 2
    assert (
        _sample(
            sender,
            "referrals_notifications_delivery_failures_total",
            channel="EMAIL",
            reason="SMTP_4XX",
        )
        == 1
    )
    assert _sample(sender, "referrals_notifications_sent_total", channel="EMAIL", kind="LEAD") == 1


async def test_a_permanent_failure_gives_up_at_once() -> None:
    sender, outcomes = _sender()
    sender.smtp = FakeSmtp([PermanentFailure("SMTP_REJECTED", "550 no such user")])  # type: ignore[assignment]
    sender.submit(_delivery(_message(), program()))
    await _settle(outcomes, 1)
    assert (outcomes[0].delivered, outcomes[0].attempts, outcomes[0].reason) == (
        False,
        1,
        "SMTP_REJECTED",
    )
    assert "550" in outcomes[0].detail


async def test_transient_failures_give_up_after_the_attempt_limit() -> None:
    sender, outcomes = _sender()
    sender.smtp = FakeSmtp([TransientFailure("TIMEOUT", "slow")] * 10)  # type: ignore[assignment]
    sender.submit(_delivery(_message(), program()))
    await _settle(outcomes, 1)
    assert (outcomes[0].attempts, outcomes[0].reason) == (4, "RETRIES_EXHAUSTED")
    assert "TIMEOUT" in outcomes[0].detail


async def test_a_webhook_without_its_secret_is_given_up_without_an_attempt() -> None:
    doc = program(
        channels=["WEBHOOK"], webhook={"url": "https://crm.example/h", "secret_env": "NOPE_NOT_SET"}
    )
    sender, outcomes = _sender()
    sender.webhooks = FakeWebhooks()  # type: ignore[assignment]
    sender.submit(_delivery(_message(doc=doc), doc, WEBHOOK))
    await _settle(outcomes, 1)
    assert (outcomes[0].attempts, outcomes[0].reason) == (0, "WEBHOOK_SECRET_MISSING")


async def test_a_slow_webhook_host_holds_up_neither_email_nor_other_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFERRALS_WEBHOOK_SECRET", "k")
    settings = NotificationsSettings(webhook_max_connections=1, max_concurrent_deliveries=3)
    slow = program(channels=["EMAIL", "WEBHOOK"], webhook={"url": "https://slow.example/h"})
    fast = program(channels=["WEBHOOK"], webhook={"url": "https://fast.example/h"})
    sender, outcomes = _sender(settings)
    hooks = FakeWebhooks(slow_host="slow.example")
    sender.webhooks, sender.smtp = hooks, FakeSmtp()  # type: ignore[assignment]
    for referral in ("r1", "r2", "r3"):
        sender.submit(_delivery(_message(referral, slow), slow, EMAIL, WEBHOOK))
    sender.submit(_delivery(_message("r4", fast), fast, WEBHOOK))
    await _settle(outcomes, 4)  # three emails and the fast host's webhook
    assert sorted((o.message.referral_id, o.channel.value) for o in outcomes) == [
        ("r1", "EMAIL"), ("r2", "EMAIL"), ("r3", "EMAIL"), ("r4", "WEBHOOK"),
    ]  # fmt: skip
    hooks.release.set()
    await _settle(outcomes, 7)
    await sender.close()


async def test_a_stop_lets_an_attempt_in_progress_finish_and_drops_waiting_retries() -> None:
    sender, outcomes = _sender(NotificationsSettings(retry_base_s=60, retry_max_s=60))
    smtp = FakeSmtp(gate=asyncio.Event())
    sender.smtp = smtp  # type: ignore[assignment]
    sender.submit(_delivery(_message("r1"), program()))  # talking to the server
    await asyncio.sleep(0.01)
    smtp.failures.append(TransientFailure("CONNECTION", "refused"))
    smtp.gate.set()  # r1 fails once and sleeps a minute before its retry
    await asyncio.sleep(0.01)
    smtp.gate = asyncio.Event()
    sender.submit(_delivery(_message("r2"), program()))  # talking; answers within the grace
    await asyncio.sleep(0.01)
    jobs = {job.get_name(): job for job in sender._running[0]}
    asyncio.get_running_loop().call_later(0.05, smtp.gate.set)
    # A long grace: waiting for the sleeper would take its minute, then deliver r1 as well.
    await sender.drain(frozenset({0}), grace_s=3600)
    assert [(o.message.referral_id, o.delivered) for o in outcomes] == [("r2", True)]
    assert all(job.done() for job in jobs.values())
    assert sum(job.cancelled() for job in jobs.values()) == 1  # the sleeper
    await sender.close()
