"""One task's referrals in its durable store: states, the wait index, deadlines, stream time.

All of it lives in ONE changelog-backed store per task (`STORE`), under key prefixes: the
runtime restores each store of each task separately, at a fixed cost of about a second even
when empty, so one store keeps a rebalance of many tasks well inside the session timeout.
    r <referral>  -> ReferralState (`codec`); a Step whose state is None deletes it
    w <wait key>  -> sorted list of the referrals waiting for it; replaced from each
                     Step's waits, so it always equals `waits_of` of the stored states
    d <referral>  -> (next deadline, conversions waiting, deals waiting), for the referrals
                     that still expect something
    !stream       -> stream time: the largest occurred_at of the task's events
    !watermark    -> the global positions whose wakeups the task has applied
(The waiting lot of events of unknown programs shares the store, under `u`: see `processor`.)

Expiry is decided by stream time at an hour's granularity (`HORIZON_MS`): when an event moves
stream time into a new hour, every referral whose deadline is before that hour is expired.
The points where this happens depend only on the task's events, so a replay after a crash
expires exactly what the first run did; and a full scan of the store happens at most once
per hour of stream time, and only when something is due.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Iterable
from datetime import datetime

from referrals.streams.state import TaskStore
from services.attribution.adapters.codec import POSITIONS, REFERRALS, WAITING
from services.attribution.adapters.directory import Positions
from services.attribution.adapters.keys import WaitKey, encode_wait, wait_keys
from services.attribution.domain.referral import waits_of
from services.attribution.domain.state import ReferralState, Step, to_ms

STORE = "referrals"
REFERRAL, WAITS, DEADLINE = b"r", b"w", b"d"
HORIZON_MS = 3_600_000
STREAM = b"!stream"
WATERMARK = b"!watermark"
NEVER = 2**62
_ENTRY = struct.Struct(">qHH")
_MS = struct.Struct(">q")
Entry = tuple[int, int, int]  # (deadline ms, conversions waiting, deals waiting)
Item = tuple[bytes, bytes]


def scan(store: TaskStore, prefixes: tuple[bytes, ...]) -> dict[bytes, list[Item]]:
    """A task's items under each prefix (ordered scans; keys keep their prefix)."""
    return {prefix: list(store.scan(prefix)) for prefix in prefixes}


def entry_of(state: ReferralState | None) -> Entry | None:
    """When `expire` next has something to do for `state`, and what it waits for meanwhile."""
    if state is None:
        return None
    due = [s.deadline_ms for s in state.sources if not s.closed]
    if state.winner is None:
        due += [d.deadline_ms for d in state.deals]
    if state.dormant:
        due.append(state.deadline_ms)
    if not due:
        return None
    open_conversions = (s for s in state.sources if not (s.closed or s.from_deal or s.resolved))
    deals = len(state.deals) if state.winner is None else 0
    return (min(due), sum(1 for _ in open_conversions), deals)


class ReferralTable:
    """The referrals of one task. `waiting` and `next_due` are in-memory summaries of the
    committed-or-staged store contents; an aborted transaction rebuilds the table."""

    def __init__(self, store: TaskStore, deadlines: Iterable[Item]) -> None:
        """`deadlines`: the store's items under DEADLINE (scanned once, at assignment)."""
        self.store = store
        raw = store.get(STREAM)
        self.stream_ms = _MS.unpack(raw)[0] if raw else 0
        self.next_due = NEVER
        self.waiting = [0, 0]  # conversions, deals
        for _, value in deadlines:
            entry = _ENTRY.unpack(value)
            self._count(entry, 1)
            self.next_due = min(self.next_due, entry[0])

    # -- referrals ------------------------------------------------------------------------------
    def load(self, key: bytes) -> ReferralState | None:
        raw = self.store.get(REFERRAL + key)
        return REFERRALS.decode(raw, key) if raw is not None else None

    def apply(self, key: bytes, old: ReferralState | None, step: Step) -> None:
        """Persists a command's outcome: the state, what it waits for and its next deadline."""
        if step.state is None:
            self.store.delete(REFERRAL + key)
        elif step.state != old:
            self.store.put(REFERRAL + key, REFERRALS.encode(step.state))
        current = step.state or old
        program_id = current.program_id if current is not None else ""
        before = wait_keys(program_id, waits_of(old)) if old is not None else set()
        after = wait_keys(program_id, step.waits)
        for wait in sorted(before - after):
            self._unindex(wait, key)
        for wait in sorted(after - before):
            self._index(wait, key)
        self._set_entry(key, entry_of(old), entry_of(step.state))

    def waiting_on(self, wait: WaitKey) -> list[bytes]:
        return [k.encode() for k in self._refs(wait)]

    def all_waiting(self) -> set[bytes]:
        """Every referral waiting for anything (a full rescan: no watermark to go by)."""
        lists = (WAITING.decode(raw, key) for key, raw in scan(self.store, (WAITS,))[WAITS])
        return {k.encode() for refs in lists for k in refs}

    # -- stream time and expiry -----------------------------------------------------------------
    def advance(self, occurred_at: datetime) -> int | None:
        """Moves stream time; returns the expiry horizon when referrals became due, else None."""
        ms = to_ms(occurred_at)
        if ms <= self.stream_ms:
            return None
        hour_before = self.stream_ms // HORIZON_MS
        self.stream_ms = ms
        self.store.put(STREAM, _MS.pack(ms))
        horizon = (ms // HORIZON_MS) * HORIZON_MS
        if ms // HORIZON_MS > hour_before and self.next_due < horizon:
            return horizon
        return None

    def due(self, horizon: int) -> list[bytes]:
        """Referral keys whose deadline is before `horizon` (a full scan of the deadlines)."""
        keys: list[bytes] = []
        self.next_due = NEVER
        for key, entry in self._entries():
            if entry[0] < horizon:
                keys.append(key)
            else:
                self.next_due = min(self.next_due, entry[0])
        return sorted(keys)

    # -- the global watermark -------------------------------------------------------------------
    def watermark(self) -> Positions | None:
        raw = self.store.get(WATERMARK)
        if raw is None:
            return None
        return POSITIONS.decode(raw, WATERMARK)

    def set_watermark(self, positions: Positions) -> None:
        ordered = {topic: dict(sorted(positions[topic].items())) for topic in sorted(positions)}
        raw = POSITIONS.encode(ordered)
        if self.store.get(WATERMARK) != raw:
            self.store.put(WATERMARK, raw)

    # -- internals ------------------------------------------------------------------------------
    def _entries(self) -> list[tuple[bytes, Entry]]:
        found = scan(self.store, (DEADLINE,))[DEADLINE]
        return [(key[1:], _ENTRY.unpack(value)) for key, value in found]

    def _set_entry(self, key: bytes, before: Entry | None, after: Entry | None) -> None:
        if before == after:
            return
        if before is not None:
            self._count(before, -1)
        if after is None:
            self.store.delete(DEADLINE + key)
            return
        self._count(after, 1)
        self.store.put(DEADLINE + key, _ENTRY.pack(*after))
        self.next_due = min(self.next_due, after[0])

    def _count(self, entry: Entry, sign: int) -> None:
        self.waiting[0] += sign * entry[1]
        self.waiting[1] += sign * entry[2]

    def _index(self, wait: WaitKey, referral: bytes) -> None:
        refs = self._refs(wait)
        name = referral.decode()
        at = bisect_left(refs, name)
        if at == len(refs) or refs[at] != name:
            refs.insert(at, name)
            self.store.put(WAITS + encode_wait(wait), WAITING.encode(refs))

    def _unindex(self, wait: WaitKey, referral: bytes) -> None:
        refs = self._refs(wait)
        name = referral.decode()
        at = bisect_left(refs, name)
        if at < len(refs) and refs[at] == name:
            del refs[at]
            if refs:
                self.store.put(WAITS + encode_wait(wait), WAITING.encode(refs))
            else:
                self.store.delete(WAITS + encode_wait(wait))

    def _refs(self, wait: WaitKey) -> list[str]:
        key = WAITS + encode_wait(wait)
        raw = self.store.get(key)
        return WAITING.decode(raw, key) if raw else []
