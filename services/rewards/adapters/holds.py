"""Rewards on hold now, by reason and currency, and since when: kept in the task's store as
holds begin and end, so the gauges (`metrics.HeldCollector`) read a handful of keys instead of
every ledger.

A referral's reward is on hold while its entry is HELD; the hold begins when a decision puts
it there (the service's clock, not the WON's event time: a backfilled old WON held today has
waited since today) and ends when a decision takes it out (approved, denied, released,
cancelled) or gives it another reason (which begins a new hold). Keyspaces of the task's
store (`keyspace`), written in the same transaction as the entry:
    0x1B <reason> <since, 8 bytes> <advocate> <referral_id> -> ""   holds by reason, oldest first
    0x1C <advocate> <referral_id>  -> since, amount, reason, currency (what a hold's end undoes)
    0x1D <reason> 0x00 <currency>  -> count, amount (minor units)    totals now
(<reason> and <advocate> length-prefixed). Only the advocate's reward is counted, once per
referral; its amount is 0 when it could not be computed (MISSING_AMOUNT). Holds that began
before this index existed are not counted until a decision touches their entry again.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from referrals.streams.state import Backend, KeyValue
from services.rewards.adapters import keyspace
from services.rewards.domain.ledger import Entry, State

_PAIR = struct.Struct(">qq")
_SINCE = struct.Struct(">q")


class Reader(Protocol):
    """What the totals are read from: a keyspace, or the committed state only."""

    def get(self, key: bytes) -> bytes | None: ...
    def items(self) -> Iterator[tuple[bytes, bytes]]: ...


class Committed:
    """A keyspace as committed (what a scrape between two transactions must read: another
    task's transaction may be half-way)."""

    def __init__(self, backend: Backend, prefix: bytes) -> None:
        self.backend = backend
        self.prefix = prefix

    def get(self, key: bytes) -> bytes | None:
        return self.backend.get(self.prefix + key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        n = len(self.prefix)
        for key, value in self.backend.scan(self.prefix):
            yield key[n:], value


@dataclass(frozen=True, slots=True)
class Hold:
    reason: str
    currency: str
    since_ms: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Total:
    reason: str
    currency: str
    count: int
    amount_minor: int


def _lp(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def _hold_of(entry: Entry | None) -> tuple[str, str, int] | None:
    """(reason, currency, amount) of an entry on hold, else None."""
    if entry is None or entry.state is not State.HELD:
        return None
    return entry.reason or "UNSPECIFIED", entry.currency, entry.amount_minor or 0


class HoldIndex:
    """One task's holds; `space(prefix)` is a keyspace of the task's store."""

    def __init__(self, space: Callable[[bytes], KeyValue]) -> None:
        self.space = space

    def update(
        self, advocate_id: str, before: Iterable[Entry], after: Iterable[Entry], now_ms: int
    ) -> list[tuple[Hold, int]]:
        """Records the holds that began or ended between `before` and `after` (one advocate's
        entries around a decision); returns each hold that ended with the time it ended."""
        old = {e.referral_id: e for e in before}
        ended: list[tuple[Hold, int]] = []
        by_ref: KeyValue | None = None
        for entry in after:
            now = _hold_of(entry)
            previous = old.get(entry.referral_id)
            if now is None and _hold_of(previous) is None:
                continue  # the common case (a reward paid at once): no read at all
            if by_ref is None:
                by_ref = self.space(keyspace.HOLDS_BY_REFERRAL + _lp(advocate_id))
            ref = entry.referral_id.encode()
            raw = by_ref.get(ref)
            was = None if raw is None else _decode(raw)
            if was is not None and now is not None and (was.reason, was.currency) == now[:2]:
                if was.amount_minor != now[2]:  # the same hold, its amount changed
                    self._count(was, -1)
                    self._count(self._write(by_ref, advocate_id, ref, now, was.since_ms), 1)
                continue
            if was is not None:
                self._end(by_ref, advocate_id, ref, was)
                ended.append((was, now_ms))
            if now is not None:
                self._count(self._write(by_ref, advocate_id, ref, now, now_ms), 1)
        return ended

    def _write(
        self, by_ref: KeyValue, advocate_id: str, ref: bytes, hold: tuple[str, str, int], since: int
    ) -> Hold:
        reason, currency, amount = hold
        found = Hold(reason, currency, since, amount)
        value = _PAIR.pack(since, amount) + f"{reason}\x00{currency}".encode()
        by_ref.put(ref, value)
        self._ordered(found).put(_lp(advocate_id) + ref, b"")
        return found

    def _end(self, by_ref: KeyValue, advocate_id: str, ref: bytes, hold: Hold) -> None:
        by_ref.delete(ref)
        self._ordered(hold).delete(_lp(advocate_id) + ref)
        self._count(hold, -1)

    def _ordered(self, hold: Hold) -> KeyValue:
        return self.space(keyspace.HOLDS_BY_REASON + _lp(hold.reason) + _SINCE.pack(hold.since_ms))

    def _count(self, hold: Hold, sign: int) -> None:
        totals = self.space(keyspace.HOLD_TOTALS)
        key = f"{hold.reason}\x00{hold.currency}".encode()
        raw = totals.get(key)
        count, amount = _PAIR.unpack(raw) if raw is not None else (0, 0)
        count, amount = count + sign, amount + sign * hold.amount_minor
        if count > 0:
            totals.put(key, _PAIR.pack(count, amount))
        else:
            totals.delete(key)


def totals(space: Callable[[bytes], Reader]) -> list[Total]:
    """Rewards on hold now, per reason and currency."""
    out = []
    for key, value in space(keyspace.HOLD_TOTALS).items():
        reason, currency = key.decode().split("\x00", 1)
        count, amount = _PAIR.unpack(value)
        out.append(Total(reason, currency, count, amount))
    return out


def oldest_since_ms(space: Callable[[bytes], Reader], reason: str) -> int | None:
    """When the oldest hold with `reason` standing now began (None: there is none)."""
    for key, _ in space(keyspace.HOLDS_BY_REASON + _lp(reason)).items():
        return int(_SINCE.unpack(key[:8])[0])
    return None


def _decode(raw: bytes) -> Hold:
    since, amount = _PAIR.unpack(raw[: _PAIR.size])
    reason, currency = raw[_PAIR.size :].decode().split("\x00", 1)
    return Hold(reason, currency, since, amount)
