"""The rewards commands: each takes the advocate's ledger and one input, returns a `Decision`.

Nothing here publishes, sleeps or reads a clock: `now` is the adapter's wall clock, used for
due times and as the `occurred_at` / `issued_at` of what is emitted. Replaying the same inputs
with the same `now` values gives the same ledger and the same records, ids included.

Lifecycle of a reward (statuses emitted in brackets):
    WON -> [REWARD_HELD reason]   MISSING_AMOUNT / CURRENCY_MISMATCH / CAP_REACHED (final)
        -> [REWARD_HELD NEEDS_APPROVAL]     --on_approve-->
        -> [REWARD_HELD TAX_INFO_REQUIRED]  --on_profile (form on file)-->
        -> [REWARD_PENDING] --due (on_tick, or at once)--> [REWARDED] + PayoutCommand(attempt)
        -> [PAID] | [PAYOUT_FAILED reason] --on_retry--> [REWARDED] + PayoutCommand(attempt+1)
    REVERSED before the payout is issued (pending, held or failed) -> [REVERSED REWARD_CANCELLED]
    and the win stops counting; REVERSED once issued (REWARDED, PAID) changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from referrals.contract.records import (
    AdvocateProfile,
    PayoutResult,
    PayoutStatus,
    ReferralStatus,
    ReferralStatusChanged,
)
from services.rewards.domain.evaluate import issue, new_entry, settle
from services.rewards.domain.ledger import Entry, Ledger, Reason, State, to_ms
from services.rewards.domain.outputs import Decision, Outcome, Output, status
from services.rewards.domain.rules import RewardRules

# PAYOUT_FAILED carries finance's reason; a result without one still needs a visible code.
UNSPECIFIED_FAILURE = "UNSPECIFIED"


def new_ledger(program_id: str, advocate_id: str) -> Ledger:
    """The ledger of an advocate the service has not seen yet (no form on file)."""
    return Ledger(program_id=program_id, advocate_id=advocate_id)


def on_won(
    ledger: Ledger, rules: RewardRules, won: ReferralStatusChanged, now: datetime
) -> Decision:
    """A successful referral: the n-th of its period earns the tier covering n, at most once."""
    _check_status(ledger, won, ReferralStatus.WON)
    if won.program_id != rules.program_id:
        raise ValueError(f"WON of program {won.program_id} evaluated with {rules.program_id}")
    if ledger.saw_status(won.status_id):
        return _ignored(ledger, Outcome.DUPLICATE_STATUS, f"status {won.status_id} seen")
    if ledger.find(won.referral_id) is not None:
        message = f"referral {won.referral_id} already has its reward decided"
        return _ignored(ledger, Outcome.DUPLICATE_REFERRAL, message)
    entry = new_entry(ledger, rules, won)
    if entry.state is State.UNREWARDED:
        return Decision(ledger.put(entry))
    if entry.state is State.HELD:
        held = status(ledger, entry, ReferralStatus.REWARD_HELD, now, entry.reason)
        return Decision(ledger.put(entry), (held,))
    entry, outputs = settle(
        ledger,
        entry,
        now,
        approval_threshold=rules.approval_threshold_minor,
        tax_threshold=rules.tax_threshold_minor,
    )
    return Decision(ledger.put(entry), tuple(outputs))


def on_reversed(ledger: Ledger, reversed_: ReferralStatusChanged, now: datetime) -> Decision:
    """A deal reversed after WON: cancel the reward unless its payout is already out."""
    _check_status(ledger, reversed_, ReferralStatus.REVERSED)
    entry = ledger.find(reversed_.referral_id)
    if entry is None:
        message = f"referral {reversed_.referral_id} was never won here"
        return _ignored(ledger, Outcome.UNKNOWN_REFERRAL, message)
    if entry.reversed or entry.state is State.CANCELLED:
        return _ignored(ledger, Outcome.ALREADY_REVERSED, f"{entry.referral_id} already reversed")
    if entry.issued:
        # The payout is out and may have moved money: the referral keeps counting.
        return Decision(
            ledger.put(replace(entry, reversed=True)), (), Outcome.REVERSED_AFTER_PAYOUT
        )
    cancelled = replace(entry, state=State.CANCELLED, reversed=True)
    if entry.state is State.UNREWARDED:
        return Decision(ledger.put(cancelled))
    reason = Reason.REWARD_CANCELLED.value
    cancelled = replace(cancelled, reason=reason)
    note = status(ledger, cancelled, ReferralStatus.REVERSED, now, reason)
    return Decision(ledger.put(cancelled), (note,))


def on_profile(ledger: Ledger, profile: AdvocateProfile, now: datetime) -> Decision:
    """Records tax_form_on_file; with the form on file, releases every TAX_INFO_REQUIRED hold."""
    if profile.advocate_id != ledger.advocate_id:
        raise ValueError(f"profile of {profile.advocate_id} applied to {ledger.advocate_id}")
    ledger = replace(ledger, tax_form_on_file=profile.tax_form_on_file)
    if not profile.tax_form_on_file:
        return Decision(ledger)
    outputs: list[Output] = []
    for entry in ledger.entries:
        if entry.state is State.HELD and entry.reason == Reason.TAX_INFO_REQUIRED:
            released, emitted = settle(
                ledger, entry, now, approval_threshold=None, tax_threshold=None
            )
            ledger = ledger.put(released)
            outputs += emitted
    return Decision(ledger, tuple(outputs))


def on_approve(ledger: Ledger, rules: RewardRules, payout_id: str, now: datetime) -> Decision:
    """An operator approves a NEEDS_APPROVAL reward; it goes on to the tax check and the hold."""
    entry = ledger.find_payout(payout_id)
    if entry is None:
        return _ignored(ledger, Outcome.UNKNOWN_PAYOUT, f"no reward with payout {payout_id}")
    if entry.state is not State.HELD or entry.reason != Reason.NEEDS_APPROVAL:
        message = f"payout {payout_id} is {_describe(entry)}, not awaiting approval"
        return _ignored(ledger, Outcome.NOT_AWAITING_APPROVAL, message)
    entry, outputs = settle(
        ledger, entry, now, approval_threshold=None, tax_threshold=rules.tax_threshold_minor
    )
    return Decision(ledger.put(entry), tuple(outputs))


def on_retry(ledger: Ledger, payout_id: str, now: datetime) -> Decision:
    """An operator re-issues a FAILED payout: same payout_id, the next attempt."""
    entry = ledger.find_payout(payout_id)
    if entry is None:
        return _ignored(ledger, Outcome.UNKNOWN_PAYOUT, f"no reward with payout {payout_id}")
    if entry.state is not State.FAILED:
        message = f"payout {payout_id} is {_describe(entry)}; only a FAILED payout can be retried"
        return _ignored(ledger, Outcome.NOT_FAILED, message)
    entry, outputs = issue(ledger, replace(entry, attempt=entry.attempt + 1), now)
    return Decision(ledger.put(entry), tuple(outputs))


def on_payout_result(ledger: Ledger, result: PayoutResult, now: datetime) -> Decision:
    """Finance's answer for the current attempt: PAID, or PAYOUT_FAILED with its reason."""
    entry = ledger.find_payout(result.payout_id)
    if entry is None:
        message = f"no reward with payout {result.payout_id}"
        return _ignored(ledger, Outcome.UNKNOWN_PAYOUT, message)
    if result.attempt != entry.attempt:
        message = f"result for attempt {result.attempt}, current attempt is {entry.attempt}"
        return _ignored(ledger, Outcome.STALE_ATTEMPT, message)
    if entry.state is not State.REWARDED:
        message = f"payout {result.payout_id} is already {_describe(entry)}"
        return _ignored(ledger, Outcome.ALREADY_SETTLED, message)
    if result.status is PayoutStatus.PAID:
        entry = replace(entry, state=State.PAID)
        return Decision(ledger.put(entry), (status(ledger, entry, ReferralStatus.PAID, now),))
    reason = result.reason or UNSPECIFIED_FAILURE
    entry = replace(entry, state=State.FAILED, reason=reason)
    failed = status(ledger, entry, ReferralStatus.PAYOUT_FAILED, now, reason)
    return Decision(ledger.put(entry), (failed,))


def settles(ledger: Ledger, result: PayoutResult) -> bool:
    """Whether `result` is (or repeats) the PAID of the payout's current attempt: once it is
    applied the payout is settled for good, and no later result or command changes it (a
    result is ALREADY_SETTLED or STALE_ATTEMPT, an approval, denial or retry is refused)."""
    entry = ledger.find_payout(result.payout_id)
    return (
        result.status is PayoutStatus.PAID
        and entry is not None
        and result.attempt == entry.attempt
        and entry.state in (State.REWARDED, State.PAID)
    )


def on_tick(ledger: Ledger, now: datetime) -> Decision:
    """Releases every PENDING reward whose due time (WON occurred_at + hold_days) has passed."""
    outputs: list[Output] = []
    now_ms = to_ms(now)
    for entry in ledger.entries:
        if entry.state is State.PENDING and entry.due_at <= now_ms:
            released, emitted = issue(ledger, entry, now)
            ledger = ledger.put(released)
            outputs += emitted
    return Decision(ledger, tuple(outputs))


def _check_status(ledger: Ledger, record: ReferralStatusChanged, expected: ReferralStatus) -> None:
    # Wrong routing is an adapter bug, not bad data: fail loudly rather than mis-pay.
    if record.status is not expected:
        raise ValueError(f"expected a {expected} status, got {record.status}")
    if (record.program_id, record.advocate_id) != (ledger.program_id, ledger.advocate_id):
        raise ValueError(
            f"status for {record.program_id}/{record.advocate_id} applied to the ledger of "
            f"{ledger.program_id}/{ledger.advocate_id}"
        )


def _ignored(ledger: Ledger, outcome: Outcome, message: str) -> Decision:
    return Decision(ledger, (), outcome, message)


def _describe(entry: Entry) -> str:
    detail = f" {entry.reason}" if entry.reason else ""
    return f"{entry.state}{detail} (attempt {entry.attempt})"
