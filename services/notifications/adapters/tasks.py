"""What each owned task of the notifications processor holds in memory besides its stores."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from referrals.streams.timers import TimerIndex
from referrals.streams.waiting import WaitingLot
from services.notifications.adapters.delivery import Outcome


@dataclass
class TaskContext:
    """What a task holds in memory besides its stores; rebuilt whenever the task is assigned."""

    task: int
    wakeups: TimerIndex
    parked: WaitingLot
    retries: TimerIndex  # when each waiting (message, channel) is next tried (`storage`)
    outcomes: deque[Outcome] = field(default_factory=deque)  # reported, not yet recorded
    recording: list[Outcome] = field(default_factory=list)  # in the open transaction
    obsolete: list[str] = field(default_factory=list)  # outbox entries no longer to be sent
    # Retry ids (`storage.retry_id`) handed to the sender and not yet recorded.
    in_flight: set[str] = field(default_factory=set)
    staged: int = 0  # deliveries staged in the open transaction, handed over when it commits
    rearm: list[str] = field(default_factory=list)  # left in flight by a crash: to try now
    expired: int = 0  # deliveries dead-lettered past their deadline in this punctuation
