"""The sender: one attempt per (message, channel) handed over, concurrently, and its outcome.

Each (message, channel) is its own asyncio task, so one bad address or slow endpoint never
holds up another advocate's message. Concurrency is bounded twice: overall, and per
destination (the SMTP relay; each webhook host), so a slow webhook occupies at most its own
slots; a WON's thank-you takes the next free slot before the other messages waiting
(`slots`). The processor bounds how many deliveries are handed over at once
(NOTIFICATIONS_MAX_IN_FLIGHT), so memory stays bounded however many messages wait.

The sender does not wait to retry: a failure for now is reported (`Outcome.retry`), and the
processor records when to try again in the task's store (`domain.retry`), so a waiting message
survives a crash or a rebalance and holds no memory. A permanent failure is reported too, and
dead-lettered at once.

A destination that is down (connection refused, timeout, HTTP 5xx/429) is probed with one
message at a time: while a probe is out, other messages for it are not tried but reported back
as deferred (RELAY_DOWN), to wait their turn again. Its going down and its coming back are each
logged once, not per message; `referrals_notifications_destinations_down` counts them.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from referrals.programs import templating
from referrals.programs.model import NotificationChannel, ProgramDocument
from services.notifications.adapters import sales, smtp, unsubscribe, webhook
from services.notifications.adapters.config import NotificationsSettings
from services.notifications.adapters.failures import (
    BAD_MESSAGE,
    DESTINATION_DOWN,
    RELAY_DOWN,
    DeliveryFailure,
    PermanentFailure,
    TransientFailure,
    scrub,
)
from services.notifications.adapters.metrics import NotificationMetrics
from services.notifications.adapters.rendering import Renderer
from services.notifications.adapters.slots import Slots, urgent
from services.notifications.adapters.webhook_policy import AllowList
from services.notifications.domain.messages import Message, RenderedMessage

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
EMAIL, WEBHOOK = NotificationChannel.EMAIL, NotificationChannel.WEBHOOK
SALES = NotificationChannel.SALES_WEBHOOK


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
    retry: bool = False  # failed for now (or deferred): to be tried again, not dead-lettered
    retry_after_s: float | None = None  # the server's Retry-After, when it gave one

    @property
    def delivered(self) -> bool:
        return self.accepted_at is not None

    @property
    def attempted(self) -> bool:
        """Whether the sender talked to the server (a deferred try did not)."""
        return self.reason != RELAY_DOWN


@dataclass
class _Destination:
    """A relay or webhook host: its slots and whether it is down (then: one probe at a time)."""

    name: str
    slots: Slots
    down_since: datetime | None = None
    probing: bool = False


class Sender:
    def __init__(
        self,
        settings: NotificationsSettings,
        metrics: NotificationMetrics,
        clock: Clock,
        report: Callable[[Outcome], None],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.report = report
        self.smtp = smtp.SmtpTransport(settings)
        self.webhooks = webhook.WebhookTransport(AllowList.parse(settings.webhook_allow_hosts))
        self.renderer = Renderer()
        self._slots = Slots(settings.max_concurrent_deliveries)
        self._destinations: dict[str, _Destination] = {}
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

    def down(self) -> list[str]:
        """The destinations down now (their names: "smtp", "webhook:<host>", "sales:<host>")."""
        return sorted(d.name for d in self._destinations.values() if d.down_since is not None)

    async def drain(self, tasks: frozenset[int], grace_s: float) -> None:
        """Stops these tasks' deliveries: no new attempt starts; attempts talking to a server
        get `grace_s` to finish (their outcomes are still reported); the rest is cancelled."""
        self._stopping |= tasks
        jobs = {job for task in tasks for job in self._running.pop(task, set())}
        for job in jobs - self._talking:  # waiting for a slot: sent again by the next owner
            job.cancel()
        talking = jobs & self._talking
        if talking:
            await asyncio.wait(talking, timeout=grace_s)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def close(self) -> None:
        await self.drain(frozenset(self._running), 0)
        self.renderer.close()
        await self.webhooks.close()
        await self.smtp.close()

    # -- one channel of one message -------------------------------------------------------------
    async def _deliver(self, delivery: Delivery, channel: NotificationChannel) -> None:
        self.metrics.in_flight.inc()
        try:
            await self._attempt(delivery, channel)
        except Exception as err:  # a bug: give up on this message, loudly, not on the others
            # The frames, and the message scrubbed: an exception's text may quote the address.
            bug = PermanentFailure("BUG", repr(err))
            frames = "".join(traceback.format_tb(err.__traceback__))
            log.error(
                "delivery crashed",
                extra={
                    "channel": channel.value,
                    "error": _said(bug, delivery.message)[:500],
                    "traceback": frames,
                },
            )
            self._give_up(delivery, channel, 0, "INTERNAL_ERROR", bug)
        finally:
            self.metrics.in_flight.dec()

    async def _attempt(self, delivery: Delivery, channel: NotificationChannel) -> None:
        message = delivery.message
        try:
            attempt_once, name = await self._prepare(delivery, channel)
        except DeliveryFailure as failure:
            self._give_up(delivery, channel, 0, failure.reason, failure)
            return
        destination = self._destination(name)
        if destination.down_since is not None:
            if destination.probing:  # another message is finding out whether it is back
                self.report(Outcome(delivery.task, message, channel, 0, None, RELAY_DOWN, "", True))
                return
            destination.probing = True
        probe = destination.probing and destination.down_since is not None
        try:
            first = urgent(message)  # a WON's thank-you goes first
            async with destination.slots.slot(first), self._slots.slot(first):
                if delivery.task in self._stopping:
                    return  # stopped while waiting for a slot: sent again by the next owner
                await self._talk(attempt_once)
        except PermanentFailure as failure:
            if failure.reason != "BAD_ADDRESS":  # the server is there: it refused the message
                self._answered(destination)
            self.metrics.failures.labels(channel.value, failure.reason).inc()
            self._give_up(delivery, channel, 1, failure.reason, failure)
            return
        except TransientFailure as failure:
            self.metrics.failures.labels(channel.value, failure.reason).inc()
            if failure.reason in DESTINATION_DOWN:
                self._went_down(destination, channel, _said(failure, message))
            else:
                self._answered(destination)
            outcome = Outcome(
                delivery.task,
                message,
                channel,
                1,
                None,
                failure.reason,
                _said(failure, message)[:500],
                True,
                failure.retry_after_s,
            )
            self.report(outcome)
            return
        finally:
            if probe:
                destination.probing = False
        self._answered(destination)
        accepted_at = self.clock()
        self.metrics.sent_by(message.kind.value, channel.value).inc()
        latency = (accepted_at - message.trigger_time).total_seconds()
        self.metrics.latency_by(channel.value, message.kind.value).observe(max(latency, 0.0))
        self.report(Outcome(delivery.task, message, channel, 1, accepted_at))

    def _went_down(
        self, destination: _Destination, channel: NotificationChannel, error: str
    ) -> None:
        if destination.down_since is not None:
            return
        destination.down_since = self.clock()
        self.metrics.destinations_down.labels(channel.value).inc()
        log.warning(
            "destination down: waiting messages are retried, one probe at a time",
            extra={"destination": destination.name, "error": error[:300]},
        )

    def _answered(self, destination: _Destination) -> None:
        """The destination answered (accepted, or refused for a reason of its own): it is up."""
        if destination.down_since is None:
            return
        down_for = (self.clock() - destination.down_since).total_seconds()
        destination.down_since = None
        channel = _channel_of(destination.name)
        self.metrics.destinations_down.labels(channel).dec()
        log.warning(
            "destination back: waiting messages go out at their next try",
            extra={"destination": destination.name, "down_for_s": round(down_for, 1)},
        )

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
                "reason": reason,
                "error": _said(failure, delivery.message)[:300],
            },
        )
        detail = _said(failure, delivery.message)[:500]
        outcome = Outcome(delivery.task, delivery.message, channel, attempts, None, reason, detail)
        self.report(outcome)

    def _destination(self, name: str) -> _Destination:
        destination = self._destinations.get(name)
        if destination is None:
            size = (
                self.settings.smtp_max_connections
                if name == "smtp"
                else self.settings.webhook_max_connections
            )
            destination = self._destinations[name] = _Destination(name, Slots(size))
        return destination

    # -- what one attempt does, per channel -----------------------------------------------------
    async def _prepare(
        self, delivery: Delivery, channel: NotificationChannel
    ) -> tuple[Callable[[], Awaitable[None]], str]:
        """(one attempt, its destination); PermanentFailure if the message cannot be rendered
        or the channel is not configured."""
        message, program = delivery.message, delivery.program
        if channel is SALES:  # a lead for sales: no template, no unsubscribe link
            return sales.prepare(message, program, self.webhooks, self.clock)
        unsubscribe_url = self.unsubscribe_url(message, program)
        refer_url = f"{self.settings.refer_base_url.rstrip('/')}/{quote(message.advocate_id)}"
        try:
            rendered = await self.renderer.render(  # off the event loop (`rendering`)
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

        return post, f"webhook:{urlsplit(hook.url).netloc}"

    def _email(
        self,
        message: Message,
        rendered: RenderedMessage,
        program: ProgramDocument,
        unsubscribe_url: str,
    ) -> tuple[Callable[[], Awaitable[None]], str]:
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

        return send, "smtp"

    def unsubscribe_url(self, message: Message, program: ProgramDocument) -> str:
        """The signed link: the program's unsubscribe page, else this service's endpoint."""
        base = program.notifications.unsubscribe_base_url or self.settings.unsubscribe_base_url
        token = unsubscribe.sign(
            self.settings.unsubscribe_secret, message.advocate_id, program.program_id, self.clock()
        )
        return unsubscribe.link(base, token)


def _said(failure: DeliveryFailure, message: Message) -> str:
    """What may be kept of a failure's text: no address or name of the advocate (`scrub`)."""
    return scrub(str(failure), message.email, message.display_name)


def _channel_of(destination: str) -> str:
    """The channel label of a destination's name ("smtp", "webhook:<host>", "sales:<host>")."""
    prefix = destination.partition(":")[0]
    return {"smtp": EMAIL, "sales": SALES}.get(prefix, WEBHOOK).value
