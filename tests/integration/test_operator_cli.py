"""`referrals approve|deny|retry` against the real broker: the command goes to
operator.commands.v1 and the CLI waits for its answer on operator.command-results.v1. The test
plays the rewards service's part only for the reply: it reads the OperatorCommand and writes a
CommandResult (the end-to-end tests run the real service)."""

from __future__ import annotations

import asyncio
import getpass
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    CommandOutcome,
    CommandResult,
    OperatorCommand,
    RewardAction,
)
from referrals.contract.topics import COMMAND_RESULTS, OPERATOR_COMMANDS, TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer, make_producer
from services.rewards.adapters.operator import partition_for

from .helpers import read_topic, run_cli

pytestmark = pytest.mark.broker
CODEC = AvroCodec()


async def next_command(topics: KafkaSettings, within: float = 60.0) -> OperatorCommand:
    """The first OperatorCommand on operator.commands.v1 (read_committed), and its key checked."""
    physical = TopicNames(topics.topic_prefix)(OPERATOR_COMMANDS)
    consumer = make_consumer(topics, client_id="tests-service-stand-in")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = [TopicPartition(physical, p) for p in consumer.partitions_for_topic(physical) or ()]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for msg in (m for ms in batch.values() for m in ms):
                command = CODEC.decode(msg.value, "OperatorCommand")
                assert isinstance(command, OperatorCommand)
                assert msg.key == command.command_id.encode()  # keyed by command_id
                return command
        raise AssertionError("no OperatorCommand was published")
    finally:
        await consumer.stop()


async def reply(
    topics: KafkaSettings, outcome: CommandOutcome, state: str | None, reason: str | None = None
) -> OperatorCommand:
    """Answers the next command as the rewards service would, after another command's answer
    on the same partition (the CLI must wait for its own)."""
    command = await next_command(topics)
    physical = TopicNames(topics.topic_prefix)(COMMAND_RESULTS)
    producer = make_producer(
        topics, client_id="tests-service-stand-in", transactional_id=f"tests-{uuid.uuid4()}"
    )
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(physical))
        partition = partition_for(command.command_id, partitions)
        now = datetime.now(UTC)
        other = CommandResult("cmd-other", command.action, "po-other", CommandOutcome.APPLIED, now)
        mine = CommandResult(
            command.command_id, command.action, command.target_id, outcome, now, reason, state
        )
        async with producer.transaction():
            for result in (other, mine):
                key = result.command_id.encode()
                value = CODEC.encode(result)
                await producer.send(physical, value, key=key, partition=partition)
    finally:
        await producer.stop()
    return command


async def cli_with_reply(
    topics: KafkaSettings,
    args: list[str],
    outcome: CommandOutcome,
    state: str | None,
    reason: str | None = None,
) -> tuple[subprocess.CompletedProcess[str], OperatorCommand]:
    ran, command = await asyncio.gather(
        asyncio.to_thread(run_cli, topics, *args), reply(topics, outcome, state, reason)
    )
    return ran, command


async def test_an_applied_command_exits_0_and_the_audit_log_says_who_what_and_why(
    topics: KafkaSettings,
) -> None:
    args = ["approve", "po-1", "--by", "fin-anna", "--reason", "called the customer"]
    ran, command = await cli_with_reply(
        topics, args, CommandOutcome.APPLIED, "REWARDED (attempt 1)"
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == (
        f"approval of payout po-1 applied: it is now REWARDED (attempt 1); "
        f"command {command.command_id}"
    )
    assert command.command_id.startswith("cmd-") and len(command.command_id) == 36
    assert (command.action, command.target_id, command.by, command.reason) == (
        RewardAction.APPROVE,
        "po-1",
        "fin-anna",
        "called the customer",
    )
    assert abs(datetime.now(UTC) - command.issued_at) < timedelta(minutes=2)


async def test_a_refused_command_exits_1_naming_the_payout_s_state(topics: KafkaSettings) -> None:
    ran, command = await cli_with_reply(
        topics,
        ["deny", "po-2", "--reason", "duplicate account"],
        CommandOutcome.REFUSED,
        "REWARDED (attempt 1)",
        "ALREADY_APPROVED",
    )
    assert ran.returncode == 1, (ran.stdout, ran.stderr)
    assert ran.stderr.strip() == (
        "referrals deny: denial of payout po-2 refused: it is REWARDED (attempt 1) "
        f"(ALREADY_APPROVED); command {command.command_id}"
    )
    assert (command.action, command.by, command.reason) == (
        RewardAction.DENY,
        getpass.getuser(),  # --by defaults to the user running the command
        "duplicate account",
    )


async def test_no_answer_exits_2_and_the_command_stays_in_the_audit_log(
    topics: KafkaSettings,
) -> None:
    started = time.monotonic()
    ran = await asyncio.to_thread(run_cli, topics, "retry", "po-3", "--timeout", "2")
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    assert time.monotonic() - started < 30
    [msg] = await read_topic(topics, OPERATOR_COMMANDS, expect=1)
    command = CODEC.decode(msg.value, "OperatorCommand")
    assert isinstance(command, OperatorCommand)
    assert (command.action, command.target_id, command.reason) == (RewardAction.RETRY, "po-3", None)
    assert ran.stderr.startswith(
        f"referrals retry: no answer to command {command.command_id} within 2 s; the rewards "
        "service may not be running."
    )
    assert "will be applied when the rewards service reads it" in ran.stderr
