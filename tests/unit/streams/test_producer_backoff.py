"""Transactional producers retry CONCURRENT_TRANSACTIONS after a few ms, not aiokafka's 100 ms:
a task's next transaction starts while the broker still writes the last one's markers, and the
default wait was added to each back-to-back transaction (issue 11)."""

from __future__ import annotations

import asyncio

from aiokafka.producer import sender

from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import TXN_RETRY_BACKOFF_MS, make_producer


def test_transactional_producers_retry_concurrent_transactions_quickly() -> None:
    async def backoffs() -> tuple[float, float]:
        settings = KafkaSettings(bootstrap_servers="127.0.0.1:1")
        txn = make_producer(settings, transactional_id="task-0")
        plain = make_producer(settings)
        got = txn._sender._retry_backoff, plain._sender._retry_backoff
        await txn.stop()  # never started: closes nothing but the objects
        await plain.stop()
        return got

    txn, plain = asyncio.run(backoffs())
    assert TXN_RETRY_BACKOFF_MS <= 10
    assert txn == TXN_RETRY_BACKOFF_MS / 1000
    assert plain == 0.1  # other producers keep the client's default
    # The first AddPartitionsToTxn of a transaction has its own, shorter, wait in aiokafka.
    assert sender.BACKOFF_OVERRIDE == TXN_RETRY_BACKOFF_MS / 1000
