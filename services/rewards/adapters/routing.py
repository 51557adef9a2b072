"""Payout-side routing: from records keyed by payout_id to the advocate's ledger.

Finance's results (`rewards.payout-results.v1`) and operator commands (`rewards.by-payout.v1`)
name only a payout. Whenever the ledger side decides a reward, it also publishes a `PayoutOwner`
keyed by payout_id on `rewards.by-payout.v1` (same transaction). The task owning
hash(payout_id) keeps owner[payout_id] = advocate_id (owners keyspace) and forwards each result
or command to `rewards.by-advocate.v1`, keyed by advocate_id, where the ledger lives. A record
whose owner is not known yet waits in the task's payout lot (`referrals.streams.waiting`, for
("payout", payout_id)) and is forwarded when the owner arrives, in arrival order; one that waits
longer than the configured limit goes to the DLQ with UNKNOWN_PAYOUT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from referrals.contract.avro import AvroCodec
from referrals.contract.records import PayoutOwner, PayoutResult, Record, RewardCommand
from referrals.contract.topics import REWARDS_BY_ADVOCATE
from referrals.platform.errors import PermanentError
from referrals.streams.processor import DeadLetterOut, Inbound, Outbound, Output
from referrals.streams.state import KeyValue
from referrals.streams.waiting import Dependency, Waiting, WaitingLot, rerun
from services.rewards.adapters.metrics import RewardsMetrics

Routed = PayoutResult | RewardCommand


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


def _payout(payout_id: str) -> Dependency:
    return ("payout", payout_id)


def _never(_: Dependency) -> bool:
    return False  # an owner releases its records as it arrives (`_owner`)


class PayoutRouter:
    """The payout side of a task: owners, forwarding, waiting records and their expiry."""

    def __init__(
        self,
        owners: Callable[[int], KeyValue],
        waiting: Mapping[int, WaitingLot],  # task -> its records waiting for their owner
        metrics: RewardsMetrics,
        codec: AvroCodec,
    ) -> None:
        self.owners = owners
        self.waiting = waiting
        self.metrics = metrics
        self.codec = codec

    def handle(self, record: Inbound, now: datetime) -> list[Output]:
        value: Record = record.value
        if isinstance(value, PayoutOwner):
            return self._owner(record.partition, value)
        if isinstance(value, PayoutResult | RewardCommand):
            return self._routed(record, value, now)
        raise PermanentError(
            f"{type(value).__name__} is not routed by payout", reason="WRONG_RECORD_TYPE"
        )

    def _owner(self, task: int, owner: PayoutOwner) -> list[Output]:
        self.owners(task).put(owner.payout_id.encode(), owner.advocate_id.encode())
        released = self.waiting[task].release(_payout(owner.payout_id))
        return rerun(
            released, self.codec, lambda r: [self._forward(route(owner.advocate_id, r.value))]
        )

    def _routed(self, record: Inbound, value: Routed, now: datetime) -> list[Output]:
        task = record.partition
        raw = self.owners(task).get(value.payout_id.encode())
        owner = None if raw is None else raw.decode()
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
