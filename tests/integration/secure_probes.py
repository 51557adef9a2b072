"""Asking a secured broker what a principal may do, by doing it: a write that is aborted (no
reader ever sees it), a read of one partition. Each answers True or False from the broker's own
reply; neither guesses from a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from aiokafka import TopicPartition
from aiokafka.errors import (
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from referrals.contract.acls import SERVICES
from referrals.contract.topics import TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer, make_producer, not_authorized, transactional_id

from ..conftest import SecureBroker

REFUSED = (TopicAuthorizationFailedError, TransactionalIdAuthorizationFailed)
ABORT_WITHIN_S = 30.0
ANSWER_WITHIN_S = 30.0  # a broker that neither serves nor refuses a fetch by then: a failure


def probe_id(secured: SecureBroker, principal: str) -> str:
    """A transactional id `principal` may use: a service's under its group, a user's under its
    name (as its CLI's are)."""
    if principal in SERVICES:
        return f"{secured.groups[principal]}-probe-{uuid.uuid4().hex[:8]}"
    return transactional_id(secured.settings(principal), "probe")


async def can_write(secured: SecureBroker, principal: str, topic: str) -> bool:
    """Sends one record to `topic` as `principal` in a transaction, then aborts it: True when
    the broker accepted the record, False when it refused the principal the topic."""
    settings = secured.settings(principal)
    producer = make_producer(
        settings, client_id=f"probe-{principal}", transactional_id=probe_id(secured, principal)
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        try:
            physical = TopicNames(settings.topic_prefix)(topic)
            await producer.send_and_wait(physical, b"probe", key=b"probe", partition=0)
            accepted = True
        except REFUSED:
            accepted = False
        with contextlib.suppress(KafkaError):  # a refused send leaves nothing to abort
            await asyncio.wait_for(producer.abort_transaction(), ABORT_WITHIN_S)
        return accepted
    finally:
        await producer.stop()


async def can_read(settings: KafkaSettings, topic: str) -> bool:
    """Fetches partition 0 of `topic` read_committed: True once the broker answered a fetch
    (the partition's high watermark is known), False when it refused the principal."""
    physical = TopicNames(settings.topic_prefix)(topic)
    consumer = make_consumer(settings, client_id="probe-reader")
    await consumer.start()
    try:
        if await not_authorized(consumer._client, physical):
            return False  # not even allowed to know the topic exists
        tp = TopicPartition(physical, 0)
        consumer.assign([tp])
        deadline = time.monotonic() + ANSWER_WITHIN_S
        while time.monotonic() < deadline:
            try:
                await consumer.getmany(tp, timeout_ms=200)
            except TopicAuthorizationFailedError:
                return False
            if consumer.highwater(tp) is not None:
                return True
            await asyncio.sleep(0.05)
        raise AssertionError(f"no answer to a fetch of {physical} within {ANSWER_WITHIN_S} s")
    finally:
        await consumer.stop()
