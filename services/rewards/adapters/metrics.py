"""The rewards service's own metrics, counted only for work whose transaction committed.

A task's transaction can abort and its records be processed again; counting while processing
would count them twice. So observations are staged per task while processing as after-commit
effects (`referrals.streams.effects`: run once the task's transaction commits, dropped if it
aborts): counters match what consumers can see.
Labels are bounded sets (currencies, reward types, reason and outcome codes), never ids.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from referrals.contract.records import PayoutCommand, PayoutKind, Recipient, ReferralStatus
from referrals.platform.metrics import LATENCY_BUCKETS
from services.rewards.domain.ledger import Ledger
from services.rewards.domain.outputs import Decision, Outcome

# Payouts released by an operator or a profile update wait for people: hours to weeks.
PAYOUT_LATENCY_BUCKETS = (*LATENCY_BUCKETS, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0)

Clock = Callable[[], float]  # epoch seconds
Stage = Callable[[int, Callable[[], None]], None]  # (task, observe): `Processor.after_commit`


class Trigger(StrEnum):
    """What made the ledger change (a bounded label)."""

    WON = "won"
    REVERSED = "reversed"
    PROFILE = "profile"
    RESULT = "result"
    APPROVE = "approve"
    DENY = "deny"
    RETRY = "retry"
    TIMER = "timer"
    RESUME = "resume"  # the program is active again


_COMMANDS = {Trigger.APPROVE: "APPROVE", Trigger.DENY: "DENY", Trigger.RETRY: "RETRY"}


class RewardsMetrics:
    def __init__(self, registry: CollectorRegistry, clock: Clock, stage: Stage) -> None:
        self.clock = clock
        self.stage = stage  # runs an observation once the task's transaction committed
        r = registry
        self.issued = Counter(
            "rewards_payouts_issued",
            "Payout commands committed to rewards.payouts.v1 (every attempt)",
            ["currency", "reward_type"],
            registry=r,
        )
        self.issued_amount = Counter(
            "rewards_payouts_issued_amount_minor",
            "Sum of committed payout commands, in minor units of the currency",
            ["currency", "reward_type"],
            registry=r,
        )
        self.v2_issued = Counter(
            "rewards_v2_commands_issued",
            "Friend rewards and clawbacks committed to rewards.payouts.v2 (advocate payouts "
            "are rewards_payouts_issued)",
            ["kind", "recipient", "currency"],
            registry=r,
        )
        self.v2_amount = Counter(
            "rewards_v2_commands_issued_amount_minor",
            "Sum of the friend rewards and clawbacks committed, in minor units",
            ["kind", "recipient", "currency"],
            registry=r,
        )
        self.held = Counter(
            "rewards_held", "Rewards put on hold (REWARD_HELD), by reason", ["reason"], registry=r
        )
        self.failures = Counter(
            "rewards_payout_failures", "FAILED payout results applied (PAYOUT_FAILED)", registry=r
        )
        self.commands = Counter(
            "rewards_commands_applied", "Operator commands applied", ["action"], registry=r
        )
        self.refused = Counter(
            "rewards_commands_refused",
            "Operator commands refused by the ledger",
            ["action", "reason"],
            registry=r,
        )
        self.results_ignored = Counter(
            "rewards_results_ignored",
            "Payout results that changed nothing, by outcome",
            ["outcome"],
            registry=r,
        )
        self.statuses_ignored = Counter(
            "rewards_statuses_ignored",
            "WON / REVERSED statuses that changed nothing (duplicates...), by outcome",
            ["outcome"],
            registry=r,
        )
        self.parked = Counter(
            "rewards_inputs_parked",
            "Inputs set aside to wait: kind=program (config not arrived), payout (owner unknown)",
            ["kind"],
            registry=r,
        )
        self.waiting = Gauge(
            "rewards_inputs_waiting", "Inputs waiting now, by kind", ["kind"], registry=r
        )
        self.pending = Gauge(
            "rewards_pending_releases",
            "Advocates with a REWARD_PENDING reward waiting for its due time",
            registry=r,
        )
        self.latency = Histogram(
            "rewards_payout_latency_seconds",
            "From the moment a payout was due (WON occurred_at + hold_days) to its commit",
            ["trigger"],
            buckets=PAYOUT_LATENCY_BUCKETS,
            registry=r,
        )

    # -- staging --------------------------------------------------------------------------------
    def decision(self, task: int, trigger: Trigger, decision: Decision) -> None:
        """Stages what a decision means for the metrics (applied if its transaction commits)."""
        if not decision.changed:
            self.stage(task, lambda: self._ignored(trigger, decision.outcome))
            return
        if trigger in _COMMANDS:
            self.stage(task, self.commands.labels(_COMMANDS[trigger]).inc)
        for out in decision.outputs:
            if isinstance(out, PayoutCommand) and (
                out.kind is PayoutKind.CLAWBACK or out.recipient is Recipient.FRIEND
            ):
                self.stage(task, functools.partial(self._moved, out))
            elif isinstance(out, PayoutCommand):
                self._stage_payout(task, trigger, out, decision.ledger)
            elif out.status is ReferralStatus.REWARD_HELD:
                self.stage(task, self.held.labels(out.reason or "UNSPECIFIED").inc)
            elif out.status is ReferralStatus.PAYOUT_FAILED:
                self.stage(task, self.failures.inc)

    def _stage_payout(
        self, task: int, trigger: Trigger, payout: PayoutCommand, ledger: Ledger
    ) -> None:
        entry = ledger.find_payout(payout.payout_id)
        due_s = (entry.due_at if entry is not None else 0) / 1000

        def observe() -> None:
            labels = (payout.currency, payout.reward_type.value)
            self.issued.labels(*labels).inc()
            self.issued_amount.labels(*labels).inc(payout.amount_minor)
            if due_s:
                self.latency.labels(trigger.value).observe(max(0.0, self.clock() - due_s))

        self.stage(task, observe)

    def _moved(self, command: PayoutCommand) -> None:
        labels = (command.kind.value, command.recipient.value, command.currency)
        self.v2_issued.labels(*labels).inc()
        self.v2_amount.labels(*labels).inc(command.amount_minor)

    def _ignored(self, trigger: Trigger, outcome: Outcome) -> None:
        if trigger in _COMMANDS:
            self.refused.labels(_COMMANDS[trigger], outcome.value).inc()
        elif trigger is Trigger.RESULT:
            self.results_ignored.labels(outcome.value).inc()
        else:
            self.statuses_ignored.labels(outcome.value).inc()
