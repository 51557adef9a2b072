"""What a task does when it is assigned: pick up the deliveries its previous owner left open.

Every outbox entry is a message whose delivery was not recorded on every channel. If the
journal of a clean stop on this instance says a channel was accepted (or given up on), that
outcome is recorded at the next punctuation; every other channel is sent again with the same
notification_id (email Message-ID, webhook Idempotency-Key), so a receiver that already has it
can drop it. Such resends are counted (`referrals_notifications_resends_total`). An entry whose
message has gone stale, or whose advocate has opted out since, is dropped instead.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from referrals.programs.catalog import ProgramCatalog
from referrals.programs.model import NotificationChannel
from referrals.streams.state import Keyspace
from services.notifications.adapters import outcomes
from services.notifications.adapters.codec import OUTBOX_ENTRIES
from services.notifications.adapters.delivery import Delivery, Sender
from services.notifications.adapters.metrics import NotificationMetrics
from services.notifications.adapters.storage import Journaled
from services.notifications.adapters.tasks import TaskContext
from services.notifications.domain import plan as core
from services.notifications.domain.state import State

log = logging.getLogger(__name__)


class Host(Protocol):
    """What resuming needs of the processor (`NotificationsProcessor`)."""

    programs: ProgramCatalog
    stats: NotificationMetrics
    sender: Sender

    def outbox(self, task: int) -> Keyspace: ...
    def load_state(self, task: int, advocate_id: str) -> State: ...


def resume(p: Host, ctx: TaskContext, journal: list[Journaled], now: datetime) -> None:
    known = {(j.notification_id, j.channel): j for j in journal}
    for key, raw in list(p.outbox(ctx.task).items()):
        notification_id, entry = key.decode(), OUTBOX_ENTRIES.decode(raw, key)
        program = p.programs.get(entry.program_id)
        if program is None:
            continue  # its config is gone for now; resent when the task is next assigned
        state = p.load_state(ctx.task, entry.advocate_id)
        unsent = core.unsent(state, program.document, now)
        message = next((m for m in unsent if m.notification_id == notification_id), None)
        if message is None:  # stale by now, or the advocate opted out meanwhile
            ctx.obsolete.append(notification_id)
            continue
        resend: list[NotificationChannel] = []
        for channel in entry.channels:
            journaled = known.get((notification_id, channel))
            if journaled is None:
                resend.append(channel)
                p.stats.resends.labels(channel.value).inc()
            else:
                ctx.outcomes.append(outcomes.from_journal(ctx.task, journaled, message))
        if resend:
            log.info(
                "resending after restart",
                extra={"notification_id": notification_id, "channels": resend},
            )
            p.sender.submit(Delivery(ctx.task, message, program.document, tuple(resend)))
