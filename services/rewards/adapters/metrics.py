"""The rewards service's own metrics, counted only for work whose transaction committed.

A task's transaction can abort and its records be processed again; counting while processing
would count them twice. So observations are staged per task while processing as after-commit
effects (`referrals.streams.effects`: run once the task's transaction commits, dropped if it
aborts): counters match what consumers can see.
Labels are bounded sets (currencies, reward types, reason and outcome codes), never ids.

Money by currency, for finance's dashboard: issued (`rewards_payouts_issued_amount_minor` for
advocates' payouts, `rewards_v2_commands_issued_amount_minor` for friends' rewards and
clawbacks), paid and failed as finance reports them (`rewards_payouts_paid_*`,
`rewards_payouts_failed_*`, by recipient), on hold now (`rewards_on_hold*`, read from the
task stores at each scrape by `HeldCollector`; `holds`). Labelled children on the per-record
path are looked up once (`Children`).
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from referrals.contract.records import (
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
    ReferralStatus,
)
from referrals.platform.metrics import LATENCY_BUCKETS, Children
from services.rewards.adapters.holds import Hold, Total
from services.rewards.domain.ledger import Ledger
from services.rewards.domain.outputs import Decision, Outcome

log = logging.getLogger(__name__)

# Payouts released by an operator or a profile update wait for people: hours to weeks.
PAYOUT_LATENCY_BUCKETS = (*LATENCY_BUCKETS, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0)
# Holds last from seconds (a paused program resumed) to weeks (a tax form awaited).
HOLD_BUCKETS = (60.0, 600.0, 3600.0, 6 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0, 30 * 86400.0)

Clock = Callable[[], float]  # epoch seconds
# One task's holds now: its totals, and when its oldest hold of a reason began (epoch ms).
TaskHolds = tuple[list[Total], Callable[[str], int | None]]
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
        self.paid = Counter(
            "rewards_payouts_paid",
            "PAID results applied (each payout once), by currency and recipient",
            ["currency", "recipient"],
            registry=r,
        )
        self.paid_amount = Counter(
            "rewards_payouts_paid_amount_minor",
            "Sum of the payouts finance reported PAID, in minor units of the currency",
            ["currency", "recipient"],
            registry=r,
        )
        self.failed = Counter(
            "rewards_payouts_failed",
            "FAILED results applied (each attempt once), by currency and recipient",
            ["currency", "recipient"],
            registry=r,
        )
        self.failed_amount = Counter(
            "rewards_payouts_failed_amount_minor",
            "Sum of the payout attempts finance reported FAILED, in minor units",
            ["currency", "recipient"],
            registry=r,
        )
        self.hold_seconds = Histogram(
            "rewards_hold_duration_seconds",
            "How long a reward stayed on hold with a reason, observed when the hold ended",
            ["reason"],
            buckets=HOLD_BUCKETS,
            registry=r,
        )
        self._issued = Children(self.issued)
        self._issued_amount = Children(self.issued_amount)
        self._latency = Children(self.latency)
        self._settled = {
            PayoutStatus.PAID: (Children(self.paid), Children(self.paid_amount)),
            PayoutStatus.FAILED: (Children(self.failed), Children(self.failed_amount)),
        }
        self._hold_seconds = Children(self.hold_seconds)

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
            self._issued(*labels).inc()
            self._issued_amount(*labels).inc(payout.amount_minor)
            if due_s:
                self._latency(trigger.value).observe(max(0.0, self.clock() - due_s))

        self.stage(task, observe)

    def result(self, task: int, result: PayoutResult, decision: Decision) -> None:
        """Stages a payout result the ledger applied: the payout's money, paid or failed."""
        if not decision.changed:
            return
        entry = decision.ledger.find_payout(result.payout_id)
        if entry is None:
            return
        friend = (
            entry.friend if entry.friend and entry.friend.payout_id == result.payout_id else None
        )
        amount = friend.amount_minor if friend is not None else entry.amount_minor or 0
        recipient = (Recipient.FRIEND if friend is not None else Recipient.ADVOCATE).value
        count, total = self._settled[result.status]
        currency = entry.currency

        def observe() -> None:
            count(currency, recipient).inc()
            total(currency, recipient).inc(amount)

        self.stage(task, observe)

    def holds_ended(self, task: int, ended: list[tuple[Hold, int]]) -> None:
        """Stages how long each hold that ended lasted."""
        for hold, at_ms in ended:
            seconds = max(0.0, (at_ms - hold.since_ms) / 1000)
            self.stage(task, functools.partial(self._hold_seconds(hold.reason).observe, seconds))

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


class HeldCollector(Collector):
    """Rewards on hold now, read at each scrape from the committed state of the tasks this
    instance owns (`holds`): count and amount by reason and currency, and when the oldest hold
    of each reason began. Another instance reports its own tasks; sum (or min) across them."""

    def __init__(
        self, read: Callable[[], Iterable[tuple[list[Total], Callable[[str], int | None]]]]
    ):
        self.read = read  # per owned task: its totals, and the oldest start of a reason

    def collect(self) -> list[Metric]:
        held = GaugeMetricFamily(
            "rewards_on_hold",
            "Rewards on hold now (one per referral), by reason and currency",
            labels=["reason", "currency"],
        )
        amount = GaugeMetricFamily(
            "rewards_on_hold_amount_minor",
            "Amount of the advocates' rewards on hold now, in minor units, by reason and currency",
            labels=["reason", "currency"],
        )
        oldest = GaugeMetricFamily(
            "rewards_on_hold_oldest_timestamp_seconds",
            "When the oldest hold standing now began, by reason (no series: none on hold)",
            labels=["reason"],
        )
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        starts: dict[str, float] = {}
        try:
            for task_totals, oldest_ms in self.read():
                for total in task_totals:
                    found = counts[total.reason, total.currency]
                    found[0] += total.count
                    found[1] += total.amount_minor
                for reason in {t.reason for t in task_totals}:
                    since = oldest_ms(reason)
                    if since is not None:
                        starts[reason] = min(starts.get(reason, since / 1000), since / 1000)
        except Exception:  # a store closing under the scrape: report nothing rather than fail
            log.debug("reading the holds failed", exc_info=True)
            return [held, amount, oldest]
        for (reason, currency), (n, minor) in sorted(counts.items()):
            held.add_metric([reason, currency], n)
            amount.add_metric([reason, currency], minor)
        for reason, since_s in sorted(starts.items()):
            oldest.add_metric([reason], since_s)
        return [held, amount, oldest]
