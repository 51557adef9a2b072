"""Payout-side routing: from records keyed by payout_id to the advocate's ledger.

Finance's results (`rewards.payout-results.v1`) and operator commands (`rewards.by-payout.v1`)
name only a payout. Whenever the ledger side decides a reward, it also publishes a `PayoutOwner`
keyed by payout_id on `rewards.by-payout.v1` (same transaction). The task owning
hash(payout_id) keeps owner[payout_id] = advocate_id (owners keyspace) and forwards each result
or command to `rewards.by-advocate.v1`, keyed by advocate_id, where the ledger lives. A record
whose owner is not known yet waits (see `parking`) and is forwarded when the owner arrives; one
that waits longer than the configured limit goes to the DLQ with UNKNOWN_PAYOUT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from referrals.contract.avro import AvroCodec
from referrals.contract.records import PayoutOwner, PayoutResult, Record, RewardCommand
from referrals.contract.topics import REWARDS_BY_ADVOCATE
from referrals.platform.errors import PermanentError
from referrals.streams.processor import DeadLetterOut, Inbound, Outbound, Output
from referrals.streams.state import KeyValue
from services.rewards.adapters.metrics import RewardsMetrics
from services.rewards.adapters.parking import Kind, Parking

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


class PayoutRouter:
    """The payout side of a task: owners, forwarding, waiting records and their expiry."""

    def __init__(
        self,
        owners: Callable[[int], KeyValue],
        parking: Parking,
        metrics: RewardsMetrics,
        codec: AvroCodec,
        wait_s: float,
    ) -> None:
        self.owners = owners
        self.parking = parking
        self.metrics = metrics
        self.codec = codec
        self.wait_ms = int(wait_s * 1000)

    def handle(self, record: Inbound, now_ms: int) -> list[Output]:
        value: Record = record.value
        if isinstance(value, PayoutOwner):
            return self._owner(record.partition, value)
        if isinstance(value, PayoutResult | RewardCommand):
            return self._routed(record, value, now_ms)
        raise PermanentError(
            f"{type(value).__name__} is not routed by payout", reason="WRONG_RECORD_TYPE"
        )

    def _owner(self, task: int, owner: PayoutOwner) -> list[Output]:
        self.owners(task).put(owner.payout_id.encode(), owner.advocate_id.encode())
        out: list[Output] = []
        for parked in self.parking.take(task, Kind.PAYOUT, owner.payout_id):
            waiting = parked.inbound(self.codec)
            assert isinstance(waiting.value, PayoutResult | RewardCommand)
            out.append(self._forward(route(owner.advocate_id, waiting.value)))
        return out

    def _routed(self, record: Inbound, value: Routed, now_ms: int) -> list[Output]:
        task = record.partition
        raw = self.owners(task).get(value.payout_id.encode())
        owner = None if raw is None else raw.decode()
        if owner is None:  # its owner record releases it, in arrival order
            self.parking.park(Kind.PAYOUT, value.payout_id, record, now_ms)
            self.metrics.stage(task, self.metrics.parked.labels("payout").inc)
            return []
        return [self._forward(route(owner, value))]

    @staticmethod
    def _forward(decision: Forward | Wait) -> Outbound:
        assert isinstance(decision, Forward)
        return Outbound(REWARDS_BY_ADVOCATE, decision.advocate_id, decision.record)

    def expire(self, task: int, now_ms: int) -> list[Output]:
        """Dead-letters results and commands whose payout never showed up within the wait."""
        out: list[Output] = []
        for parked in self.parking.expired(task, Kind.PAYOUT, now_ms - self.wait_ms):
            error = PermanentError(
                f"no payout with this id was issued within {self.wait_ms // 1000} s",
                reason="UNKNOWN_PAYOUT",
            )
            out.append(DeadLetterOut(parked.inbound(self.codec), error))
        return out
