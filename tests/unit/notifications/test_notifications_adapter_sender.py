"""The sender with fake transports: one attempt per hand-over, failures for now reported to be
retried (the processor keeps them), a destination that is down probed one message at a time,
isolation of slow destinations, and what a stop does to deliveries in flight."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
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
FAST = NotificationsSettings(retry_base_s=0.001, retry_max_s=0.002)


@dataclass
class FakeSmtp:
    failures: list[DeliveryFailure] = field(default_factory=list)  # raised first, in order
    sent: list[EmailMessage] = field(default_factory=list)  # as a mail client reads them
    gate: asyncio.Event | None = None  # when set up, each send waits for it
    began: asyncio.Event = field(default_factory=asyncio.Event)  # set by the first send

    async def close(self) -> None:
        self.closed = True

    async def send(self, wire: bytes, sender: str, recipient: str) -> None:
        self.began.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        parsed = email.message_from_bytes(wire, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.sent.append(parsed)


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
    sender = Sender(settings, metrics, lambda: NOW, outcomes.append)
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


async def _waiting_for_the_session(sender: Sender, count: int) -> None:
    """Until `count` deliveries wait for a session to the relay (however loaded the machine)."""
    for _ in range(2000):
        destination = sender._destinations.get("smtp")
        if destination is not None and destination.slots.waiting >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"fewer than {count} deliveries waiting for the relay")


def _sample(sender: Sender, name: str, **labels: str) -> float:
    return sender.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_failure_for_now_is_reported_to_be_retried_and_the_next_hand_over_delivers() -> (
    None
):
    sender, outcomes = _sender()
    smtp = FakeSmtp([TransientFailure("SMTP_4XX", "451")])
    sender.smtp = smtp  # type: ignore[assignment]
    message = _message()
    sender.submit(_delivery(message, program()))
    await _settle(outcomes, 1)
    assert (outcomes[0].delivered, outcomes[0].retry, outcomes[0].reason) == (
        False,
        True,
        "SMTP_4XX",
    )
    assert smtp.sent == []  # one attempt: the sender never waits to retry
    sender.submit(_delivery(message, program()))
    await _settle(outcomes, 2)
    assert (outcomes[1].delivered, outcomes[1].accepted_at) == (True, NOW)
    assert smtp.sent[0]["Message-ID"] == f"<{message.notification_id}@referrals.local>"
    failures = "referrals_notifications_delivery_failures_total"
    assert _sample(sender, failures, channel="EMAIL", reason="SMTP_4XX") == 1
    assert _sample(sender, "referrals_notifications_sent_total", channel="EMAIL", kind="LEAD") == 1


async def test_a_relay_that_is_down_is_probed_one_message_at_a_time_until_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender, outcomes = _sender()
    smtp = FakeSmtp([TransientFailure("CONNECTION", "refused")])
    sender.smtp = smtp  # type: ignore[assignment]
    sender.submit(_delivery(_message("r0"), program()))
    await _settle(outcomes, 1)
    assert sender.down() == ["smtp"]
    assert _sample(sender, "referrals_notifications_destinations_down", channel="EMAIL") == 1
    # While down: the first message handed over probes; the others are not tried.
    smtp.gate = asyncio.Event()
    smtp.failures.append(TransientFailure("CONNECTION", "refused"))
    for referral in ("r1", "r2", "r3"):
        sender.submit(_delivery(_message(referral), program()))
    await _settle(outcomes, 3)
    deferred = outcomes[1:]
    assert [(o.retry, o.reason, o.attempted) for o in deferred] == [(True, "RELAY_DOWN", False)] * 2
    smtp.gate.set()
    await _settle(outcomes, 4)
    assert (outcomes[3].message.referral_id, outcomes[3].reason) == ("r1", "CONNECTION")
    # The relay is back: the next probe is accepted and everything goes through again.
    for referral in ("r2", "r3"):
        sender.submit(_delivery(_message(referral), program()))
    await _settle(outcomes, 6)
    assert sum(o.delivered for o in outcomes) >= 1 and sender.down() == []
    sender.submit(_delivery(_message("r3"), program()))
    await _settle(outcomes, 7)
    delivered = sorted(o.message.referral_id for o in outcomes if o.delivered)
    assert delivered[-1] == "r3" and "r2" in delivered
    assert _sample(sender, "referrals_notifications_destinations_down", channel="EMAIL") == 0
    # One line when it went down, one when it came back: not one per message.
    lines = [r.getMessage() for r in caplog.records if "destination" in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == ["destination down", "destination back"]


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


async def test_a_webhook_without_its_secret_is_given_up_without_an_attempt() -> None:
    doc = program(
        channels=["WEBHOOK"],
        webhook={"url": "https://crm.example/h", "secret_env": "WEBHOOK_SECRET_NOT_SET"},
    )
    sender, outcomes = _sender()
    sender.webhooks = FakeWebhooks()  # type: ignore[assignment]
    sender.submit(_delivery(_message(doc=doc), doc, WEBHOOK))
    await _settle(outcomes, 1)
    assert (outcomes[0].attempts, outcomes[0].reason) == (0, "WEBHOOK_SECRET_MISSING")


async def test_a_slow_webhook_host_holds_up_neither_email_nor_other_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET_REFERRALS", "k")
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


async def test_a_stop_lets_an_attempt_in_progress_finish_and_drops_those_waiting_for_a_slot() -> (
    None
):
    settings = NotificationsSettings(smtp_max_connections=1)
    sender, outcomes = _sender(settings)
    smtp = FakeSmtp(gate=asyncio.Event())
    sender.smtp = smtp  # type: ignore[assignment]
    sender.submit(_delivery(_message("r1"), program()))  # talking; answers within the grace
    sender.submit(_delivery(_message("r2"), program()))  # waiting for the only connection
    await asyncio.wait_for(smtp.began.wait(), 10)  # r1 rendered (in a thread) and talking
    jobs = list(sender._running[0])
    asyncio.get_running_loop().call_later(0.05, smtp.gate.set)
    await sender.drain(frozenset({0}), grace_s=3600)
    assert [(o.message.referral_id, o.delivered) for o in outcomes] == [("r1", True)]
    assert all(job.done() for job in jobs)
    assert sum(job.cancelled() for job in jobs) == 1  # the one waiting for a slot
    await sender.close()


async def test_the_latency_from_the_trigger_to_acceptance_is_observed_by_channel_and_kind() -> None:
    outcomes: list[Outcome] = []
    metrics = NotificationMetrics(RuntimeMetrics("t").registry)
    accepted = NOW + timedelta(seconds=90)  # the status occurred at NOW
    sender = Sender(FAST, metrics, lambda: accepted, outcomes.append)
    sender.smtp = FakeSmtp([])  # type: ignore[assignment]
    message = _message()
    sender.submit(_delivery(message, program()))
    await _settle(outcomes, 1)
    latency = "referrals_notifications_delivery_latency_seconds"
    labels = {"channel": "EMAIL", "kind": "LEAD"}
    assert message.trigger_time == NOW
    assert _sample(sender, f"{latency}_count", **labels) == 1
    assert _sample(sender, f"{latency}_sum", **labels) == 90
    assert _sample(sender, f"{latency}_bucket", le="60.0", **labels) == 0
    assert _sample(sender, f"{latency}_bucket", le="300.0", **labels) == 1
    assert _sample(sender, f"{latency}_count", channel="EMAIL", kind="WON") == 0


# -- no personal data in what is kept of a failure -----------------------------------------------
async def test_a_refusal_quoting_the_address_is_kept_and_logged_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender, outcomes = _sender()
    quoted = "recipient: 550 5.1.1 <alex@example.com>: user unknown (Alex Doe)"
    smtp = FakeSmtp(failures=[PermanentFailure("RECIPIENT_REFUSED", quoted)])
    sender.smtp = smtp  # type: ignore[assignment]
    with caplog.at_level("WARNING"):
        sender.submit(_delivery(_message(), program()))
        await _settle(outcomes, 1)
    assert outcomes[0].detail == (
        "RECIPIENT_REFUSED: recipient: 550 5.1.1 <<address>>: user unknown (<personal data>)"
    )
    assert "delivery failed for good" in caplog.text
    assert "alex@example.com" not in caplog.text and "Alex Doe" not in caplog.text


async def test_a_template_failure_naming_the_advocate_is_kept_without_the_name() -> None:
    # Valid with the sample profile; with a real one the lookup fails naming the key it missed.
    text = (
        "{% if advocate_name != 'Alex Doe' %}{{ dict(a=1)[advocate_name] }}{% endif %}"
        "{{ unsubscribe_url }}"
    )
    doc = program(templates={"LEAD": {"en-US": {"subject": "Hi", "text": text}}})
    sender, outcomes = _sender()
    message = _message(doc=doc)
    context = {**message.context, "advocate_name": "Zed Zimmer"}
    message = replace(message, context=context, display_name="Zed Zimmer")
    sender.submit(_delivery(message, doc))
    await _settle(outcomes, 1)
    assert outcomes[0].reason == "BAD_MESSAGE"
    assert "Zed Zimmer" not in outcomes[0].detail and "<personal data>" in outcomes[0].detail


async def test_a_won_thank_you_takes_the_relay_s_next_free_session_before_earlier_messages() -> (
    None
):
    settings = NotificationsSettings(smtp_max_connections=1)
    sender, outcomes = _sender(settings)
    smtp = FakeSmtp(gate=asyncio.Event())
    sender.smtp = smtp  # type: ignore[assignment]
    for referral in ("r1", "r2", "r3"):  # r1 talks; r2 and r3 wait for the one session
        sender.submit(_delivery(_message(referral), program()))
    await _waiting_for_the_session(sender, 2)  # each rendered first, in a thread
    _, plan = on_status(known_advocate(), status("w1", ReferralStatus.WON), program(), NOW)
    [won] = [m for m in plan.messages if m.kind.value == "WON"]
    sender.submit(_delivery(won, program()))  # arrives last
    await _waiting_for_the_session(sender, 3)
    smtp.gate.set()
    await _settle(outcomes, 4)
    assert [o.message.referral_id for o in outcomes] == ["r1", "w1", "r2", "r3"]
    await sender.close()
