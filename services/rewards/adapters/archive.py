"""Archived reward entries: each referral's `Entry` under its own key, and the indexes to find
the ones an input needs, so the stored ledger (`ledgers`) holds only tallies.

Keyspaces of the task's store (`keyspace`), each key starting with the length-prefixed
advocate id, so one advocate's entries are one ordered scan:
    0x12 <advocate> <referral_id>           -> Entry (`codec.ENTRIES`, a few hundred bytes)
    0x13 <advocate> <payout_id>             -> referral_id   (results, approvals, retries)
    0x14 <advocate> <due_at, 8 bytes> <ref> -> ""            PENDING entries, by due time
    0x15 <advocate> <referral_id>           -> ""            entries held TAX_INFO_REQUIRED
    0x17 <advocate> <referral_id>           -> ""            entries held PROGRAM_PAUSED
    0x18 <program> <advocate>               -> ""            advocates with such entries
    0x19 <advocate> <local day, 4 bytes>    -> WONs that day (fraud velocity)
    0x1A <program>                          -> ""            programs with paused holds
The payout index holds both payout_ids of a two-sided referral (the advocate's and the
friend's); the due index holds an entry while either of its rewards is PENDING.
Every value is small and bounded; the number of keys grows with the advocate's wins, which is
what a keyspace is for. Writes go through the task's store: they commit with the ledger.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from referrals.streams.state import KeyValue
from services.rewards.adapters import keyspace
from services.rewards.adapters.codec import ENTRIES
from services.rewards.domain.evaluate import has_reward
from services.rewards.domain.ledger import Entry, Reason, State

_DUE = struct.Struct(">q")
_DAY = struct.Struct(">I")


def _lp(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def _held(entry: Entry | None, reason: Reason) -> bool:
    return entry is not None and entry.state is State.HELD and entry.reason == reason


class EntryArchive:
    """One task's archived entries; `space(prefix)` is a keyspace of the task's store."""

    def __init__(self, space: Callable[[bytes], KeyValue]) -> None:
        self.space = space

    def _kv(self, prefix: bytes, advocate_id: str) -> KeyValue:
        return self.space(prefix + _lp(advocate_id))

    def by_referral(self, advocate_id: str, referral_id: str) -> list[Entry]:
        key = referral_id.encode()
        raw = self._kv(keyspace.ENTRIES, advocate_id).get(key)
        return [] if raw is None else [ENTRIES.decode(raw, key)]

    def by_payout(self, advocate_id: str, payout_id: str) -> list[Entry]:
        raw = self._kv(keyspace.PAYOUT_INDEX, advocate_id).get(payout_id.encode())
        return [] if raw is None else self.by_referral(advocate_id, raw.decode())

    def due(self, advocate_id: str, now_ms: int) -> list[Entry]:
        """Entries with a PENDING reward (the advocate's or a friend's) due by `now_ms`."""
        found: list[Entry] = []
        for key, _ in self._kv(keyspace.DUE, advocate_id).items():
            if _DUE.unpack(key[:8])[0] > now_ms:
                break
            found += self.by_referral(advocate_id, key[8:].decode())
        return found

    def next_due(self, advocate_id: str) -> int | None:
        for key, _ in self._kv(keyspace.DUE, advocate_id).items():
            return int(_DUE.unpack(key[:8])[0])
        return None

    def tax_held(self, advocate_id: str) -> list[Entry]:
        return self._listed(keyspace.TAX_HELD, advocate_id)

    def paused_held(self, advocate_id: str) -> list[Entry]:
        return self._listed(keyspace.PAUSED_HELD, advocate_id)

    def _listed(self, prefix: bytes, advocate_id: str) -> list[Entry]:
        kv = self._kv(prefix, advocate_id)
        return [e for key, _ in kv.items() for e in self.by_referral(advocate_id, key.decode())]

    def paused_programs(self) -> list[str]:
        """Programs some advocate of this task has a PROGRAM_PAUSED hold in."""
        return [key.decode() for key, _ in self.space(keyspace.PAUSED_PROGRAMS).items()]

    def paused_advocates(self, program_id: str, limit: int) -> list[str]:
        """Up to `limit` advocates with PROGRAM_PAUSED holds in `program_id`."""
        kv = self._kv(keyspace.PAUSED_BY_PROGRAM, program_id)
        out: list[str] = []
        for key, _ in kv.items():
            if len(out) >= limit:
                break
            out.append(key[2:].decode())
        return out

    def resumed(self, program_id: str, advocate_id: str | None) -> None:
        """The advocate's paused holds in `program_id` were released; None: every one was."""
        if advocate_id is None:
            self.space(keyspace.PAUSED_PROGRAMS).delete(program_id.encode())
        else:
            self._kv(keyspace.PAUSED_BY_PROGRAM, program_id).delete(_lp(advocate_id))

    def day_wins(self, advocate_id: str, day: int) -> int:
        raw = self._kv(keyspace.DAYS, advocate_id).get(_DAY.pack(day))
        return 0 if raw is None else int(raw)

    def save_days(self, advocate_id: str, days: Iterable[tuple[int, int]]) -> None:
        kv = self._kv(keyspace.DAYS, advocate_id)
        for day, wins in days:
            kv.put(_DAY.pack(day), str(wins).encode())

    def save(
        self,
        advocate_id: str,
        before: Iterable[Entry],
        after: Iterable[Entry],
        program_id: str = "",
    ) -> None:
        """Stores the entries of `after` that differ from `before` and moves their index keys."""
        old = {e.referral_id: e for e in before}
        for entry in after:
            previous = old.get(entry.referral_id)
            if entry == previous:
                continue
            ref = entry.referral_id.encode()
            self._kv(keyspace.ENTRIES, advocate_id).put(ref, ENTRIES.encode(entry))
            if previous is None and has_reward(entry):
                payouts = self._kv(keyspace.PAYOUT_INDEX, advocate_id)
                payouts.put(entry.payout_id.encode(), ref)
                if entry.friend is not None:
                    payouts.put(entry.friend.payout_id.encode(), ref)
            self._index(advocate_id, previous, entry)
            if _held(entry, Reason.PROGRAM_PAUSED) and program_id:
                self._kv(keyspace.PAUSED_BY_PROGRAM, program_id).put(_lp(advocate_id), b"")
                self.space(keyspace.PAUSED_PROGRAMS).put(program_id.encode(), b"")

    def _index(self, advocate_id: str, previous: Entry | None, entry: Entry) -> None:
        due = self._kv(keyspace.DUE, advocate_id)
        ref = entry.referral_id.encode()
        was_due = None if previous is None else previous.due_ms
        if was_due is not None and was_due != entry.due_ms:
            due.delete(_DUE.pack(was_due) + ref)
        if entry.due_ms is not None:
            due.put(_DUE.pack(entry.due_ms) + ref, b"")
        for reason, prefix in (
            (Reason.TAX_INFO_REQUIRED, keyspace.TAX_HELD),
            (Reason.PROGRAM_PAUSED, keyspace.PAUSED_HELD),
        ):
            listed = self._kv(prefix, advocate_id)
            if _held(previous, reason) and not _held(entry, reason):
                listed.delete(ref)
            if _held(entry, reason):
                listed.put(ref, b"")
