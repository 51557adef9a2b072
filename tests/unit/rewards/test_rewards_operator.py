"""Operator commands without a broker: a fresh audit-log entry each time, the partition its
answer lands on, and how the CLI words the rewards service's answer."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.partitioner import murmur2

from referrals.contract.records import CommandOutcome, CommandResult, RewardAction
from referrals.tools.cli_payouts import no_answer_text
from services.rewards.adapters.operator import (
    Answer,
    NoAnswer,
    answer_text,
    new_command,
    partition_for,
)

T = datetime(2026, 3, 2, tzinfo=UTC)


def test_commands_find_the_partition_the_service_s_producer_used() -> None:
    # aiokafka's default partitioner is Kafka's murmur2: the same key, the same partition number.
    for key in ("po-1", "adv-42", "é", "cmd-" + "f" * 32):
        expected = (murmur2(key.encode()) & 0x7FFFFFFF) % 6
        assert partition_for(key, [5, 3, 1, 0, 2, 4]) == expected


def test_each_command_is_a_new_entry_in_the_audit_log() -> None:
    one = new_command(RewardAction.DENY, "po-1", "fin", "duplicate account")
    two = new_command(RewardAction.DENY, "po-1", "fin", "duplicate account")
    assert one.command_id != two.command_id
    assert one.command_id.startswith("cmd-") and len(one.command_id) == 4 + 32
    assert (one.action, one.target_id, one.by, one.reason) == (
        RewardAction.DENY,
        "po-1",
        "fin",
        "duplicate account",
    )
    fixed = new_command(RewardAction.APPROVE, "po-2", "ops", now=lambda: T, new_id=lambda: "cmd-1")
    assert (fixed.command_id, fixed.issued_at, fixed.reason) == ("cmd-1", T, None)


def _answer(
    outcome: CommandOutcome,
    state: str | None,
    reason: str | None = None,
    action: RewardAction = RewardAction.APPROVE,
) -> Answer:
    command = new_command(action, "po-1", "fin", new_id=lambda: "cmd-9")
    return Answer(command, CommandResult("cmd-9", action, "po-1", outcome, T, reason, state))


def test_the_answer_names_the_payout_s_state() -> None:
    applied = _answer(CommandOutcome.APPLIED, "REWARDED (attempt 1)")
    assert answer_text(applied) == (
        "approval of payout po-1 applied: it is now REWARDED (attempt 1); command cmd-9"
    )
    refused = _answer(
        CommandOutcome.REFUSED, "REWARD_HELD (FRAUD_REVIEW)", "NOT_FAILED", RewardAction.RETRY
    )
    assert answer_text(refused) == (
        "retry of payout po-1 refused: it is REWARD_HELD (FRAUD_REVIEW) (NOT_FAILED); command cmd-9"
    )
    unknown = _answer(CommandOutcome.REFUSED, None, "UNKNOWN_PAYOUT", RewardAction.DENY)
    assert answer_text(unknown) == "denial of payout po-1 refused (UNKNOWN_PAYOUT); command cmd-9"


def test_no_answer_says_the_service_may_be_down_and_the_command_waits_in_the_log() -> None:
    late = NoAnswer(new_command(RewardAction.APPROVE, "po-1", "fin", new_id=lambda: "cmd-9"), 2.5)
    text = no_answer_text(late)
    assert text.startswith("no answer to command cmd-9 within 2.5 s")
    assert "the rewards service may not be running" in text
    assert "stays in operator.commands.v1" in text and "will be applied" in text
    assert late.reason == "NO_ANSWER"
