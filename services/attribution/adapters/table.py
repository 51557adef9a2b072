"""One task's referrals in its durable store: states, the wait index, deadlines, stream time.

All of it lives in ONE changelog-backed store per task (`STORE`), under key prefixes: the
runtime restores each store of each task separately, at a fixed cost of about a second even
when empty, so one store keeps a rebalance of many tasks well inside the session timeout.
    r <referral>  -> ReferralState (`codec`); a Step whose state is None deletes it
    w <wait key>  -> sorted list of the referrals waiting for it; replaced from each
                     Step's waits, so it always equals `waits_of` of the stored states
    x <deadline> <referral> -> (conversions waiting, deals waiting), for the referrals that
                     still expect something: one entry each, ordered by their next deadline
                     (8 bytes, big-endian), so finding what is due reads only what is due
    !stream       -> stream time: the largest occurred_at of the task's events
    !watermark    -> the global positions whose wakeups the task has applied
(The waiting lot of events of unknown programs shares the store, under `u`: see `processor`.)

Expiry is decided by stream time at an hour's granularity (`HORIZON_MS`): when an event moves
stream time into a new hour, every referral whose deadline is before that hour is expired.
The points where this happens depend only on the task's events, so a replay after a crash
expires exactly what the first run did. Finding them is an ordered scan of `x` that stops at
the first deadline not due, so its cost is what is due, not every waiting referral (a replay
of a year's history crosses 8,760 hours of stream time). Stores written before `x` kept
`d <referral> -> (deadline, conversions, deals)`; a task converts them when it is assigned.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from datetime import datetime

from referrals.streams.state import TaskStore
from services.attribution.adapters.codec import POSITIONS, REFERRALS, WAITING
from services.attribution.adapters.directory import Positions
from services.attribution.adapters.keys import WaitKey, encode_wait, wait_keys
from services.attribution.domain.referral import waits_of
from services.attribution.domain.state import ReferralState, Step, to_ms

STORE = "referrals"
REFERRAL, WAITS, DEADLINE = b"r", b"w", b"x"
LEGACY_DEADLINE = b"d"  # `d <referral> -> (deadline, conversions, deals)`: converted at assign
HORIZON_MS = 3_600_000
STREAM = b"!stream"
WATERMARK = b"!watermark"
NEVER = 2**62
_ENTRY = struct.Struct(">qHH")  # a legacy `d` value
_COUNTS = struct.Struct(">HH")
_MS = struct.Struct(">q")
_DUE = struct.Struct(">Q")  # a deadline in an `x` key: offset so that the byte order is numeric
_DUE_BIAS = 2**63
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

    def __init__(self, store: TaskStore) -> None:
        """Reads the store's `x` entries once (the waiting counts), converting legacy `d` ones."""
        self.store = store
        raw = store.get(STREAM)
        self.stream_ms = _MS.unpack(raw)[0] if raw else 0
        self.next_due = NEVER
        self.waiting = [0, 0]  # conversions, deals
        for key, value in list(store.scan(LEGACY_DEADLINE)):
            entry = _ENTRY.unpack(value)
            store.delete(key)
            store.put(_due_key(entry[0], key[1:]), _COUNTS.pack(entry[1], entry[2]))
        for key, value in store.scan(DEADLINE):
            deadline = _deadline_of(key)
            conversions, deals = _COUNTS.unpack(value)
            self._count((deadline, conversions, deals), 1)
            self.next_due = min(self.next_due, deadline)

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
        """Referral keys whose deadline is before `horizon`, in key order (an ordered scan of
        the deadlines that stops at the first one not due)."""
        keys: list[bytes] = []
        self.next_due = NEVER
        for key, _ in self.store.scan(DEADLINE):
            deadline = _deadline_of(key)
            if deadline >= horizon:
                self.next_due = deadline
                break
            keys.append(key[9:])
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
    def _set_entry(self, key: bytes, before: Entry | None, after: Entry | None) -> None:
        if before == after:
            return
        if before is not None:
            self._count(before, -1)
            self.store.delete(_due_key(before[0], key))
        if after is None:
            return
        self._count(after, 1)
        self.store.put(_due_key(after[0], key), _COUNTS.pack(after[1], after[2]))
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


def _due_key(deadline_ms: int, referral: bytes) -> bytes:
    return DEADLINE + _DUE.pack(deadline_ms + _DUE_BIAS) + referral


def _deadline_of(key: bytes) -> int:
    return int(_DUE.unpack_from(key, 1)[0]) - _DUE_BIAS
