"""Kafka client construction: every process builds its clients here, from KafkaSettings.

Security settings (SASL, TLS) are passed through unchanged so the same code runs against a local
PLAINTEXT broker and a managed cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ConcurrentTransactions, KafkaError, NotEnoughReplicasError
from aiokafka.helpers import create_ssl_context
from aiokafka.producer import sender as _sender
from aiokafka.protocol.metadata import MetadataRequest

from referrals.platform.errors import ConfigError
from referrals.platform.settings import KafkaSettings
from referrals.streams.murmur import KeyPartitioner

log = logging.getLogger(__name__)


def client_options(settings: KafkaSettings, client_id: str | None = None) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": client_id or settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        opts["sasl_mechanism"] = settings.sasl_mechanism
        opts["sasl_plain_username"] = settings.sasl_username
        opts["sasl_plain_password"] = settings.sasl_password
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = create_ssl_context(cafile=settings.ssl_cafile)
    return opts


def transactional_id(settings: KafkaSettings, base: str) -> str:
    """A fresh transactional id for a one-off producer (a CLI command, an API call):
    `<base>-<uuid>`, or `<user>-<base>-<uuid>` when the client authenticates as a SASL user, so
    that the user's ACLs (the transactional ids starting `<user>-`) cover it."""
    name = f"{base}-{uuid.uuid4()}"
    user = settings.sasl_user
    return f"{user}-{name}" if user else name


# A task starts its next transaction as soon as the last one commits, while the broker is still
# writing that one's markers: the coordinator answers CONCURRENT_TRANSACTIONS (KAFKA-5477), and
# so does the partition's check of the transaction on a Produce (KIP-890), as the
# NOT_ENOUGH_REPLICAS an old client understands. aiokafka retries each after its backoff,
# 100 ms, which added up to 100 ms to back-to-back transactions; the markers take a few ms.
# Transactional producers retry after TXN_RETRY_BACKOFF_MS (the Java client's fast retry), and
# a CONCURRENT_TRANSACTIONS answer of the coordinator after CONCURRENT_TXN_RETRY_MS.
TXN_RETRY_BACKOFF_MS = 20
CONCURRENT_TXN_RETRY_MS = 5


def _retry_concurrent_transactions_sooner(handler: Any) -> None:
    original = handler.handle_response

    def handle_response(self: Any, resp: Any) -> float | None:
        backoff: float | None = original(self, resp)
        if backoff is not None and ConcurrentTransactions.errno in _error_codes(resp):
            return CONCURRENT_TXN_RETRY_MS / 1000
        return backoff

    handler.handle_response = handle_response


def _error_codes(resp: Any) -> set[int]:
    """An answer's error codes: its own, or (AddPartitionsToTxn) each partition's."""
    if hasattr(resp, "error_code"):
        return {resp.error_code}
    return {code for _, partitions in resp.errors for _, code in partitions}


for _handler in (
    _sender.AddPartitionsToTxnHandler,
    _sender.AddOffsetsToTxnHandler,
    _sender.EndTxnHandler,
):
    _retry_concurrent_transactions_sooner(_handler)


def _retry_first_not_enough_replicas_sooner(handler: Any) -> None:
    """A transactional Produce answered NOT_ENOUGH_REPLICAS is retried once after
    CONCURRENT_TXN_RETRY_MS, then after the producer's backoff: the first is nearly always the
    KIP-890 check meeting the last transaction's markers, still being written (measured: 0.7 % of
    attribution's transactions at 1,000 events/s, four times as many of notifications'), each
    paying 20 ms on a WON's way to its payout. A batch refused again meets a genuine shortage
    (a replica down below min.insync.replicas) and is not retried every few ms."""
    original = handler.handle_response

    def handle_response(self: Any, response: Any) -> None:
        original(self, response)
        manager = self._sender._txn_manager
        if manager is None or manager.transactional_id is None:
            return
        fast = False
        for topic, partitions in response.topics:
            for info in partitions:
                batch = self._batches.get(TopicPartition(topic, info[0]))
                if info[1] != NotEnoughReplicasError.errno or batch is None:
                    continue
                if not getattr(batch, "_retried_sooner", False):
                    batch._retried_sooner = fast = True
        if fast:
            self._default_backoff = min(self._default_backoff, CONCURRENT_TXN_RETRY_MS / 1000)

    handler.handle_response = handle_response


_retry_first_not_enough_replicas_sooner(_sender.SendProduceReqHandler)


def make_producer(
    settings: KafkaSettings,
    *,
    client_id: str | None = None,
    transactional_id: str | None = None,
    **overrides: Any,
) -> AIOKafkaProducer:
    """A producer; with `transactional_id` it is idempotent with acks=all (aiokafka forces it)."""
    opts = client_options(settings, client_id)
    # A few ms of lingering lets a batch of outputs share requests without hurting latency.
    opts.update(linger_ms=5, max_batch_size=256 * 1024, compression_type=None)
    opts.update(partitioner=KeyPartitioner())  # aiokafka's, with a murmur2 twice as fast
    if transactional_id is not None:
        opts.update(transactional_id=transactional_id, enable_idempotence=True, acks="all")
        opts.update(retry_backoff_ms=TXN_RETRY_BACKOFF_MS)
    else:
        opts.update(acks="all", enable_idempotence=True)
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


# For consumers that read a whole topic at start-up (global tables, changelog restores): a
# fetch answer is held in memory whole, and the client's default allows 50 MB of it. Reading a
# million advocates' profiles that way was the peak of attribution's memory (281 MB).
BOUNDED_FETCH: dict[str, Any] = {
    "fetch_max_bytes": 8 * 1024 * 1024,
    "max_partition_fetch_bytes": 1024 * 1024,
}


class FetchPacing:
    """Fits a consumer's fetches to its load. Quiet, a fetch returns as soon as one record
    arrives (or after the consumer's fetch_max_wait_ms with none): a record is processed the
    moment it is written. Busy, a fetch waits up to BUSY_WAIT_MS for BUSY_MIN_BYTES: without
    that, every fetch answered at once with the few records written since the last one, a
    fetch request per round trip and consumer (a tenth of attribution's time went to writing
    fetch requests at 1,000 events/s, and as much of the broker's to answering them). The
    rate is measured over WINDOW_S from what `observe` is told."""

    BUSY_RECORDS_S = 300.0  # records/s from which a consumer counts as busy
    BUSY_MIN_BYTES = 64 * 1024
    BUSY_WAIT_MS = 15
    WINDOW_S = 0.25

    def __init__(self, consumer: AIOKafkaConsumer, clock: Any = time.monotonic) -> None:
        self._fetcher = consumer._fetcher
        self._quiet = (self._fetcher._fetch_min_bytes, self._fetcher._fetch_max_wait_ms)
        self._clock = clock
        self._since = clock()
        self._records = 0
        self.busy = False

    def observe(self, records: int) -> None:
        self._records += records
        now = self._clock()
        elapsed = now - self._since
        if elapsed < self.WINDOW_S:
            return
        busy = self._records / elapsed >= self.BUSY_RECORDS_S
        self._since, self._records = now, 0
        if busy != self.busy:
            self.busy = busy
            fetcher = self._fetcher
            if busy:
                fetcher._fetch_min_bytes = self.BUSY_MIN_BYTES
                fetcher._fetch_max_wait_ms = min(self.BUSY_WAIT_MS, self._quiet[1])
            else:
                fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = self._quiet


STOP_TIMEOUT_S = 10.0  # a client's stop waits no longer than this


class _Stoppable(Protocol):
    async def stop(self) -> None: ...


_C = TypeVar("_C", bound="_Startable")


async def stop_quietly(client: _Stoppable) -> None:
    """Stops a client (producer, consumer) whose broker may be gone; never waits long or
    raises, unless the caller itself is being cancelled.

    aiokafka's `Fetcher.close` cancels a fetch waiting out its retry backoff and awaits it
    without catching the `CancelledError`, so stopping a consumer during a broker outage can
    raise one that nobody asked for (aio-libs/aiokafka#647, "Stop consumer raises
    CancelledError", open): found by the fault suite, where it ended a restarting service
    (status 1) in place of the broker error it was retrying."""
    try:
        await asyncio.wait_for(client.stop(), timeout=STOP_TIMEOUT_S)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("client stop raised a stray CancelledError", extra={"client": repr(client)})
    except Exception as err:  # it is being thrown away
        log.debug("client stop failed", extra={"client": repr(client), "error": repr(err)})


class _Startable(_Stoppable, Protocol):
    async def start(self) -> None: ...


async def started(client: _C) -> _C:
    """`client` started; if its start fails (the broker is away), it is stopped before the
    error is raised, so a caller that tries again leaves nothing running behind."""
    try:
        await client.start()
    except BaseException:
        await stop_quietly(client)
        raise
    return client


def make_consumer(
    settings: KafkaSettings,
    *topics: str,
    group_id: str | None = None,
    client_id: str | None = None,
    read_committed: bool = True,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A consumer that never auto-commits; reads only committed records unless told otherwise.

    A new consumer group starts from the beginning (the contract's start-up rule).
    """
    opts = client_options(settings, client_id)
    opts.update(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    opts.update(overrides)
    return AIOKafkaConsumer(*topics, **opts)


def make_admin(settings: KafkaSettings, client_id: str | None = None) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(settings, client_id))


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, refreshing metadata when the consumer has none for it yet (a
    consumer without subscriptions learns topics only on request). Missing topic, or one this
    client may not see (ACLs): an error saying which."""
    for attempt in range(50):  # a just-created topic can take a moment to reach the metadata
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if attempt == 0 and await not_authorized(consumer._client, topic):
            break
        await asyncio.sleep(0.1)
    raise ConfigError(await absent_topic(consumer._client, topic))


TOPIC_AUTHORIZATION_FAILED = 29


async def not_authorized(client: Any, topic: str) -> bool:
    """Whether the broker refuses to describe `topic` to this client (its principal has no ACL
    on it). A listing of all topics silently leaves such a topic out, as if it did not exist."""
    try:
        response = await client.send(client.get_random_node(), MetadataRequest([topic]))
    except KafkaError:
        return False
    return any(
        t["error_code"] == TOPIC_AUTHORIZATION_FAILED for t in response.to_object()["topics"]
    )


async def absent_topic(client: Any, topic: str) -> str:
    """Why a client found no partitions for `topic`: not authorized (naming the SASL user), or
    the topic does not exist."""
    if await not_authorized(client, topic):
        user = getattr(client, "_sasl_plain_username", None)
        who = f"SASL user {user!r}" if user else "this client"
        return (
            f"topic {topic!r}: {who} is not authorized to use it (its ACLs do not name it; "
            "see `referrals acl show`)"
        )
    return f"topic {topic!r} does not exist; run `referrals topics create`"
