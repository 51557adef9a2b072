"""How the processor lays out its task stores, and the journal a clean stop leaves behind.

Two stores per task, each backed by a compacted changelog:
- `advocates`: advocate_id -> the core's `State` (`codec.STATES`). Large (one entry
  per advocate), so it is only ever read by key.
- `index`: everything a task must find without scanning advocates, each kind under its own
  one-byte prefix (a `Keyspace`). Small: it holds only what is in progress.
  - `o` outbox: notification_id -> `OutboxEntry` (`codec`): a message planned in a committed
    transaction and not yet recorded as delivered or dead-lettered on every channel. After a
    crash, assignment resends exactly these (the core's `unsent` rebuilds each message);
  - `w` wake-ups: 8-byte big-endian due time (epoch ms) + advocate_id -> b"": when an
    advocate's next nurture step or deferred message is due (`referrals.streams.timers`);
  - `p` parked: records waiting for their program's config (`referrals.streams.waiting`);
  - `r` retries: 8-byte due time + `<notification_id>/<CHANNEL>` -> b"": when a channel of an
    outbox entry is next tried (a `TimerIndex`). A channel is either in flight (handed to the
    sender, not yet recorded) or has a retry timer: after a failure for now, at its backoff;
    when the sender was full, due now; after a crash, re-armed on assignment.
  One store rather than three: every store costs a changelog topic and a restore per task
  whenever the task is assigned.

The journal: a delivery accepted by a server is recorded on notifications.sent.v1 at the next
punctuation. A clean stop (or a task moving away) cannot commit any more, so it writes the
accepted-but-unrecorded outcomes of each task to a small local file; when this instance gets
the task again, they are recorded instead of resent. A crash leaves no journal: those messages
are resent with the same notification_id. The journal is JSON (msgspec, typed as `Journaled`)
so that an operator can read it; a journal in any other shape is ignored (resending is safe).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from referrals.platform.evolve import replace
from referrals.programs.model import NotificationChannel

log = logging.getLogger(__name__)
OUTBOX, WAKEUPS, PARKED, RETRIES = b"o", b"w", b"p", b"r"


@dataclass(frozen=True, slots=True)
class Tries:
    """One channel's failed tries so far (`attempts` of them talked to the server; the others
    were deferred while its destination was down)."""

    channel: NotificationChannel
    tries: int
    attempts: int
    error: str = ""  # the last one, for the dead letter if the deadline passes


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    advocate_id: str
    program_id: str
    channels: tuple[NotificationChannel, ...]  # still to deliver (or to dead-letter)
    # When the message was first due (epoch ms): its delivery deadline counts from here. None in
    # entries written before deadlines existed: set when the task is next assigned.
    first_due_ms: int | None = None
    failed: tuple[Tries, ...] = ()  # channels that failed for now, waiting to be tried again

    def without(self, channel: NotificationChannel) -> OutboxEntry:
        return replace(
            self,
            channels=tuple(c for c in self.channels if c != channel),
            failed=tuple(t for t in self.failed if t.channel != channel),
        )

    def tries(self, channel: NotificationChannel) -> Tries:
        return next((t for t in self.failed if t.channel == channel), Tries(channel, 0, 0))

    def with_failure(
        self, channel: NotificationChannel, attempted: bool, error: str
    ) -> OutboxEntry:
        """One more failed try on `channel` (an attempt if the sender talked to the server)."""
        old = self.tries(channel)
        new = Tries(
            channel,
            old.tries + 1,
            old.attempts + int(attempted),
            error[:200] if attempted else old.error,
        )
        others = tuple(t for t in self.failed if t.channel != channel)
        return replace(self, failed=(*others, new))


def retry_id(notification_id: str, channel: NotificationChannel) -> str:
    """The retry timer's id of one channel of one message."""
    return f"{notification_id}/{channel.value}"


def parse_retry_id(timer_id: str) -> tuple[str, NotificationChannel]:
    notification_id, _, channel = timer_id.rpartition("/")
    return notification_id, NotificationChannel(channel)


@dataclass(frozen=True, slots=True)
class Journaled:
    """An outcome a clean stop could not record: accepted (accepted_ms) or given up on."""

    notification_id: str
    channel: NotificationChannel
    attempts: int
    accepted_ms: int | None
    reason: str = ""
    detail: str = ""


_JOURNAL = msgspec.json.Decoder(list[Journaled])


class Journal:
    """One JSON file per task under `directory`, written on revoke and consumed on assign."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, task: int) -> Path:
        return self.directory / f"task-{task}.json"

    def write(self, task: int, entries: list[Journaled]) -> None:
        path = self._path(task)
        if not entries:
            path.unlink(missing_ok=True)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        with partial.open("wb") as out:
            out.write(msgspec.json.encode(entries))
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)  # atomic: a reader sees the whole journal or none

    def take(self, task: int) -> list[Journaled]:
        """The task's journal, deleted as it is read (it is only ever valid once)."""
        path = self._path(task)
        try:
            entries = _JOURNAL.decode(path.read_bytes())
        except FileNotFoundError:
            return []
        except msgspec.DecodeError as err:  # a torn or foreign file: resending is safe
            log.warning("ignoring an unreadable journal", extra={"task": task, "error": str(err)})
            entries = []
        path.unlink(missing_ok=True)
        return entries
