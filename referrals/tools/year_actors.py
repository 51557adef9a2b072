"""The people around the system during the main job's year: finance paying every payout and
recovering clawbacks, and an operator reviewing the rewards held for fraud.

Both read what the rewards service wrote (read_committed, from the beginning) and answer the
way the contract says their real counterparts do: finance with a PayoutResult per payout on
rewards.payout-results.v1, the operator with `referrals approve|deny` commands (the functions
behind the CLI, `services.rewards.adapters.operator.request`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
)
from referrals.contract.topics import PAYOUT_RESULTS, PAYOUTS_V2, STATUS, TopicNames
from referrals.platform.errors import DecodeError
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer, make_producer, partitions_of
from services.rewards.adapters.operator import NoAnswer, kafka_principal, new_command, request

FRAUD_REVIEW = "FRAUD_REVIEW"
OPERATOR = "demo-operator"


async def _follow(
    kafka: KafkaSettings,
    topic: str,
    client_id: str,
    stop: asyncio.Event,
    handle: Callable[[bytes], Any],
) -> None:
    """Calls `handle` (a coroutine function) on every committed record of `topic` until `stop`."""
    consumer = make_consumer(kafka, client_id=client_id)
    await consumer.start()
    try:
        parts = await partitions_of(consumer, TopicNames(kafka.topic_prefix)(topic))
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            for messages in batch.values():
                for msg in messages:
                    await handle(msg.value)
    finally:
        await consumer.stop()


class Finance:
    """Finance's side: reads rewards.payouts.v2 and answers each payout (the advocate's and the
    friend's) with PAID; a clawback is money to recover, not to pay: it is only counted."""

    def __init__(
        self, kafka: KafkaSettings, pays: Callable[[PayoutCommand], bool] = lambda _: True
    ) -> None:
        self.kafka = kafka
        self.pays = pays  # which payouts this finance answers (the others are not its own)
        self.paid: set[tuple[str, int]] = set()  # advocate payouts
        self.earned: Counter[str] = Counter()  # advocate -> the amount of their payouts paid
        self.friends_paid: set[tuple[str, int]] = set()
        self.clawbacks: set[str] = set()
        self.codec = AvroCodec()
        self.producer: Any = None

    async def run(self, stop: asyncio.Event) -> None:
        self.producer = make_producer(self.kafka, client_id="demo-finance")
        await self.producer.start()
        try:
            await _follow(self.kafka, PAYOUTS_V2, "demo-finance", stop, self._pay)
        finally:
            await self.producer.stop()

    async def _pay(self, value: bytes) -> None:
        payout = self.codec.decode(value, "PayoutCommand")
        assert isinstance(payout, PayoutCommand)
        if not self.pays(payout):
            return
        if payout.kind is PayoutKind.CLAWBACK:
            self.clawbacks.add(payout.payout_id)
            return
        attempt = (payout.payout_id, payout.attempt)
        done = self.friends_paid if payout.recipient is Recipient.FRIEND else self.paid
        if attempt in done:
            return
        done.add(attempt)
        if payout.recipient is Recipient.ADVOCATE:
            self.earned[payout.advocate_id] += payout.amount_minor
        result = PayoutResult(
            payout.payout_id, payout.attempt, PayoutStatus.PAID, datetime.now(UTC)
        )
        topic = TopicNames(self.kafka.topic_prefix)(PAYOUT_RESULTS)
        await self.producer.send(topic, self.codec.encode(result), key=payout.payout_id.encode())


class Operator:
    """Reviews each reward held FRAUD_REVIEW (found on referral.status.v1, which names its
    payout_id): denies those of the advocates in `deny`, approves the others (the simulated
    year's operator plan, decided per advocate)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        program_id: str,
        deny: Collection[str],
        show: Callable[[str], None],
    ) -> None:
        self.kafka, self.program_id, self.deny, self.show = kafka, program_id, set(deny), show
        self.decided: dict[str, str] = {}  # payout_id -> "DENY APPLIED", ...
        self.codec = AvroCodec()

    async def run(self, stop: asyncio.Event) -> None:
        await _follow(self.kafka, STATUS, "demo-operator", stop, self._review)

    async def _review(self, value: bytes) -> None:
        if FRAUD_REVIEW.encode() not in value:  # Avro writes the reason's text as is: most
            return  # statuses are not held for review, and decoding each cost the year's CPU
        try:
            status = self.codec.decode(value, "ReferralStatusChanged")
        except DecodeError:
            return
        if not self._held_for_fraud(status):
            return
        assert isinstance(status, ReferralStatusChanged) and status.payout_id is not None
        denied = status.advocate_id in self.deny
        action = RewardAction.DENY if denied else RewardAction.APPROVE
        reason = "burst of won deals on one day" if denied else "checked: genuine deals"
        principal = kafka_principal(self.kafka)
        command = new_command(action, status.payout_id, OPERATOR, reason, principal=principal)
        try:
            answer = await request(self.kafka, command)
        except NoAnswer as err:
            self.show(f"operator: {err}")
            return
        outcome = f"{action.value} {answer.result.outcome.value}"
        self.decided[status.payout_id] = outcome
        self.show(f"operator: {outcome} {status.payout_id} ({status.advocate_id})")

    def _held_for_fraud(self, status: Any) -> bool:
        return (
            isinstance(status, ReferralStatusChanged)
            and status.program_id == self.program_id
            and status.status is ReferralStatus.REWARD_HELD
            and status.reason == FRAUD_REVIEW
            and status.payout_id is not None
            and status.payout_id not in self.decided
        )
