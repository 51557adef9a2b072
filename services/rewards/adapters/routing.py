"""Payout-side routing: from records keyed by payout_id to the advocate's ledger.

Finance's results (`rewards.payout-results.v1`) and operator commands (`rewards.by-payout.v1`)
name only a payout. Whenever the ledger side decides a reward, it also publishes a `PayoutOwner`
keyed by payout_id on `rewards.by-payout.v1` (same transaction). The task owning
hash(payout_id) keeps owner[payout_id] = advocate_id (owners keyspace) and forwards each result
or command to `rewards.by-advocate.v1`, keyed by advocate_id, where the ledger lives. A record
whose owner is not known yet waits in the task's payout lot (`referrals.streams.waiting`, for
("payout", payout_id)) and is forwarded when the owner arrives, in arrival order; one that waits
longer than the configured limit goes to the DLQ with UNKNOWN_PAYOUT.

Owners are pruned, so the index does not grow with every payout ever issued. The rule: an
owner entry goes once its payout is settled for good, plus a grace period
(`REWARDS_OWNER_RETENTION_DAYS`, default 30). Settled for good means the ledger applied (or
saw again) the PAID of the payout's current attempt (`decide.settles`): after that no result
or command can change the payout (a result is ALREADY_SETTLED or STALE_ATTEMPT, an approval or
retry is refused). The ledger says so by sending the PAID result back on
`rewards.by-payout.v1` (a PayoutResult there is this confirmation, never finance's input); the
owner's task then notes the payout as settled (keyspace 0x16: payout -> prune time) with a
time-ordered index (0x03: prune time, payout), and each punctuation deletes the entries whose
time has come, reading the index from its start up to the first one not due (at most
`max_releases` per punctuation; nothing at all while an in-memory hint says none is due).
Only the ledger can tell a real settlement from a stale or bogus PAID, which is why the owner
side does not decide it from finance's record as it passes.
Everything else stays: a payout held, pending, issued without a result, or FAILED (an
operator may retry it at any time) keeps its owner. During the grace period a repeated PAID is
routed to the ledger and ignored as a duplicate. After it, a repeated PAID (or an approval or
retry of that payout) finds no owner: it waits like any record of an unknown payout
(`REWARDS_UNKNOWN_PAYOUT_WAIT_S`) and goes to the DLQ with UNKNOWN_PAYOUT; the ledger never
sees it, so nothing is paid or changed, and `referrals reconcile` does not count results the
service dead-lettered.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    CommandOutcome,
    CommandResult,
    PayoutOwner,
    PayoutResult,
    Record,
    RewardCommand,
)
from referrals.contract.topics import COMMAND_RESULTS, REWARDS_BY_ADVOCATE, REWARDS_BY_PAYOUT
from referrals.platform.errors import PermanentError
from referrals.streams.processor import DeadLetterOut, Inbound, Outbound, Output
from referrals.streams.state import KeyValue
from referrals.streams.waiting import Dependency, Waiting, WaitingLot, rerun
from services.rewards.adapters.metrics import RewardsMetrics
from services.rewards.domain.ledger import to_ms

Routed = PayoutResult | RewardCommand
_MS = struct.Struct(">q")


@dataclass(frozen=True, slots=True)
class Forward:
    """Send `record` to the ledger of `advocate_id`."""

    advocate_id: str
    record: Routed


@dataclass(frozen=True, slots=True)
class Wait:
    """The payout's owner is not known yet: keep the record until it is."""

    payout_id: str


def route(owner: str | None, record: Routed) -> Forward | Wait:
    """Where a result or command goes, given the payout's owner (None: not known yet)."""
    if owner is None:
        return Wait(record.payout_id)
    if isinstance(record, RewardCommand):
        record = replace(record, advocate_id=owner)
    return Forward(owner, record)


def unknown_payout(wait_s: float) -> Callable[[Waiting], PermanentError]:
    """The error of a result or command whose payout was not issued within the wait."""
    error = PermanentError(
        f"no payout with this id was issued within {int(wait_s * 1000) // 1000} s",
        reason="UNKNOWN_PAYOUT",
    )
    return lambda _: error


def unknown_to_operator(command: RewardCommand, now: datetime) -> Outbound:
    """REFUSED UNKNOWN_PAYOUT for a command naming a payout no ledger of this service holds."""
    return Outbound(
        COMMAND_RESULTS,
        command.command_id,
        CommandResult(
            command_id=command.command_id,
            action=command.action,
            target_id=command.payout_id,
            outcome=CommandOutcome.REFUSED,
            occurred_at=now,
            reason="UNKNOWN_PAYOUT",
            state="unknown: no reward with this payout_id (or one settled and pruned long ago)",
        ),
    )


def _payout(payout_id: str) -> Dependency:
    return ("payout", payout_id)


def _never(_: Dependency) -> bool:
    return False  # an owner releases its records as it arrives (`_owner`)


class Owners:
    """One task's payout owners, and the settled ones by the time they are pruned.

    `owners`: payout -> advocate; `settled`: payout -> prune time (8-byte epoch ms);
    `by_prune`: (prune time, payout) -> "" in time order. Every write is a store write, so it
    commits (or aborts) with the task's transaction; the in-memory `_next_ms` is only a hint
    (rebuilt with the object after an abort) that saves the index read when nothing is due.
    """

    def __init__(self, owners: KeyValue, settled: KeyValue, by_prune: KeyValue) -> None:
        self._owners = owners
        self._settled = settled
        self._by_prune = by_prune
        self._next_ms: int | None = None
        self._known = False  # whether _next_ms was read from the index yet

    def get(self, payout_id: str) -> str | None:
        raw = self._owners.get(payout_id.encode())
        return None if raw is None else raw.decode()

    def put(self, payout_id: str, advocate_id: str) -> None:
        self._owners.put(payout_id.encode(), advocate_id.encode())

    def settle(self, payout_id: str, prune_ms: int) -> bool:
        """Notes the payout settled, its owner to be pruned at `prune_ms`; False when its owner
        is not known (pruned already) or it was noted before (the first note holds)."""
        key = payout_id.encode()
        if self._owners.get(key) is None or self._settled.get(key) is not None:
            return False
        self._settled.put(key, _MS.pack(prune_ms))
        self._by_prune.put(_MS.pack(prune_ms) + key, b"")
        if self._known and (self._next_ms is None or prune_ms < self._next_ms):
            self._next_ms = prune_ms
        return True

    def prune(self, now_ms: int, limit: int) -> list[str]:
        """Deletes up to `limit` settled owners whose prune time is at or before `now_ms`,
        earliest first; reads only those index entries and the next one."""
        if self._known and (self._next_ms is None or self._next_ms > now_ms):
            return []
        pruned: list[str] = []
        self._next_ms = None
        for key, _ in self._by_prune.items():
            at = _MS.unpack(key[: _MS.size])[0]
            if at > now_ms or len(pruned) >= limit:
                self._next_ms = at
                break
            payout = key[_MS.size :]
            self._by_prune.delete(key)
            self._settled.delete(payout)
            self._owners.delete(payout)
            pruned.append(payout.decode())
        self._known = True
        return pruned


class PayoutRouter:
    """The payout side of a task: owners, forwarding, waiting records and their expiry."""

    def __init__(
        self,
        owners: Mapping[int, Owners],  # task -> its owners
        waiting: Mapping[int, WaitingLot],  # task -> its records waiting for their owner
        metrics: RewardsMetrics,
        codec: AvroCodec,
        retention_ms: int,  # how long a settled payout's owner is kept
    ) -> None:
        self.owners = owners
        self.waiting = waiting
        self.metrics = metrics
        self.codec = codec
        self.retention_ms = retention_ms

    def handle(self, record: Inbound, now: datetime) -> list[Output]:
        value: Record = record.value
        if isinstance(value, PayoutOwner):
            return self._owner(record.partition, value)
        if isinstance(value, PayoutResult) and record.topic == REWARDS_BY_PAYOUT:
            # the ledger's confirmation that this PAID settled the payout for good
            self.owners[record.partition].settle(value.payout_id, to_ms(now) + self.retention_ms)
            return []
        if isinstance(value, PayoutResult | RewardCommand):
            return self._routed(record, value, now)
        raise PermanentError(
            f"{type(value).__name__} is not routed by payout", reason="WRONG_RECORD_TYPE"
        )

    def _owner(self, task: int, owner: PayoutOwner) -> list[Output]:
        self.owners[task].put(owner.payout_id, owner.advocate_id)
        released = self.waiting[task].release(_payout(owner.payout_id))
        return rerun(
            released, self.codec, lambda r: [self._forward(route(owner.advocate_id, r.value))]
        )

    def _routed(self, record: Inbound, value: Routed, now: datetime) -> list[Output]:
        task = record.partition
        owner = self.owners[task].get(value.payout_id)
        if owner is None and isinstance(value, RewardCommand):
            # An operator names a payout they saw: its owner record was committed with it and
            # precedes any command on this partition. Unknown means no such payout (or one
            # settled and pruned long ago): answered at once, not parked.
            return [unknown_to_operator(value, now)]
        if owner is None:  # its owner record releases it, in arrival order
            self.waiting[task].park(record, _payout(value.payout_id), now)
            self.metrics.stage(task, self.metrics.parked.labels("payout").inc)
            return []
        return [self._forward(route(owner, value))]

    @staticmethod
    def _forward(decision: Forward | Wait) -> Outbound:
        assert isinstance(decision, Forward)
        return Outbound(REWARDS_BY_ADVOCATE, decision.advocate_id, decision.record)

    def expire(self, task: int, now: datetime) -> list[DeadLetterOut]:
        """Dead-letters results and commands whose payout never showed up within the wait."""
        lot = self.waiting[task]
        return lot.sweep(_never, now).dead if lot.due(now) else []

    def prune(self, task: int, now: datetime, limit: int) -> int:
        """Deletes the owners of payouts settled more than the retention ago; how many."""
        return len(self.owners[task].prune(to_ms(now), limit))
