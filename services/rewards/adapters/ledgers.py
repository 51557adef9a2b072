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
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime

from referrals.contract.records import (
    AdvocateProfile,
    CommandOutcome,
    CommandResult,
    PayoutCommand,
    PayoutKind,
    PayoutOwner,
    PayoutResult,
    Recipient,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
    RewardCommand,
)
from referrals.contract.topics import (
    COMMAND_RESULTS,
    PAYOUTS,
    PAYOUTS_V2,
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
from services.rewards.adapters.holds import HoldIndex
from services.rewards.adapters.metrics import RewardsMetrics, Trigger
from services.rewards.adapters.program_rules import RulesCache
from services.rewards.domain import decide
from services.rewards.domain.evaluate import has_reward
from services.rewards.domain.ledger import Entry, Ledger, to_ms
from services.rewards.domain.outputs import COMMAND_APPLIED, Decision
from services.rewards.domain.outputs import Output as CoreOutput
from services.rewards.domain.rules import Lifecycle

log = logging.getLogger(__name__)
Command = Callable[[Ledger], Decision]
_TRIGGERS = {
    RewardAction.APPROVE: Trigger.APPROVE,
    RewardAction.DENY: Trigger.DENY,
    RewardAction.RETRY: Trigger.RETRY,
}


def to_outbound(advocate_id: str, outputs: tuple[CoreOutput, ...]) -> list[Outbound]:
    """Statuses to referral.status.v1; an advocate's payout to rewards.payouts.v1 and .v2 (the
    same transaction), a friend's reward or a clawback to .v2 only; keyed by advocate."""
    out: list[Outbound] = []
    for record in outputs:
        if not isinstance(record, PayoutCommand):
            out.append(Outbound(STATUS, advocate_id, record))
            continue
        if record.kind is PayoutKind.PAYOUT and record.recipient is Recipient.ADVOCATE:
            out.append(Outbound(PAYOUTS, advocate_id, record))
        out.append(Outbound(PAYOUTS_V2, advocate_id, record))
    return out


def new_owners(before: Ledger, after: Ledger, now: datetime) -> list[Outbound]:
    """A PayoutOwner for each payout decided by this change (an entry new to the ledger with a
    reward to pay, approve, deny or retry: its advocate's and its friend's), so payout-keyed
    records can find the ledger."""
    known = {entry.referral_id for entry in before.entries}
    return [
        Outbound(
            REWARDS_BY_PAYOUT,
            payout_id,
            PayoutOwner(payout_id, after.advocate_id, after.program_id, entry.referral_id, now),
        )
        for entry in after.entries
        if entry.referral_id not in known and has_reward(entry)
        for payout_id in (entry.payout_id, *((entry.friend.payout_id,) if entry.friend else ()))
    ]


def command_result(command: RewardCommand, decision: Decision, now: datetime) -> Outbound:
    """The operator's answer on operator.command-results.v1, keyed by command_id."""
    applied = decision.outcome in COMMAND_APPLIED
    return Outbound(
        COMMAND_RESULTS,
        command.command_id,
        CommandResult(
            command_id=command.command_id,
            action=command.action,
            target_id=command.payout_id,
            outcome=CommandOutcome.APPLIED if applied else CommandOutcome.REFUSED,
            occurred_at=now,
            reason=None if applied else decision.outcome.value,
            state=decision.state or None,
        ),
    )


def _moves_due(before: Iterable[Entry], after: Iterable[Entry]) -> bool:
    """Whether saving `after` over `before` may move the advocate's earliest due time: only an
    entry that had or has one can. Otherwise the timer already holds it (every change that
    moved it set it, in the same transaction: the store and the index agree after an abort
    too), and the archive scan `_due_ms` needs is skipped: a WON paid at once, a result or a
    command of a payout that was not pending, which is most of the inputs."""
    return any(e.due_ms is not None for e in before) or any(e.due_ms is not None for e in after)


class DecodedLedgers:
    """The last ledgers one task decoded or stored, by key, each with its stored bytes.

    Only a cache of the codec: a ledger is taken from it when the store holds the very bytes
    it was decoded from (or encoded to), so it is always exactly what decoding those bytes
    would give, whatever the store did meanwhile (an undone record, an aborted transaction, a
    restore). Ledgers are immutable. An advocate with many wins has the largest ledger (up to
    a few hundred tallies) and the most inputs: keeping it decoded saves most of the decoding.
    Bounded by the bytes it holds (least recently used first out), not by advocates: each
    ledger counts its stored bytes and `OVERHEAD` more (a decoded one takes several times its
    bytes in memory; 256 KiB is about 450 advocates of one win, or a dozen of 365 days' wins,
    1-2 MB of heap per task)."""

    OVERHEAD = 512

    def __init__(self, budget_bytes: int = 256 * 1024) -> None:
        self.budget = budget_bytes
        self.size = 0
        self._items: OrderedDict[bytes, tuple[bytes, Ledger]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: bytes, raw: bytes) -> Ledger | None:
        held = self._items.get(key)
        if held is None:
            return None
        if held[0] is not raw and held[0] != raw:
            self.size -= len(held[0]) + self.OVERHEAD
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return held[1]

    def put(self, key: bytes, raw: bytes, ledger: Ledger) -> None:
        held = self._items.pop(key, None)
        if held is not None:
            self.size -= len(held[0]) + self.OVERHEAD
        cost = len(raw) + self.OVERHEAD
        if cost > self.budget:
            return
        self._items[key] = (raw, ledger)
        self.size += cost
        while self.size > self.budget:
            _, (old, _) = self._items.popitem(last=False)
            self.size -= len(old) + self.OVERHEAD


class LedgerBook:
    def __init__(
        self,
        ledgers: Callable[[int], KeyValue],
        timers: Mapping[int, TimerIndex],  # task -> its timers (one per advocate)
        metrics: RewardsMetrics,
        rules: RulesCache,
        archive: Callable[[int], EntryArchive],
        holds: Callable[[int], HoldIndex],
    ) -> None:
        self.ledgers = ledgers
        self.archive = archive
        self.holds = holds
        self.timers = timers
        self.metrics = metrics
        self.rules = rules
        self.decoded: dict[int, DecodedLedgers] = {}

    def load(
        self, task: int, advocate_id: str, program_id: str, revive: Iterable[Entry] = ()
    ) -> Ledger:
        """The stored ledger with the archived entries `revive` back in its working set."""
        key = advocate_id.encode()
        raw = self.ledgers(task).get(key)
        if raw is None:
            return decide.new_ledger(program_id, advocate_id).revive(revive)
        decoded = self.decoded.setdefault(task, DecodedLedgers())
        ledger = decoded.get(key, raw)
        if ledger is None:
            ledger = LEDGERS.decode(raw, key)
            decoded.put(key, raw, ledger)
        return ledger.revive(revive)

    def forget(self, task: int) -> None:
        """The task is no longer ours: drop its decoded ledgers."""
        self.decoded.pop(task, None)

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
            level = logging.WARNING if trigger in _TRIGGERS.values() else logging.DEBUG
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
        archive = self.archive(task)
        archive.save(advocate_id, before.entries, entries, after.program_id)
        ended = self.holds(task).update(advocate_id, before.entries, entries, to_ms(now))
        if ended:
            self.metrics.holds_ended(task, ended)
        if stored.days:
            archive.save_days(advocate_id, stored.days)
            stored = replace(stored, days=())
        key, raw = advocate_id.encode(), LEDGERS.encode(stored)
        self.ledgers(task).put(key, raw)
        self.decoded.setdefault(task, DecodedLedgers()).put(key, raw, stored)
        if _moves_due(before.entries, entries):
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
            day = rules.local_day(status.occurred_at)
            if not ledger.wins_on(day):  # the day's count from the archive (fraud velocity)
                wins = self.archive(task).day_wins(status.advocate_id, day)
                ledger = replace(ledger, days=((day, wins),) if wins else ())
            return self.apply(
                task, ledger, lambda book: decide.on_won(book, rules, status, now), Trigger.WON, now
            )
        clawback = rules.clawback
        return self.apply(
            task,
            ledger,
            lambda book: decide.on_reversed(book, status, now, clawback_on=clawback),
            Trigger.REVERSED,
            now,
        )

    def profile(self, task: int, profile: AdvocateProfile, now: datetime) -> list[Output]:
        held = self.archive(task).tax_held(profile.advocate_id) if profile.tax_form_on_file else []
        ledger = self.load(task, profile.advocate_id, profile.program_id, held)
        return self.apply(
            task, ledger, lambda book: decide.on_profile(book, profile, now), Trigger.PROFILE, now
        )

    def resume(self, task: int, program_id: str, now: datetime, limit: int) -> list[Output]:
        """Releases the PROGRAM_PAUSED holds of up to `limit` advocates of a program that is no
        longer paused (the processor calls this on each punctuation until none is left)."""
        rules = self.rules.get(program_id)
        if rules is None or rules.lifecycle is Lifecycle.PAUSED:
            return []
        archive = self.archive(task)
        advocates = archive.paused_advocates(program_id, limit)
        if not advocates:
            archive.resumed(program_id, None)
            return []
        out: list[Output] = []
        for advocate_id in advocates:
            ledger = self.load(task, advocate_id, program_id, archive.paused_held(advocate_id))
            out += self.apply(
                task,
                ledger,
                lambda book: decide.on_resume(book, rules, now),
                Trigger.RESUME,
                now,
            )
            archive.resumed(program_id, advocate_id)
        return out

    def forwarded(self, record: Inbound, now: datetime) -> list[Output]:
        """A payout result or operator command routed here by the payout side."""
        value = record.value
        if isinstance(value, RewardCommand):
            check_key(spec_for(REWARDS_BY_ADVOCATE), record.key, value)
        elif not isinstance(value, PayoutResult):
            raise PermanentError(
                f"{type(value).__name__} is not routed by advocate", reason="WRONG_RECORD_TYPE"
            )
        advocate_id = record.key or ""
        archived = self.archive(record.partition).by_payout(advocate_id, value.payout_id)
        ledger = self.load(record.partition, advocate_id, "", archived)
        if isinstance(value, RewardCommand):
            return self._operator(record.partition, ledger, value, now)
        decided: list[Decision] = []

        def run(book: Ledger) -> Decision:
            decided.append(decide.on_payout_result(book, value, now))
            return decided[0]

        outputs = self.apply(record.partition, ledger, run, Trigger.RESULT, now)
        self.metrics.result(record.partition, value, decided[0])
        if decide.settles(ledger, value):
            # The payout is settled for good: its owner entry may go after the grace period
            # (`routing`). Repeated for a repeated PAID, which also catches up payouts paid
            # before owners were pruned.
            outputs.append(Outbound(REWARDS_BY_PAYOUT, value.payout_id, value))
        return outputs

    def _operator(
        self, task: int, ledger: Ledger, command: RewardCommand, now: datetime
    ) -> list[Output]:
        """An operator's command: the ledger's decision, and its answer for the operator."""
        decided: list[Decision] = []

        def run(book: Ledger) -> Decision:
            rules = self.rules.get(book.program_id) if book.program_id else None
            decision = decide.on_command(book, rules, command, now)
            decided.append(decision)
            return decision

        outputs = self.apply(task, ledger, run, _TRIGGERS[command.action], now)
        return [*outputs, command_result(command, decided[0], now)]

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
