"""Delivery outcomes as records: what the processor writes once a channel's fate is known.

- Accepted: a `NotificationSent` (sent_at = the server's acceptance) on notifications.sent.v1;
  nothing for a lead accepted by the sales webhook (that topic lists messages to advocates).
- Given up on: a dead letter on `notifications.sent.v1.dlq`, written in the task's transaction
  through the runtime's `DeadLetterOut`, so it commits together with the outbox settlement.
  Its value is a JSON document (below) rather than Avro, since no input record failed; the
  headers are the runtime's usual ones: `dlq.error.class` = DeliveryFailed, `dlq.error.reason`
  (DEADLINE_EXCEEDED, RECIPIENT_REFUSED, SMTP_REJECTED, HTTP_4XX, BAD_ADDRESS,
  WEBHOOK_SECRET_MISSING, WEBHOOK_SECRET_REFUSED, WEBHOOK_URL_REFUSED, BAD_MESSAGE, ...;
  RETRIES_EXHAUSTED in dead letters written before the delivery deadline replaced the attempt
  limit), `dlq.error.message` naming the channel, the attempts
  (those that talked to the server) and the last error, `dlq.service`,
  `dlq.original.topic` = notifications.sent.v1 and `dlq.original.offset` = -1 (a delivery, not
  a consumed record). The key is the advocate_id. No personal data: the advocate is named by
  id (the address is in their profile), and the error text is scrubbed (`failures.scrub`).
"""

from __future__ import annotations

import json
from datetime import datetime

from referrals.contract.topics import NOTIFICATIONS_SENT
from referrals.programs.model import NotificationChannel
from referrals.streams.processor import DeadLetterOut, Inbound, Outbound, Output
from services.notifications.adapters.delivery import Outcome
from services.notifications.adapters.failures import DeliveryFailed
from services.notifications.adapters.metrics import NotificationMetrics
from services.notifications.adapters.storage import Journaled
from services.notifications.domain.messages import Message, sent_record
from services.notifications.domain.state import from_ms, to_ms


def to_output(
    task: int, outcome: Outcome, now: datetime, stats: NotificationMetrics
) -> list[Output]:
    message, channel = outcome.message, outcome.channel
    if outcome.accepted_at is not None:
        if channel is NotificationChannel.SALES_WEBHOOK:
            return []
        record = sent_record(message, channel, outcome.accepted_at)
        return [Outbound(NOTIFICATIONS_SENT, message.advocate_id, record)]
    stats.dead_lettered.labels(channel.value, outcome.reason).inc()
    inbound = Inbound(
        topic=NOTIFICATIONS_SENT,
        partition=task,
        offset=-1,
        key=message.advocate_id,
        value=sent_record(message, channel, now),
        timestamp_ms=to_ms(now),
        raw_key=message.advocate_id.encode(),
        raw_value=dead_letter_body(outcome, now),
    )
    error = DeliveryFailed(
        f"{channel.value} delivery of {message.notification_id} given up after "
        f"{outcome.attempts} attempt(s): {outcome.detail}",
        reason=outcome.reason,
    )
    return [DeadLetterOut(inbound, error)]


def dead_letter_body(outcome: Outcome, now: datetime) -> bytes:
    message: Message = outcome.message
    document = {
        "notification_id": message.notification_id,
        "program_id": message.context.get("program_id"),
        "advocate_id": message.advocate_id,
        "referral_id": message.referral_id,
        "kind": message.kind.value,
        "step": message.step,
        "channel": outcome.channel.value,
        "attempts": outcome.attempts,
        "reason": outcome.reason,
        "error": outcome.detail,
        "trigger_time": message.trigger_time.isoformat(),
        "failed_at": now.isoformat(),
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def to_journal(pending: list[Outcome]) -> list[Journaled]:
    return [
        Journaled(
            o.message.notification_id,
            o.channel,
            o.attempts,
            None if o.accepted_at is None else to_ms(o.accepted_at),
            o.reason,
            o.detail,
        )
        for o in pending
    ]


def from_journal(task: int, entry: Journaled, message: Message) -> Outcome:
    accepted_at = None if entry.accepted_ms is None else from_ms(entry.accepted_ms)
    return Outcome(
        task, message, entry.channel, entry.attempts, accepted_at, entry.reason, entry.detail
    )
