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
  - `p` parked: records waiting for their program's config (`referrals.streams.waiting`).
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

from referrals.programs.model import NotificationChannel

log = logging.getLogger(__name__)
OUTBOX, WAKEUPS, PARKED = b"o", b"w", b"p"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    advocate_id: str
    program_id: str
    channels: tuple[NotificationChannel, ...]  # still to deliver (or to dead-letter)

    def without(self, channel: NotificationChannel) -> OutboxEntry:
        return OutboxEntry(
            self.advocate_id, self.program_id, tuple(c for c in self.channels if c != channel)
        )


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
