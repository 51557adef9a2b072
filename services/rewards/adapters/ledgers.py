"""Ledger side of a task: one advocate's ledger in, a core decision, records and state out.

A PAID that settles a payout for good (`decide.settles`) is also sent back, keyed by payout,
on `rewards.by-payout.v1`, so the payout's owner entry can be pruned later (`routing`).

Every input about an advocate (WON / REVERSED statuses, profiles, forwarded payout results and
operator commands, due timers) goes the same way: load the ledger (its tallies) from keyspace
`ledgers`, bring back from the archive (`archive`) the entries the input names (by referral,
by payout, the due PENDING ones, the TAX_INFO_REQUIRED ones), call the pure core, and when the
decision changed the ledger archive every entry again, persist the ledger and the changed
entries, move the advocate's timer, and return the records to produce, all in the task's one
transaction. So the stored ledger stays a few KiB however many wins an advocate has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from referrals.contract.records import (
    AdvocateProfile,
    PayoutCommand,
    PayoutOwner,
    PayoutResult,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
    RewardCommand,
)
from referrals.contract.topics import (
    PAYOUTS,
    REWARDS_BY_ADVOCATE,
    REWARDS_BY_PAYOUT,
    STATUS,
    spec_for,
)
from referrals.platform.errors import PermanentError, UnknownProgram
from referrals.streams.processor import Inbound, Outbound, Output
from referrals.streams.state import KeyValue
from referrals.streams.timers import TimerIndex
from referrals.streams.topics import check_key
from services.rewards.adapters.archive import EntryArchive
from services.rewards.adapters.codec import LEDGERS
from services.rewards.adapters.metrics import RewardsMetrics, Trigger
from services.rewards.adapters.program_rules import RulesCache
from services.rewards.domain import decide
from services.rewards.domain.ledger import Entry, Ledger, State, to_ms
from services.rewards.domain.outputs import Decision, Outcome
from services.rewards.domain.outputs import Output as CoreOutput

log = logging.getLogger(__name__)
Command = Callable[[Ledger], Decision]


def to_outbound(advocate_id: str, outputs: tuple[CoreOutput, ...]) -> list[Outbound]:
    """Statuses to referral.status.v1, payouts to rewards.payouts.v1, keyed by advocate."""
    return [
        Outbound(PAYOUTS if isinstance(out, PayoutCommand) else STATUS, advocate_id, out)
        for out in outputs
    ]


def new_owners(before: Ledger, after: Ledger, now: datetime) -> list[Outbound]:
    """A PayoutOwner for each reward decided by this change (an entry new to the ledger that
    can be paid, approved or retried), so payout-keyed records can find the ledger."""
    known = {entry.referral_id for entry in before.entries}
    return [
        Outbound(
            REWARDS_BY_PAYOUT,
            entry.payout_id,
            PayoutOwner(
                entry.payout_id, after.advocate_id, after.program_id, entry.referral_id, now
            ),
        )
        for entry in after.entries
        if entry.referral_id not in known and entry.state is not State.UNREWARDED
    ]


class LedgerBook:
    def __init__(
        self,
        ledgers: Callable[[int], KeyValue],
        timers: Mapping[int, TimerIndex],  # task -> its timers (one per advocate)
        metrics: RewardsMetrics,
        rules: RulesCache,
        archive: Callable[[int], EntryArchive],
    ) -> None:
        self.ledgers = ledgers
        self.archive = archive
        self.timers = timers
        self.metrics = metrics
        self.rules = rules

    def load(
        self, task: int, advocate_id: str, program_id: str, revive: Iterable[Entry] = ()
    ) -> Ledger:
        """The stored ledger with the archived entries `revive` back in its working set."""
        key = advocate_id.encode()
        raw = self.ledgers(task).get(key)
        ledger = (
            decide.new_ledger(program_id, advocate_id) if raw is None else LEDGERS.decode(raw, key)
        )
        return ledger.revive(revive)

    def _due_ms(self, task: int, ledger: Ledger) -> int | None:
        """The advocate's earliest PENDING due time, archived or (written before the archive
        existed) still in the stored ledger."""
        due = [d for d in (self.archive(task).next_due(ledger.advocate_id),) if d is not None]
        if (live := ledger.next_due()) is not None:
            due.append(to_ms(live))
        return min(due, default=None)

    def apply(
        self,
        task: int,
        before: Ledger,
        command: Command,
        trigger: Trigger,
        now: datetime,
    ) -> list[Output]:
        """Runs one core command on `before`; persists and returns what it decided."""
        decision = command(before)
        self.metrics.decision(task, trigger, decision)
        if not decision.changed:
            # An operator wants to know why a command did nothing; duplicates are routine.
            level = (
                logging.WARNING if trigger in (Trigger.APPROVE, Trigger.RETRY) else logging.DEBUG
            )
            log.log(
                level,
                "input refused or ignored: %s",
                decision.message,
                extra={"outcome": decision.outcome.value, "trigger": trigger.value},
            )
        after = decision.ledger
        if not decision.changed or after == before:
            return []
        advocate_id = after.advocate_id
        stored, entries = after.archive()
        self.archive(task).save(advocate_id, before.entries, entries)
        self.ledgers(task).put(advocate_id.encode(), LEDGERS.encode(stored))
        self.timers[task].set(advocate_id, self._due_ms(task, stored))
        return [*to_outbound(advocate_id, decision.outputs), *new_owners(before, after, now)]

    def status(self, task: int, status: ReferralStatusChanged, now: datetime) -> list[Output]:
        """A WON or REVERSED of a program whose rules are known."""
        rules = self.rules.get(status.program_id)
        if rules is None:
            raise UnknownProgram(f"program {status.program_id!r} is not known")
        archived = self.archive(task).by_referral(status.advocate_id, status.referral_id)
        ledger = self.load(task, status.advocate_id, status.program_id, archived)
        if ledger.program_id != status.program_id:
            raise PermanentError(
                f"advocate {status.advocate_id} belongs to program {ledger.program_id}, "
                f"not {status.program_id}",
                reason="PROGRAM_MISMATCH",
            )
        if status.status is ReferralStatus.WON:
            return self.apply(
                task, ledger, lambda book: decide.on_won(book, rules, status, now), Trigger.WON, now
            )
        return self.apply(
            task, ledger, lambda book: decide.on_reversed(book, status, now), Trigger.REVERSED, now
        )

    def profile(self, task: int, profile: AdvocateProfile, now: datetime) -> list[Output]:
        held = self.archive(task).tax_held(profile.advocate_id) if profile.tax_form_on_file else []
        ledger = self.load(task, profile.advocate_id, profile.program_id, held)
        return self.apply(
            task, ledger, lambda book: decide.on_profile(book, profile, now), Trigger.PROFILE, now
        )

    def forwarded(self, record: Inbound, now: datetime) -> list[Output]:
        """A payout result or operator command routed here by the payout side."""
        value = record.value
        if isinstance(value, RewardCommand):
            check_key(spec_for(REWARDS_BY_ADVOCATE), record.key, value)
        elif not isinstance(value, PayoutResult):
            raise PermanentError(
                f"{type(value).__name__} is not routed by advocate", reason="WRONG_RECORD_TYPE"
            )
        command, trigger = self._command(value, now)
        advocate_id = record.key or ""
        archived = self.archive(record.partition).by_payout(advocate_id, value.payout_id)
        ledger = self.load(record.partition, advocate_id, "", archived)
        outputs = self.apply(record.partition, ledger, command, trigger, now)
        if isinstance(value, PayoutResult) and decide.settles(ledger, value):
            # The payout is settled for good: its owner entry may go after the grace period
            # (`routing`). Repeated for a repeated PAID, which also catches up payouts paid
            # before owners were pruned.
            outputs.append(Outbound(REWARDS_BY_PAYOUT, value.payout_id, value))
        return outputs

    def _command(
        self, value: PayoutResult | RewardCommand, now: datetime
    ) -> tuple[Command, Trigger]:
        if isinstance(value, PayoutResult):
            return (lambda book: decide.on_payout_result(book, value, now)), Trigger.RESULT
        if value.action is RewardAction.RETRY:
            return (lambda book: decide.on_retry(book, value.payout_id, now)), Trigger.RETRY
        return (lambda book: self._approve(book, value.payout_id, now)), Trigger.APPROVE

    def _approve(self, ledger: Ledger, payout_id: str, now: datetime) -> Decision:
        if ledger.find_payout(payout_id) is None:
            return Decision(
                ledger, (), Outcome.UNKNOWN_PAYOUT, f"no reward with payout {payout_id}"
            )
        rules = self.rules.get(ledger.program_id)
        if rules is None:
            raise UnknownProgram(f"program {ledger.program_id!r} is not known")
        return decide.on_approve(ledger, rules, payout_id, now)

    def tick(self, task: int, advocate_id: str, now: datetime) -> list[Output]:
        """The advocate's timer fired (and is gone): release what is due and re-arm for the
        next one."""
        due = self.archive(task).due(advocate_id, to_ms(now))
        ledger = self.load(task, advocate_id, "", due)
        outputs = self.apply(
            task, ledger, lambda book: decide.on_tick(book, now), Trigger.TIMER, now
        )
        if not outputs:  # nothing was released (a stale timer): keep the index true anyway
            stored = self.load(task, advocate_id, "")
            self.timers[task].set(advocate_id, self._due_ms(task, stored))
        return outputs
