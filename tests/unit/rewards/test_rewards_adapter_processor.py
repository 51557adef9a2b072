"""The rewards processor end to end in memory: one task, stores on memory backends, and a tiny
stand-in for the runtime that feeds outputs on the service's own input topics back in (the
payout-side routing included) and commits or aborts like the real one."""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rewards_builders import profile, reversal, won

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    PayoutCommand,
    PayoutResult,
    PayoutStatus,
    ProgramConfig,
    Record,
    ReferralStatusChanged,
    RewardAction,
    RewardCommand,
)
from referrals.contract.topics import (
    ADVOCATES,
    PAYOUT_RESULTS,
    PAYOUTS,
    PROGRAMS,
    REWARDS_BY_PAYOUT,
    STATUS,
    spec_for,
)
from referrals.platform.errors import PermanentError
from referrals.platform.metrics import RuntimeMetrics
from referrals.programs.document import canonical_json, validate
from referrals.streams.processor import DeadLetterOut, Inbound, Outbound, Output
from referrals.streams.state import MemoryBackend, TaskStore
from referrals.streams.topics import check_key
from services.rewards.adapters import keyspace
from services.rewards.adapters.processor import RewardsProcessor
from services.rewards.adapters.settings import RewardsSettings
from services.rewards.domain import ids

NOW = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # an hour after the builders' T0
TIERS = [
    {"from_referral": 1, "amount": "50.00", "reward_type": "GIFT_CARD"},
    {"from_referral": 3, "amount": "75.00", "reward_type": "GIFT_CARD"},
]


def program(program_id: str = "acme-b2b", **rewards: Any) -> ProgramConfig:
    doc = validate(
        {
            "program_id": program_id,
            "currency": "USD",
            "time_zone": "America/New_York",
            "rewards": {"tiers": TIERS, **rewards},
        }
    )
    text = canonical_json(doc)
    return ProgramConfig(program_id, 1, text, hashlib.sha256(text.encode()).hexdigest(), NOW)


class Loop:
    """One task (partition 0) of the rewards service, and everything it produced."""

    def __init__(self, backends: dict[str, MemoryBackend] | None = None, **settings: Any) -> None:
        self.backends = backends or {}
        self.metrics = RuntimeMetrics("rewards")
        self.proc = RewardsProcessor(self.metrics, RewardsSettings(**settings), lambda: 0.0)
        self.codec = AvroCodec()
        self.out: dict[str, list[Record]] = defaultdict(list)
        self.dead: list[tuple[DeadLetterOut, str]] = []
        self.offset = 0
        self.queue: list[tuple[str, str, Record]] = []
        stores = {}
        for name in self.proc.stores:
            backend = self.backends.setdefault(name, MemoryBackend())
            stores[name] = TaskStore(name, 0, backend)
        self.proc.task_stores = {0: stores}
        asyncio.run(self.proc.assign(frozenset({0})))

    def program(self, config: ProgramConfig) -> None:
        self.proc.on_global(PROGRAMS, config.program_id, config)

    def send(self, topic: str, key: str, value: Record, now: datetime = NOW) -> None:
        self.queue.append((topic, key, value))
        self.drain(now)

    def drain(self, now: datetime, *, commit: bool = True) -> None:
        while self.queue:
            topic, key, value = self.queue.pop(0)
            inbound = Inbound(
                topic, 0, self.offset, key, value, 0, key.encode(), self.codec.encode(value)
            )
            self.offset += 1
            try:
                if topic in self.proc.keyed_inputs:  # as the runtime does before `process`
                    check_key(spec_for(topic), key, value)
                self._emit(self.proc.process(inbound, now))
            except PermanentError as err:
                self.dead.append((DeadLetterOut(inbound, err), err.reason))
        self.finish(commit)

    def tick(self, now: datetime) -> None:
        self._emit(self.proc.punctuate(0, now))
        self.drain(now)

    def finish(self, commit: bool) -> None:
        for store in self.proc.task_stores[0].values():
            store.commit() if commit else store.abort()
        self.proc.committed(0) if commit else self.proc.aborted(0)

    def _emit(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, DeadLetterOut):
                self.dead.append((out, out.error.reason))
                continue
            assert isinstance(out, Outbound)
            self.out[out.topic].append(out.value)
            if out.topic in self.proc.inputs:
                self.queue.append((out.topic, out.key, out.value))

    def payouts(self) -> list[PayoutCommand]:
        return [p for p in self.out[PAYOUTS] if isinstance(p, PayoutCommand)]

    def statuses(self) -> list[tuple[str, str | None]]:
        return [
            (s.status.value, s.reason)
            for s in self.out[STATUS]
            if isinstance(s, ReferralStatusChanged)
        ]

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


def payout_of(referral: str) -> str:
    return ids.payout_id("acme-b2b", referral, "referral-reward")


def test_wins_pay_escalating_tiers_at_once_without_a_hold() -> None:
    loop = Loop()
    loop.program(program())
    for n in range(1, 5):
        loop.send(STATUS, "adv-1", won(f"r{n}"))
    loop.send(STATUS, "adv-1", won("r1"))  # a duplicate changes nothing
    assert [p.amount_minor for p in loop.payouts()] == [5_000, 5_000, 7_500, 7_500]
    assert loop.metric("rewards_payouts_issued_total", currency="USD", reward_type="GIFT_CARD") == 4
    assert (
        loop.metric(
            "rewards_payouts_issued_amount_minor_total", currency="USD", reward_type="GIFT_CARD"
        )
        == 25_000
    )
    assert loop.metric("rewards_statuses_ignored_total", outcome="DUPLICATE_STATUS") == 1


def test_a_held_back_reward_is_released_by_the_timer_once_due() -> None:
    loop = Loop()
    loop.program(program(hold_days=14))
    loop.send(STATUS, "adv-1", won("r1"))
    assert loop.statuses()[-1] == ("REWARD_PENDING", None)
    assert loop.metric("rewards_pending_releases") == 1
    loop.tick(NOW + timedelta(days=13))
    assert loop.payouts() == []
    loop.tick(NOW + timedelta(days=14))
    assert [p.payout_id for p in loop.payouts()] == [payout_of("r1")]
    assert loop.metric("rewards_pending_releases") == 0
    assert list(loop.proc.space(0, keyspace.TIMERS).items()) == []


def test_pending_releases_survive_a_restart() -> None:
    loop = Loop()
    loop.program(program(hold_days=14))
    loop.send(STATUS, "adv-1", won("r1"))
    again = Loop(loop.backends)  # a new process over the committed state
    again.program(program(hold_days=14))
    again.tick(NOW + timedelta(days=15))
    assert [p.payout_id for p in again.payouts()] == [payout_of("r1")]


def test_a_reversal_cancels_the_pending_reward_and_corrects_the_next_tier() -> None:
    loop = Loop()
    loop.program(program(hold_days=14))
    for n in (1, 2):
        loop.send(STATUS, "adv-1", won(f"r{n}"))
    loop.send(STATUS, "adv-1", reversal("r2"))
    loop.send(STATUS, "adv-1", won("r3"))
    loop.tick(NOW + timedelta(days=15))
    paid = {p.referral_id: p.amount_minor for p in loop.payouts()}
    assert paid == {"r1": 5_000, "r3": 5_000}  # r3 is the 2nd counted win, not the 3rd
    assert ("REVERSED", "REWARD_CANCELLED") in loop.statuses()


def test_a_status_waits_for_its_program_and_goes_to_the_dlq_when_it_never_comes() -> None:
    loop = Loop(unknown_program_wait_s=3600)
    loop.send(STATUS, "adv-1", won("r1"))
    loop.send(STATUS, "adv-2", replace(won("r9"), advocate_id="adv-2", program_id="ghost"))
    assert loop.payouts() == [] and loop.metric("rewards_inputs_waiting", kind="program") == 2
    loop.program(program())
    loop.tick(NOW + timedelta(minutes=1))
    assert [p.referral_id for p in loop.payouts()] == ["r1"]
    loop.tick(NOW + timedelta(hours=2))
    [(dead, reason)] = loop.dead
    assert reason == "UNKNOWN_PROGRAM" and dead.record.raw_key == b"adv-2"
    assert loop.metric("rewards_inputs_waiting", kind="program") == 0


def test_statuses_parked_for_a_program_keep_their_order_behind_a_new_one() -> None:
    loop = Loop()
    loop.send(STATUS, "adv-1", won("r1"))
    loop.send(STATUS, "adv-1", won("r2"))
    loop.program(program())
    loop.send(STATUS, "adv-1", won("r3"))  # arrives before any punctuation released r1, r2
    assert [(p.referral_id, p.tier) for p in loop.payouts()] == [("r1", 1), ("r2", 1), ("r3", 3)]


def test_payout_results_reach_the_ledger_even_before_their_owner_is_known() -> None:
    loop = Loop()
    loop.program(program())
    early = PayoutResult(payout_of("r1"), 1, PayoutStatus.PAID, NOW)
    loop.send(PAYOUT_RESULTS, early.payout_id, early)  # finance answered before the owner came
    assert loop.metric("rewards_inputs_waiting", kind="payout") == 1
    loop.send(STATUS, "adv-1", won("r1"))
    loop.send(STATUS, "adv-1", won("r2"))
    failed = PayoutResult(payout_of("r2"), 1, PayoutStatus.FAILED, NOW, "ACCOUNT_CLOSED")
    loop.send(PAYOUT_RESULTS, failed.payout_id, failed)
    loop.send(PAYOUT_RESULTS, failed.payout_id, failed)  # a repeat is ignored, and counted
    assert ("PAID", None) in loop.statuses()
    assert ("PAYOUT_FAILED", "ACCOUNT_CLOSED") in loop.statuses()
    assert loop.metric("rewards_payout_failures_total") == 1
    assert loop.metric("rewards_results_ignored_total", outcome="ALREADY_SETTLED") == 1
    assert loop.metric("rewards_inputs_waiting", kind="payout") == 0


def test_a_result_for_a_payout_never_issued_waits_then_goes_to_the_dlq() -> None:
    loop = Loop(unknown_payout_wait_s=86400)
    stray = PayoutResult("po-nobody", 1, PayoutStatus.PAID, NOW)
    loop.send(PAYOUT_RESULTS, stray.payout_id, stray)
    loop.tick(NOW + timedelta(hours=23))
    assert loop.dead == []
    loop.tick(NOW + timedelta(hours=25))
    assert [reason for _, reason in loop.dead] == ["UNKNOWN_PAYOUT"]


def _command(action: RewardAction, referral: str, n: int = 1) -> RewardCommand:
    return RewardCommand(f"cmd-{action}-{n}", payout_of(referral), action, "ops", NOW)


def test_approval_releases_a_held_reward_and_a_second_approval_is_refused() -> None:
    loop = Loop()
    loop.program(program(approval_threshold="50.00"))
    loop.send(STATUS, "adv-1", won("r1"))
    assert loop.statuses()[-1] == ("REWARD_HELD", "NEEDS_APPROVAL")
    assert loop.metric("rewards_held_total", reason="NEEDS_APPROVAL") == 1
    for n in (1, 2):
        loop.send(REWARDS_BY_PAYOUT, payout_of("r1"), _command(RewardAction.APPROVE, "r1", n))
    assert [p.payout_id for p in loop.payouts()] == [payout_of("r1")]
    assert loop.metric("rewards_commands_applied_total", action="APPROVE") == 1
    assert (
        loop.metric("rewards_commands_refused_total", action="APPROVE", reason="ALREADY_APPROVED")
        == 1
    )


def test_retry_reissues_a_failed_payout_with_the_next_attempt() -> None:
    loop = Loop()
    loop.program(program())
    loop.send(STATUS, "adv-1", won("r1"))
    failed = PayoutResult(payout_of("r1"), 1, PayoutStatus.FAILED, NOW, "BOUNCED")
    loop.send(PAYOUT_RESULTS, failed.payout_id, failed)
    loop.send(REWARDS_BY_PAYOUT, payout_of("r1"), _command(RewardAction.RETRY, "r1"))
    loop.send(REWARDS_BY_PAYOUT, payout_of("r1"), _command(RewardAction.RETRY, "r1", 2))
    assert [(p.payout_id, p.attempt) for p in loop.payouts()] == [
        (payout_of("r1"), 1),
        (payout_of("r1"), 2),
    ]
    assert loop.metric("rewards_commands_refused_total", action="RETRY", reason="NOT_FAILED") == 1


def test_tax_hold_is_released_by_a_profile_with_the_form_on_file() -> None:
    loop = Loop()
    loop.program(program(tax_threshold="100.00"))
    for n in (1, 2):
        loop.send(STATUS, "adv-1", won(f"r{n}"))
    assert loop.statuses()[-1] == ("REWARD_HELD", "TAX_INFO_REQUIRED")
    loop.send(ADVOCATES, "adv-1", profile(tax_form_on_file=True))
    assert [p.referral_id for p in loop.payouts()] == ["r1", "r2"]


def test_an_aborted_transaction_leaves_no_state_no_timer_and_no_counts() -> None:
    loop = Loop()
    loop.program(program(hold_days=14))
    loop.queue.append((STATUS, "adv-1", won("r1")))
    loop.drain(NOW, commit=False)
    assert loop.metric("rewards_statuses_ignored_total", outcome="DUPLICATE_STATUS") == 0
    assert loop.metric("rewards_held_total", reason="NEEDS_APPROVAL") == 0
    assert len(loop.proc.timers[0]) == 0
    assert list(loop.proc.space(0, keyspace.LEDGERS).items()) == []
    loop.send(STATUS, "adv-1", won("r1"))  # processed again after the abort: as if new
    assert loop.statuses()[-1] == ("REWARD_PENDING", None)
    assert len(loop.proc.timers[0]) == 1


def test_own_statuses_are_ignored_and_bad_statuses_are_refused() -> None:
    loop = Loop()
    loop.program(program())
    loop.program(program("other-program"))
    loop.send(STATUS, "adv-1", won("r1"))
    produced = len(loop.out[STATUS])
    assert produced == 2  # REWARD_PENDING, REWARDED: read back, and ignored
    loop.send(STATUS, "adv-2", won("r2"))  # keyed by another advocate
    loop.send(STATUS, "adv-1", replace(won("r3"), program_id="other-program"))
    loop.send(STATUS, "adv-1", replace(won("r4"), occurred_at=datetime(1999, 1, 1, tzinfo=UTC)))
    reasons = [reason for _, reason in loop.dead]
    assert reasons == ["KEY_MISMATCH", "PROGRAM_MISMATCH", "TIME_OUT_OF_RANGE"]
    assert len(loop.out[STATUS]) == produced


@pytest.mark.parametrize("wrong", [PAYOUT_RESULTS, REWARDS_BY_PAYOUT])
def test_a_payout_keyed_record_under_another_key_is_refused(wrong: str) -> None:
    loop = Loop()
    result = PayoutResult("po-1", 1, PayoutStatus.PAID, NOW)
    loop.send(wrong, "po-2", result)
    assert [reason for _, reason in loop.dead] == ["KEY_MISMATCH"]


def test_statuses_released_ahead_of_a_bad_one_are_not_lost() -> None:
    loop = Loop()
    loop.program(program("other-program"))
    loop.send(STATUS, "adv-2", replace(won("r0"), advocate_id="adv-2", program_id="other-program"))
    loop.send(STATUS, "adv-1", won("r1"))  # acme-b2b is not known yet: it waits
    loop.program(program())
    # adv-2 belongs to other-program: refused, after the waiting acme-b2b status went ahead.
    loop.send(STATUS, "adv-2", replace(won("r2"), advocate_id="adv-2"))
    assert [p.referral_id for p in loop.payouts()] == ["r0", "r1"]
    assert [reason for _, reason in loop.dead] == ["PROGRAM_MISMATCH"]


def test_a_prolific_advocates_stored_ledger_stays_small_and_old_rewards_stay_reachable() -> None:
    """The ledger value holds tallies; each win's entry has its own key (`archive`)."""
    loop = Loop()
    loop.program(program())
    wins = 1_500  # a list of every win would be ~600 KB, past half of Kafka's record limit
    for n in range(wins):
        loop.queue.append((STATUS, "adv-1", won(f"r{n}", NOW - timedelta(minutes=wins - n))))
    loop.drain(NOW)
    loop.send(STATUS, "adv-1", won("r0"))  # a duplicate of a long-archived win: nothing
    assert len(loop.payouts()) == wins
    ledger = loop.proc.space(0, keyspace.LEDGERS).get(b"adv-1")
    assert ledger is not None and len(ledger) < 2_000
    assert len(list(loop.proc.space(0, keyspace.ENTRIES).items())) == wins
    # the first reward, archived 1,499 wins ago, still takes a result and an operator's retry
    failed = PayoutResult(payout_of("r0"), 1, PayoutStatus.FAILED, NOW, "BOUNCED")
    loop.send(PAYOUT_RESULTS, failed.payout_id, failed)
    loop.send(REWARDS_BY_PAYOUT, payout_of("r0"), _command(RewardAction.RETRY, "r0"))
    assert [(p.payout_id, p.attempt) for p in loop.payouts()[wins:]] == [(payout_of("r0"), 2)]
    assert loop.statuses()[-2:] == [("PAYOUT_FAILED", "BOUNCED"), ("REWARDED", None)]


def _owner(loop: Loop, referral: str) -> bytes | None:
    return loop.proc.space(0, keyspace.OWNERS).get(payout_of(referral).encode())


def test_a_paid_payouts_owner_is_pruned_after_the_retention_and_a_late_repeat_is_harmless() -> None:
    loop = Loop(owner_retention_days=30, unknown_payout_wait_s=86400)
    loop.program(program())
    loop.send(STATUS, "adv-1", won("r1"))
    paid = PayoutResult(payout_of("r1"), 1, PayoutStatus.PAID, NOW)
    loop.send(PAYOUT_RESULTS, paid.payout_id, paid)
    assert loop.statuses()[-1] == ("PAID", None)
    # within the grace period a repeat is routed to the ledger and ignored as a duplicate
    loop.tick(NOW + timedelta(days=29))
    assert _owner(loop, "r1") is not None
    loop.send(PAYOUT_RESULTS, paid.payout_id, paid, NOW + timedelta(days=29))
    assert loop.metric("rewards_results_ignored_total", outcome="ALREADY_SETTLED") == 1
    loop.tick(NOW + timedelta(days=30, minutes=1))
    for space in (keyspace.OWNERS, keyspace.SETTLED, keyspace.OWNERS_BY_PRUNE):
        assert list(loop.proc.space(0, space).items()) == []
    # a repeat after it: no owner, so it waits, then goes to the DLQ; nothing paid or emitted
    statuses, payouts = len(loop.out[STATUS]), len(loop.payouts())
    later = NOW + timedelta(days=31)
    loop.send(PAYOUT_RESULTS, paid.payout_id, paid, later)
    loop.tick(later + timedelta(hours=25))
    assert [reason for _, reason in loop.dead] == ["UNKNOWN_PAYOUT"]
    assert (len(loop.out[STATUS]), len(loop.payouts())) == (statuses, payouts)


def test_failed_and_unanswered_payouts_keep_their_owner_and_a_retry_still_routes() -> None:
    loop = Loop(owner_retention_days=30)
    loop.program(program())
    for referral in ("r1", "r2"):
        loop.send(STATUS, "adv-1", won(referral))
    failed = PayoutResult(payout_of("r1"), 1, PayoutStatus.FAILED, NOW, "BOUNCED")
    loop.send(PAYOUT_RESULTS, failed.payout_id, failed)
    # a PAID of an attempt that is not the current one settles nothing
    stale = PayoutResult(payout_of("r1"), 2, PayoutStatus.PAID, NOW)
    loop.send(PAYOUT_RESULTS, stale.payout_id, stale)
    much_later = NOW + timedelta(days=400)
    loop.tick(much_later)
    assert _owner(loop, "r1") is not None and _owner(loop, "r2") is not None
    loop.send(REWARDS_BY_PAYOUT, payout_of("r1"), _command(RewardAction.RETRY, "r1"), much_later)
    assert [(p.payout_id, p.attempt) for p in loop.payouts()][-1] == (payout_of("r1"), 2)
    # the retried attempt paid: now it is settled, and goes after the retention
    paid = PayoutResult(payout_of("r1"), 2, PayoutStatus.PAID, much_later)
    loop.send(PAYOUT_RESULTS, paid.payout_id, paid, much_later)
    loop.tick(much_later + timedelta(days=29))
    assert _owner(loop, "r1") is not None
    loop.tick(much_later + timedelta(days=31))
    assert _owner(loop, "r1") is None and _owner(loop, "r2") is not None
    assert loop.dead == []


def test_owner_pruning_is_bounded_per_tick_and_survives_an_abort_and_a_restart() -> None:
    backends: dict[str, MemoryBackend] = {}
    loop = Loop(backends, owner_retention_days=1, max_releases=2)
    loop.program(program())
    for n in range(5):
        loop.send(STATUS, "adv-1", won(f"r{n}"))
        paid = PayoutResult(payout_of(f"r{n}"), 1, PayoutStatus.PAID, NOW)
        loop.send(PAYOUT_RESULTS, paid.payout_id, paid, NOW + timedelta(minutes=n))
    later = NOW + timedelta(days=2)
    loop._emit(loop.proc.punctuate(0, later))
    loop.finish(commit=False)  # aborted: nothing pruned
    assert all(_owner(loop, f"r{n}") is not None for n in range(5))
    loop.tick(later)
    assert [_owner(loop, f"r{n}") is None for n in range(5)] == [True, True, False, False, False]
    restarted = Loop(backends, owner_retention_days=1, max_releases=2)
    restarted.tick(later)
    restarted.tick(later)
    assert all(_owner(restarted, f"r{n}") is None for n in range(5))


def test_a_release_failing_halfway_commits_none_of_its_writes_and_pays_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Findings: the catch-all around releases first committed what a failed release had
    # written (a ledger REWARDED with no payout sent); then it kept the timer aside until the
    # task was next assigned, with health green. The failure now raises to the runtime, which
    # aborts the transaction, reports the task's timers not ready, and runs them again (here:
    # the next punctuation, the task rebuilt as the runtime rebuilds it) in the same process.
    loop = Loop()
    loop.program(program(hold_days=14))
    loop.send(STATUS, "adv-1", won("r1"))
    real = loop.proc.ledgers.apply

    def fails_after_writing(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise RuntimeError("a bug after the ledger was written")

    monkeypatch.setattr(loop.proc.ledgers, "apply", fails_after_writing)
    with pytest.raises(RuntimeError, match="a bug after the ledger was written"):
        loop.proc.punctuate(0, NOW + timedelta(days=15))
    loop.finish(commit=False)  # the runtime aborts the task's transaction
    assert loop.payouts() == []
    assert loop.statuses()[-1] == ("REWARD_PENDING", None)
    asyncio.run(loop.proc.revoke(frozenset({0})))  # and rebuilds the task
    asyncio.run(loop.proc.assign(frozenset({0})))
    assert loop.metric("rewards_pending_releases") == 1  # the timer is still there
    monkeypatch.setattr(loop.proc.ledgers, "apply", real)  # the fault is gone
    loop.tick(NOW + timedelta(days=15))
    assert [p.payout_id for p in loop.payouts()] == [payout_of("r1")]
    assert list(loop.proc.space(0, keyspace.TIMERS).items()) == []
