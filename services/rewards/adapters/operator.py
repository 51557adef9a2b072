"""`referrals approve|deny|retry PAYOUT_ID`: the Kafka side of the operator's commands.

approve / deny / retry (`request`): the rewards service is the authority, so the command goes
to it and the answer comes back:
1. note the end (read_committed) of the `operator.command-results.v1` partition the new
   command_id hashes to, before anything is published, so the answer cannot be missed;
2. publish one `OperatorCommand` keyed by command_id on `operator.commands.v1` (the audit log
   of every operator action), in its own transaction;
3. read that partition from the noted offset until the `CommandResult` with this command_id
   arrives, or the timeout passes (`NoAnswer`; the command stays in the log and is applied
   when the service reads it).
It re-exports the topic reading that `payout_reports` (reconcile, tax-report) and the fault
suite share (`referrals.streams.reading`): `read_records` reads a topic whole, read_committed.

Each function takes typed values and returns a result or raises a `ReferralsError`; it prints
nothing, so the CLI and a future API call the same functions and each words the answer its way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    CommandOutcome,
    CommandResult,
    OperatorCommand,
    Record,
    RewardAction,
)
from referrals.contract.topics import COMMAND_RESULTS, OPERATOR_COMMANDS, TopicNames
from referrals.platform.errors import DecodeError, ReferralsError
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import (
    absent_topic,
    make_consumer,
    make_producer,
    stop_quietly,
    transactional_id,
)
from referrals.streams.reading import READ_LIMIT_S as READ_LIMIT_S
from referrals.streams.reading import TopicReadError as TopicReadError
from referrals.streams.reading import partition_for as partition_for
from referrals.streams.reading import read_records as read_records

DEFAULT_TIMEOUT_S = 30.0  # the contract's default wait for a command's answer


def decoded(messages: list[Any], codec: AvroCodec) -> tuple[list[Record], int]:
    """The records that decode, and how many did not (bad input sits in topics too)."""
    out: list[Record] = []
    for msg in messages:
        try:
            out.append(codec.decode(msg.value or b""))
        except DecodeError:
            continue
    return out, len(messages) - len(out)


# -- approve / deny / retry ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Answer:
    """The rewards service's answer to an operator's command."""

    command: OperatorCommand
    result: CommandResult


class NoAnswer(ReferralsError):
    """No answer within the timeout: the command is published (the audit log keeps it) and the
    rewards service applies it when it reads it; it may not be running."""

    reason = "NO_ANSWER"

    def __init__(self, command: OperatorCommand, timeout_s: float) -> None:
        super().__init__(
            f"no answer to command {command.command_id} within {timeout_s:g} s; the rewards "
            "service may not be running"
        )
        self.command = command
        self.timeout_s = timeout_s


def new_command(
    action: RewardAction,
    target_id: str,
    by: str,
    reason: str | None = None,
    *,
    principal: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    new_id: Callable[[], str] = lambda: "cmd-" + uuid.uuid4().hex,
) -> OperatorCommand:
    """A fresh command: each invocation is its own entry in the audit log. `by` is who the
    operator says they are; `principal` who the publisher authenticated as (`kafka_principal`,
    or the API's token), recorded beside it."""
    return OperatorCommand(new_id(), action, target_id, by, now(), reason, principal)


def kafka_principal(settings: KafkaSettings) -> str | None:
    """`kafka:<user>` when `settings` authenticate to Kafka as a SASL user: the identity the
    broker checked (it refuses a wrong password), recorded beside what `--by` says."""
    user = settings.sasl_user
    return f"kafka:{user}" if user else None


VERBS = {RewardAction.APPROVE: "approval", RewardAction.DENY: "denial", RewardAction.RETRY: "retry"}


def answer_text(answer: Answer) -> str:
    """What the operator is told (by the CLI and the API): what was asked, the outcome, and
    the payout's state."""
    result = answer.result
    verb = VERBS[answer.command.action]
    said = f"{verb} of payout {answer.command.target_id} {result.outcome.value.lower()}"
    if result.outcome is CommandOutcome.REFUSED:
        why = f" ({result.reason})" if result.reason else ""
        said += f": it is {result.state}{why}" if result.state else why
    elif result.state:
        said += f": it is now {result.state}"
    return f"{said}; command {answer.command.command_id}"


async def request(
    settings: KafkaSettings, command: OperatorCommand, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Answer:
    """Publishes `command` and waits up to `timeout_s` for its result (else `NoAnswer`)."""
    consumer = make_consumer(settings, client_id="referrals-cli-answers")
    await consumer.start()
    try:
        # Where the answer will be, noted before the command exists: nothing can slip past.
        tp = await _partition_of(consumer, COMMAND_RESULTS, command.command_id, settings)
        consumer.assign([tp])
        start = (await consumer.end_offsets([tp]))[tp]  # read_committed: the last stable offset
        consumer.seek(tp, start)
        await publish_command(settings, command)
        result = await _await_result(consumer, command.command_id, timeout_s)
    finally:
        await stop_quietly(consumer)
    if result is None:
        raise NoAnswer(command, timeout_s)
    return Answer(command, result)


async def _partition_of(
    consumer: AIOKafkaConsumer, topic: str, key: str, settings: KafkaSettings
) -> TopicPartition:
    physical = TopicNames(settings.topic_prefix)(topic)
    await consumer._client.force_metadata_update()
    found = sorted(consumer.partitions_for_topic(physical) or ())
    if not found:
        raise TopicReadError(await absent_topic(consumer._client, physical))
    return TopicPartition(physical, partition_for(key, found))


async def _await_result(
    consumer: AIOKafkaConsumer, command_id: str, timeout_s: float
) -> CommandResult | None:
    """The CommandResult for `command_id` (other commands' answers share the partition)."""
    codec = AvroCodec()
    wanted = command_id.encode("utf-8")
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        batch = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000) + 1)
        for msg in (m for ms in batch.values() for m in ms if m.key == wanted):
            try:
                record = codec.decode(msg.value or b"", "CommandResult")
            except DecodeError:
                continue
            if isinstance(record, CommandResult) and record.command_id == command_id:
                return record
    return None


async def publish_command(settings: KafkaSettings, command: OperatorCommand) -> None:
    """One command keyed by command_id, in its own transaction: read_committed sees it once."""
    producer = make_producer(
        settings,
        client_id="referrals-cli",
        transactional_id=transactional_id(settings, "referrals-cli"),
    )
    await producer.start()
    try:
        async with producer.transaction():
            topic = TopicNames(settings.topic_prefix)(OPERATOR_COMMANDS)
            value = AvroCodec().encode(command)
            await producer.send(topic, value, key=command.command_id.encode())
    finally:
        await producer.stop()
