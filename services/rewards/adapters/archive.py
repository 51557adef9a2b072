"""Archived reward entries: each referral's `Entry` under its own key, and the indexes to find
the ones an input needs, so the stored ledger (`ledgers`) holds only tallies.

Keyspaces of the task's store (`keyspace`), each key starting with the length-prefixed
advocate id, so one advocate's entries are one ordered scan:
    0x12 <advocate> <referral_id>           -> Entry (`codec.ENTRIES`, a few hundred bytes)
    0x13 <advocate> <payout_id>             -> referral_id   (results, approvals, retries)
    0x14 <advocate> <due_at, 8 bytes> <ref> -> ""            PENDING entries, by due time
    0x15 <advocate> <referral_id>           -> ""            entries held TAX_INFO_REQUIRED
Every value is small and bounded; the number of keys grows with the advocate's wins, which is
what a keyspace is for. Writes go through the task's store: they commit with the ledger.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from referrals.streams.state import KeyValue
from services.rewards.adapters import keyspace
from services.rewards.adapters.codec import ENTRIES
from services.rewards.domain.ledger import Entry, Reason, State

_DUE = struct.Struct(">q")


def _lp(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def _is_tax_held(entry: Entry) -> bool:
    return entry.state is State.HELD and entry.reason == Reason.TAX_INFO_REQUIRED


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
        """PENDING entries due at or before `now_ms`."""
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
        kv = self._kv(keyspace.TAX_HELD, advocate_id)
        return [e for key, _ in kv.items() for e in self.by_referral(advocate_id, key.decode())]

    def save(self, advocate_id: str, before: Iterable[Entry], after: Iterable[Entry]) -> None:
        """Stores the entries of `after` that differ from `before` and moves their index keys."""
        old = {e.referral_id: e for e in before}
        for entry in after:
            previous = old.get(entry.referral_id)
            if entry == previous:
                continue
            ref = entry.referral_id.encode()
            self._kv(keyspace.ENTRIES, advocate_id).put(ref, ENTRIES.encode(entry))
            if previous is None and entry.state is not State.UNREWARDED:
                payouts = self._kv(keyspace.PAYOUT_INDEX, advocate_id)
                payouts.put(entry.payout_id.encode(), ref)
            self._index(advocate_id, previous, entry)

    def _index(self, advocate_id: str, previous: Entry | None, entry: Entry) -> None:
        due = self._kv(keyspace.DUE, advocate_id)
        tax = self._kv(keyspace.TAX_HELD, advocate_id)
        ref = entry.referral_id.encode()
        if previous is not None and previous.state is State.PENDING:
            due.delete(_DUE.pack(previous.due_at) + ref)
        if entry.state is State.PENDING:
            due.put(_DUE.pack(entry.due_at) + ref, b"")
        if previous is not None and _is_tax_held(previous) and not _is_tax_held(entry):
            tax.delete(ref)
        if _is_tax_held(entry):
            tax.put(ref, b"")
