"""What a task does when it is assigned: pick up the deliveries its previous owner left open.

Every outbox entry is a message whose delivery was not recorded on every channel. If the
journal of a clean stop on this instance says a channel was accepted (or given up on), that
outcome is recorded at the next punctuation. A channel waiting for a retry keeps its retry timer
(restored with the store). Every other channel was in flight when the previous owner stopped: it
is tried again at the next punctuation with the same notification_id (email Message-ID, webhook
Idempotency-Key), so a receiver that already has it can drop it. Such resends are counted
(`referrals_notifications_resends_total`). Whether the message is still to be sent (the advocate
may have opted out since) and whether it is past its deadline is decided when it is tried.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from referrals.programs.catalog import ProgramCatalog
from referrals.streams.state import Keyspace
from services.notifications.adapters import outcomes
from services.notifications.adapters.codec import OUTBOX_ENTRIES
from services.notifications.adapters.delivery import Sender
from services.notifications.adapters.metrics import NotificationMetrics
from services.notifications.adapters.storage import Journaled, retry_id
from services.notifications.adapters.tasks import TaskContext
from services.notifications.domain import plan as core
from services.notifications.domain.messages import Message
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
    resent = 0
    for key, raw in list(p.outbox(ctx.task).items()):
        notification_id, entry = key.decode(), OUTBOX_ENTRIES.decode(raw, key)
        for channel in entry.channels:
            timer_id = retry_id(notification_id, channel)
            journaled = known.get((notification_id, channel))
            if journaled is not None:
                message = _message(
                    p, ctx.task, entry.program_id, entry.advocate_id, notification_id, now
                )
                if message is not None:
                    ctx.outcomes.append(outcomes.from_journal(ctx.task, journaled, message))
                    continue
            if ctx.retries.due_ms(timer_id) is None:
                ctx.rearm.append(timer_id)
                p.stats.resends.labels(channel.value).inc()
                resent += 1
    if resent:
        log.info("resending after restart", extra={"task": ctx.task, "deliveries": resent})


def _message(
    p: Host, task: int, program_id: str, advocate_id: str, notification_id: str, now: datetime
) -> Message | None:
    """The journaled message, rebuilt from the state (None: its program is unknown for now or
    the advocate opted out since; the channel is then tried again, which settles it)."""
    program = p.programs.get(program_id)
    if program is None:
        return None
    unsent = core.unsent(p.load_state(task, advocate_id), program.document, now)
    return next((m for m in unsent if m.notification_id == notification_id), None)
