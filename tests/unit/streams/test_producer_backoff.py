"""A CONCURRENT_TRANSACTIONS answer is retried after a few ms, not aiokafka's 100 ms: a task's
next transaction starts while the broker still writes the last one's markers, and the default
wait was added to each back-to-back transaction (issue 11). Every other retry of a
transactional producer waits 20 ms (the Java client's fast retry), so an unreachable coordinator
is not polled every few ms."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition, errors
from aiokafka.producer import sender
from aiokafka.protocol.produce import ProduceResponse_v5
from aiokafka.protocol.transaction import (
    AddOffsetsToTxnResponse_v0,
    AddPartitionsToTxnResponse_v0,
    EndTxnResponse_v0,
)

import referrals.streams.kafka as kafka

DEFAULT = 0.1  # aiokafka's retry_backoff_ms, in seconds
QUICK = kafka.CONCURRENT_TXN_RETRY_MS / 1000


def _add_partitions(throttle_time_ms: int, error_code: int) -> AddPartitionsToTxnResponse_v0:
    return AddPartitionsToTxnResponse_v0(throttle_time_ms, [("topic", [(0, error_code)])])


HANDLERS = [
    (lambda s: sender.AddPartitionsToTxnHandler(s, ["topic-0"]), _add_partitions),
    (lambda s: sender.AddOffsetsToTxnHandler(s, "group"), AddOffsetsToTxnResponse_v0),
    (lambda s: sender.EndTxnHandler(s, True), EndTxnResponse_v0),
]


def _sender() -> SimpleNamespace:
    # Partitions already in the transaction: aiokafka's own 20 ms case does not apply.
    manager = SimpleNamespace(txn_partitions={"topic-0"})
    return SimpleNamespace(_retry_backoff=DEFAULT, _txn_manager=manager)


@pytest.mark.parametrize(("make", "response"), HANDLERS)
def test_concurrent_transactions_is_retried_quickly(make, response) -> None:  # type: ignore[no-untyped-def]
    handler = make(_sender())
    answer = response(throttle_time_ms=0, error_code=errors.ConcurrentTransactions.errno)
    assert handler.handle_response(answer) == QUICK
    assert QUICK <= 0.01


@pytest.mark.parametrize(("make", "response"), HANDLERS)
def test_other_retries_keep_the_producers_backoff(make, response) -> None:  # type: ignore[no-untyped-def]
    handler = make(_sender())
    loading = response(throttle_time_ms=0, error_code=errors.CoordinatorLoadInProgressError.errno)
    assert handler.handle_response(loading) == DEFAULT


def test_transactional_producers_retry_after_the_fast_backoff() -> None:
    async def backoffs() -> tuple[float, float]:
        settings = kafka.KafkaSettings(bootstrap_servers="127.0.0.1:1")
        txn = kafka.make_producer(settings, transactional_id="task-0")
        plain = kafka.make_producer(settings)
        got = txn._sender._retry_backoff, plain._sender._retry_backoff
        await txn.stop()  # never started: closes nothing but the objects
        await plain.stop()
        return got

    txn, plain = asyncio.run(backoffs())
    assert txn == kafka.TXN_RETRY_BACKOFF_MS / 1000 < DEFAULT
    assert plain == DEFAULT


def _produce_handler(transactional: bool) -> tuple[sender.SendProduceReqHandler, SimpleNamespace]:
    manager = SimpleNamespace(transactional_id="task-0") if transactional else None
    fake = SimpleNamespace(_retry_backoff=kafka.TXN_RETRY_BACKOFF_MS / 1000, _txn_manager=manager)
    fake.client = None
    batch = SimpleNamespace(expired=lambda: False)
    return sender.SendProduceReqHandler(fake, {TopicPartition("topic", 0): batch}), batch


def _produced(error_code: int) -> ProduceResponse_v5:
    return ProduceResponse_v5([("topic", [(0, error_code, -1, -1, -1)])], 0)


def test_a_produce_meeting_the_last_transactions_markers_is_retried_once_quickly() -> None:
    """NOT_ENOUGH_REPLICAS is how a 3.x broker's KIP-890 check answers a Produce while the last
    transaction's markers are being written: the first retry comes after a few ms; the same
    batch refused again waits the producer's backoff (a replica really is missing)."""
    refused = errors.NotEnoughReplicasError.errno
    handler, batch = _produce_handler(transactional=True)
    handler.handle_response(_produced(refused))
    assert handler._default_backoff == QUICK
    again = sender.SendProduceReqHandler(handler._sender, {TopicPartition("topic", 0): batch})
    again.handle_response(_produced(refused))
    assert again._default_backoff == kafka.TXN_RETRY_BACKOFF_MS / 1000


def test_other_produce_retries_and_plain_producers_keep_the_backoff() -> None:
    handler, _ = _produce_handler(transactional=True)
    handler.handle_response(_produced(errors.RequestTimedOutError.errno))
    assert handler._default_backoff == kafka.TXN_RETRY_BACKOFF_MS / 1000
    plain, _ = _produce_handler(transactional=False)
    plain.handle_response(_produced(errors.NotEnoughReplicasError.errno))
    assert plain._default_backoff == kafka.TXN_RETRY_BACKOFF_MS / 1000
