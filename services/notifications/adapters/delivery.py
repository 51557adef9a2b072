"""The sender: delivers committed messages on their channels, concurrently, with retries.

Each (message, channel) is its own asyncio task, so one bad address or slow endpoint never
holds up another advocate's message. Concurrency is bounded twice: overall, and per
destination (the SMTP relay; each webhook host), so a slow webhook occupies at most its own
slots. A slot is held only while talking to a server, never while waiting to retry.

Transient failures are retried up to the channel's attempt limit (NOTIFICATIONS_SMTP_MAX_ATTEMPTS
for email, the program's `webhook.max_attempts`), after exponential backoff with jitter; a
permanent failure or the last transient one gives up. Either way the outcome is reported to
the processor, which records it in the task's next transaction.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from referrals.programs import templating
from referrals.programs.model import NotificationChannel, ProgramDocument
from services.notifications.adapters import smtp, unsubscribe, webhook
from services.notifications.adapters.config import NotificationsSettings
from services.notifications.adapters.failures import (
    BAD_MESSAGE,
    RETRIES_EXHAUSTED,
    DeliveryFailure,
    PermanentFailure,
    TransientFailure,
)
from services.notifications.adapters.metrics import NotificationMetrics
from services.notifications.adapters.rendering import render
from services.notifications.domain.messages import Message, RenderedMessage

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
EMAIL, WEBHOOK = NotificationChannel.EMAIL, NotificationChannel.WEBHOOK


@dataclass(frozen=True, slots=True)
class Delivery:
    """A committed message to deliver on `channels` (all of its own, or those still to do)."""

    task: int
    message: Message
    program: ProgramDocument
    channels: tuple[NotificationChannel, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One channel of one message: accepted at `accepted_at`, or given up on (`reason`)."""

    task: int
    message: Message
    channel: NotificationChannel
    attempts: int
    accepted_at: datetime | None = None
    reason: str = ""
    detail: str = ""

    @property
    def delivered(self) -> bool:
        return self.accepted_at is not None


def backoff_s(attempt: int, base_s: float, cap_s: float, rand: float) -> float:
    """The wait after failed attempt `attempt` (1-based): the ceiling base * 2^(attempt-1),
    capped, of which half is fixed and half random ("equal jitter"), so retries of many
    messages that failed together spread out, yet never come back immediately."""
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, 32))
    return ceiling / 2 + ceiling / 2 * rand


class Sender:
    def __init__(
        self,
        settings: NotificationsSettings,
        metrics: NotificationMetrics,
        clock: Clock,
        report: Callable[[Outcome], None],
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.report = report
        self.rand = rand
        self.smtp = smtp.SmtpTransport(settings)
        self.webhooks = webhook.WebhookTransport()
        self._slots = asyncio.Semaphore(settings.max_concurrent_deliveries)
        self._destinations: dict[str, asyncio.Semaphore] = {}
        self._running: dict[int, set[asyncio.Task[None]]] = defaultdict(set)
        self._stopping: set[int] = set()
        self._talking: set[asyncio.Task[Any]] = set()

    def submit(self, delivery: Delivery) -> None:
        self._stopping.discard(delivery.task)
        for channel in delivery.channels:
            job = asyncio.create_task(self._deliver(delivery, channel))
            running = self._running[delivery.task]
            running.add(job)
            job.add_done_callback(running.discard)

    async def drain(self, tasks: frozenset[int], grace_s: float) -> None:
        """Stops these tasks' deliveries: no new attempt starts; attempts talking to a server
        get `grace_s` to finish (their outcomes are still reported); the rest is cancelled."""
        self._stopping |= tasks
        jobs = {job for task in tasks for job in self._running.pop(task, set())}
        for job in jobs - self._talking:  # waiting for a slot or to retry: resent later
            job.cancel()
        talking = jobs & self._talking
        if talking:
            await asyncio.wait(talking, timeout=grace_s)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def close(self) -> None:
        await self.drain(frozenset(self._running), 0)
        await self.webhooks.close()
        await self.smtp.close()

    # -- one channel of one message -------------------------------------------------------------
    async def _deliver(self, delivery: Delivery, channel: NotificationChannel) -> None:
        self.metrics.in_flight.inc()
        try:
            await self._attempts(delivery, channel)
        except Exception as err:  # a bug: give up on this message, loudly, not on the others
            log.exception("delivery crashed", extra={"channel": channel.value})
            self._give_up(
                delivery, channel, 0, "INTERNAL_ERROR", PermanentFailure("BUG", repr(err))
            )
        finally:
            self.metrics.in_flight.dec()

    async def _attempts(self, delivery: Delivery, channel: NotificationChannel) -> None:
        message = delivery.message
        try:
            attempt_once, destination, limit = self._prepare(delivery, channel)
        except DeliveryFailure as failure:
            self._give_up(delivery, channel, 0, failure.reason, failure)
            return
        attempt = 0
        while delivery.task not in self._stopping:
            attempt += 1
            try:
                async with self._destination(destination), self._slots:
                    if delivery.task in self._stopping:
                        return  # stopped while waiting for a slot: resent by the next owner
                    await self._talk(attempt_once)
            except PermanentFailure as failure:
                self.metrics.failures.labels(channel.value, failure.reason).inc()
                self._give_up(delivery, channel, attempt, failure.reason, failure)
                return
            except TransientFailure as failure:
                self.metrics.failures.labels(channel.value, failure.reason).inc()
                if attempt >= limit:
                    self._give_up(delivery, channel, attempt, RETRIES_EXHAUSTED, failure)
                    return
                self.metrics.retries.labels(channel.value).inc()
                wait = backoff_s(
                    attempt, self.settings.retry_base_s, self.settings.retry_max_s, self.rand()
                )
                await asyncio.sleep(max(wait, failure.retry_after_s or 0.0))
                continue
            accepted_at = self.clock()
            self.metrics.sent.labels(message.kind.value, channel.value).inc()
            latency = (accepted_at - message.trigger_time).total_seconds()
            self.metrics.latency.labels(channel.value).observe(max(latency, 0.0))
            self.report(Outcome(delivery.task, message, channel, attempt, accepted_at))
            return

    async def _talk(self, attempt_once: Callable[[], Awaitable[None]]) -> None:
        """One attempt; while it runs, a stop waits for it (up to the grace period)."""
        job = asyncio.current_task()
        assert job is not None
        self._talking.add(job)
        try:
            await attempt_once()
        finally:
            self._talking.discard(job)

    def _give_up(
        self,
        delivery: Delivery,
        channel: NotificationChannel,
        attempts: int,
        reason: str,
        failure: DeliveryFailure,
    ) -> None:
        log.warning(
            "delivery failed for good",
            extra={
                "notification_id": delivery.message.notification_id,
                "advocate_id": delivery.message.advocate_id,
                "channel": channel.value,
                "attempts": attempts,
                "reason": reason,
                "error": str(failure)[:300],
            },
        )
        outcome = Outcome(
            delivery.task, delivery.message, channel, attempts, None, reason, str(failure)[:500]
        )
        self.report(outcome)

    def _destination(self, name: str) -> asyncio.Semaphore:
        slots = self._destinations.get(name)
        if slots is None:
            email = name == "smtp"
            size = (
                self.settings.smtp_max_connections
                if email
                else self.settings.webhook_max_connections
            )
            slots = self._destinations[name] = asyncio.Semaphore(size)
        return slots

    # -- what one attempt does, per channel -----------------------------------------------------
    def _prepare(
        self, delivery: Delivery, channel: NotificationChannel
    ) -> tuple[Callable[[], Awaitable[None]], str, int]:
        """(one attempt, its destination, the attempt limit); PermanentFailure if the message
        cannot be rendered or the channel is not configured."""
        message, program = delivery.message, delivery.program
        unsubscribe_url = self.unsubscribe_url(message, program)
        refer_url = f"{self.settings.refer_base_url.rstrip('/')}/{quote(message.advocate_id)}"
        try:
            rendered = render(
                message, program, unsubscribe_url=unsubscribe_url, refer_url=refer_url
            )
        except templating.TemplateProblem as err:
            raise PermanentFailure(BAD_MESSAGE, f"the template failed: {err}") from err
        if channel is EMAIL:
            return self._email(message, rendered, program, unsubscribe_url)
        hook = program.notifications.webhook
        if hook is None:
            raise PermanentFailure("WEBHOOK_NOT_CONFIGURED", "the program has no webhook")
        secret = webhook.secret_for(hook)
        payload = webhook.body(message, rendered, unsubscribe_url)

        async def post() -> None:
            signed = webhook.headers(message, payload, secret, self.clock())
            await self.webhooks.post(hook, payload, signed)

        return post, f"webhook:{urlsplit(hook.url).netloc}", hook.max_attempts

    def _email(
        self,
        message: Message,
        rendered: RenderedMessage,
        program: ProgramDocument,
        unsubscribe_url: str,
    ) -> tuple[Callable[[], Awaitable[None]], str, int]:
        sender = program.notifications.from_address

        async def send() -> None:
            email = smtp.build_email(
                message,
                rendered,
                from_address=sender,
                domain=self.settings.message_id_domain,
                unsubscribe_url=unsubscribe_url,
                now=self.clock(),
            )
            await self.smtp.send(email, sender, message.email.strip())

        return send, "smtp", self.settings.smtp_max_attempts

    def unsubscribe_url(self, message: Message, program: ProgramDocument) -> str:
        """The signed link: the program's unsubscribe page, else this service's endpoint."""
        base = program.notifications.unsubscribe_base_url or self.settings.unsubscribe_base_url
        token = unsubscribe.sign(
            self.settings.unsubscribe_secret, message.advocate_id, program.program_id, self.clock()
        )
        return unsubscribe.link(base, token)
