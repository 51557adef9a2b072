"""The rewards commands: each takes the advocate's ledger and one input, returns a `Decision`.

Nothing here publishes, sleeps or reads a clock: `now` is the adapter's wall clock, used for
due times and as the `occurred_at` / `issued_at` of what is emitted. Replaying the same inputs
with the same `now` values gives the same ledger and the same records, ids included.

Lifecycle of a reward (statuses emitted in brackets; the gates are in `evaluate`):
    WON -> [REWARD_HELD PROGRAM_PAUSED]   --the program active again (on_resume)-->
        -> [REWARD_HELD FRAUD_REVIEW | NEEDS_APPROVAL] --approve--> on | --deny--> [REJECTED DENIED]
        -> [REWARD_HELD CAP_REACHED | MISSING_AMOUNT | CURRENCY_MISMATCH]  (final)
        -> [REWARD_HELD TAX_INFO_REQUIRED]  --on_profile (form on file)-->
        -> [REWARD_PENDING] --due (on_tick, or at once)--> [REWARDED] + PayoutCommand(attempt)
        -> [PAID] | [PAYOUT_FAILED reason] --retry--> [REWARDED] + PayoutCommand(attempt+1)
    REVERSED before the payout is issued (pending, held) -> [REVERSED REWARD_CANCELLED];
    after finance FAILED it -> [REVERSED CANCELLED]; once issued (REWARDED, PAID): with the
    program's `clawback`, [REVERSED CLAWED_BACK] + a CLAWBACK on rewards.payouts.v2, else only
    recorded. A reversed, denied or clawed-back referral stops counting toward later tiers.
The friend's reward (two-sided programs) follows its referral: issued once the referral is past
its review and due, denied, cancelled or clawed back with it; finance's results and retries
address it by its own payout_id.
"""

from __future__ import annotations

from datetime import UTC, datetime

from referrals.contract.records import (
    AdvocateProfile,
    PayoutResult,
    PayoutStatus,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
    RewardCommand,
)
from referrals.platform.evolve import replace
from services.rewards.domain.evaluate import issue, issue_friend, new_entry, past_review, settle
from services.rewards.domain.ledger import ISSUED, Entry, Ledger, Reason, State, to_ms
from services.rewards.domain.outputs import (
    Decision,
    Outcome,
    Output,
    clawback,
    describe,
    friend_payout,
    payout,
    status,
)
from services.rewards.domain.rules import Lifecycle, RewardRules

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
    day = rules.local_day(won.occurred_at)
    ledger = ledger.count_win(day)
    entry = new_entry(ledger, rules, won, ledger.wins_on(day))
    entry, outputs = settle(ledger, entry, rules, now)
    return Decision(ledger.put(entry), tuple(outputs))


def on_reversed(
    ledger: Ledger, reversed_: ReferralStatusChanged, now: datetime, *, clawback_on: bool = False
) -> Decision:
    """A deal reversed after WON: the reward is cancelled if not issued yet, clawed back (with
    the program's `clawback`) if it was, and the referral stops counting."""
    _check_status(ledger, reversed_, ReferralStatus.REVERSED)
    entry = ledger.find(reversed_.referral_id)
    if entry is None:
        message = f"referral {reversed_.referral_id} was never won here"
        return _ignored(ledger, Outcome.UNKNOWN_REFERRAL, message)
    if entry.reversed or entry.state in (State.CANCELLED, State.CLAWED_BACK):
        return _ignored(ledger, Outcome.ALREADY_REVERSED, f"{entry.referral_id} already reversed")
    outputs: list[Output] = []
    friend = entry.friend
    if friend is not None and friend.state in ISSUED and clawback_on:
        outputs.append(clawback(friend_payout(ledger, entry, friend, now), now))
        friend = replace(friend, state=State.CLAWED_BACK)
    elif friend is not None and friend.state in (State.HELD, State.PENDING, State.FAILED):
        friend = replace(friend, state=State.CANCELLED)
    entry = replace(entry, friend=friend, reversed=True)
    outcome = Outcome.APPLIED
    if entry.issued and clawback_on:
        entry = replace(entry, state=State.CLAWED_BACK, reason=Reason.CLAWED_BACK.value)
        note = status(ledger, entry, ReferralStatus.REVERSED, now, Reason.CLAWED_BACK.value)
        outputs = [note, clawback(payout(ledger, entry, now), now), *outputs]
    elif entry.issued:  # the money moved and stays: recorded, the referral no longer counts
        outcome = Outcome.REVERSED_AFTER_PAYOUT
    elif entry.state is State.UNREWARDED:
        entry = replace(entry, state=State.CANCELLED)
    elif entry.state is not State.DENIED:  # a denied one stays denied, now reversed too
        failed = entry.state is State.FAILED
        reason = Reason.CANCELLED if failed else Reason.REWARD_CANCELLED
        entry = replace(entry, state=State.CANCELLED, reason=reason.value)
        outputs.insert(0, status(ledger, entry, ReferralStatus.REVERSED, now, reason.value))
    return Decision(ledger.put(entry), tuple(outputs), outcome)


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
            # The tax gate comes after the review: an entry held there was reviewed.
            released, emitted = past_review(ledger, replace(entry, reviewed=True), None, now)
            ledger = ledger.put(released)
            outputs += emitted
    return Decision(ledger, tuple(outputs))


def on_resume(ledger: Ledger, rules: RewardRules, now: datetime) -> Decision:
    """The program is no longer PAUSED: its rewards held PROGRAM_PAUSED walk on."""
    if rules.lifecycle is Lifecycle.PAUSED:
        return Decision(ledger)
    outputs: list[Output] = []
    for entry in ledger.entries:
        if entry.state is State.HELD and entry.reason == Reason.PROGRAM_PAUSED:
            released, emitted = settle(ledger, entry, rules, now)
            ledger = ledger.put(released)
            outputs += emitted
    return Decision(ledger, tuple(outputs))


# -- operator commands --------------------------------------------------------------------------
def on_command(
    ledger: Ledger, rules: RewardRules | None, command: RewardCommand, now: datetime
) -> Decision:
    """An operator's APPROVE, DENY or RETRY of one payout (the advocate's or the friend's reward
    of a referral). A command_id applied before is answered again without a second effect; a
    command the current state does not allow is refused with why (Decision.message, .state)."""
    entry = ledger.find_payout(command.payout_id)
    if entry is None:
        message = f"no reward with payout {command.payout_id}"
        return _ignored(ledger, Outcome.UNKNOWN_PAYOUT, message)
    if command.command_id and command.command_id in entry.commands:
        return _answer(ledger, entry, command, Outcome.REPEATED_COMMAND, "applied before")
    if command.action is RewardAction.RETRY:
        return _retry(ledger, entry, command, now)
    if entry.state is State.DENIED:
        return _answer(ledger, entry, command, Outcome.ALREADY_DENIED, "denied before")
    if entry.approved:
        return _answer(ledger, entry, command, Outcome.ALREADY_APPROVED, "approved before")
    if not entry.under_review:
        message = "only a reward held for review (NEEDS_APPROVAL, FRAUD_REVIEW) can be"
        verb = "approved" if command.action is RewardAction.APPROVE else "denied"
        return _answer(ledger, entry, command, Outcome.NOT_AWAITING_REVIEW, f"{message} {verb}")
    entry = _record(entry, command)
    if command.action is RewardAction.APPROVE:
        if rules is None:
            raise ValueError(f"approving a reward of program {ledger.program_id} needs its rules")
        entry, emitted = settle(ledger, replace(entry, approved=True), rules, now)
        return _applied(ledger.put(entry), entry, command, emitted)
    friend = entry.friend
    if friend is not None:
        friend = replace(friend, state=State.DENIED)
    entry = replace(entry, state=State.DENIED, reason=Reason.DENIED.value, friend=friend)
    rejected = status(ledger, entry, ReferralStatus.REJECTED, now, Reason.DENIED.value)
    return _applied(ledger.put(entry), entry, command, [rejected])


_ONLY_FAILED = "only a FAILED payout can be retried"


def _retry(ledger: Ledger, entry: Entry, command: RewardCommand, now: datetime) -> Decision:
    """Re-issues a FAILED payout: same payout_id, the next attempt."""
    friend = entry.friend
    if friend is not None and friend.payout_id == command.payout_id:
        if friend.state is not State.FAILED:
            return _answer(
                ledger, entry, command, Outcome.NOT_FAILED, "only a FAILED payout can be retried"
            )
        entry = replace(entry, friend=replace(friend, attempt=friend.attempt + 1))
        entry, outputs = issue_friend(ledger, entry, now)
    else:
        if entry.state is not State.FAILED:
            return _answer(
                ledger, entry, command, Outcome.NOT_FAILED, "only a FAILED payout can be retried"
            )
        entry, outputs = issue(ledger, replace(entry, attempt=entry.attempt + 1), now)
    entry = _record(entry, command)
    return _applied(ledger.put(entry), entry, command, outputs)


def _record(entry: Entry, command: RewardCommand) -> Entry:
    """The entry remembering `command` (by command_id: a repeat is answered, not re-applied)."""
    if not command.command_id:
        return entry
    return replace(entry, commands=(*entry.commands, command.command_id))


def _applied(
    ledger: Ledger, entry: Entry, command: RewardCommand, outputs: list[Output]
) -> Decision:
    return Decision(ledger, tuple(outputs), state=describe(entry, command.payout_id))


def _answer(
    ledger: Ledger, entry: Entry, command: RewardCommand, outcome: Outcome, why: str
) -> Decision:
    """A command that changes nothing: refused (or a repeat), with the payout's state."""
    state = describe(entry, command.payout_id)
    message = f"{command.action} of payout {command.payout_id}: it is {state}; {why}"
    return Decision(ledger, (), outcome, message, state)


def on_approve(
    ledger: Ledger, rules: RewardRules, payout_id: str, now: datetime, command_id: str = ""
) -> Decision:
    """An operator approves a reward held for review (on_command's APPROVE)."""
    return on_command(ledger, rules, _command(RewardAction.APPROVE, payout_id, command_id), now)


def on_deny(ledger: Ledger, payout_id: str, now: datetime, command_id: str = "") -> Decision:
    """An operator denies a reward held for review (on_command's DENY)."""
    return on_command(ledger, None, _command(RewardAction.DENY, payout_id, command_id), now)


def on_retry(ledger: Ledger, payout_id: str, now: datetime, command_id: str = "") -> Decision:
    """An operator re-issues a FAILED payout (on_command's RETRY)."""
    return on_command(ledger, None, _command(RewardAction.RETRY, payout_id, command_id), now)


def _command(action: RewardAction, payout_id: str, command_id: str) -> RewardCommand:
    """A command without an id is not remembered (the core's own tests and replays)."""
    return RewardCommand(command_id, payout_id, action, "", _EPOCH)


# -- finance's results and the clock ------------------------------------------------------------
def on_payout_result(ledger: Ledger, result: PayoutResult, now: datetime) -> Decision:
    """Finance's answer for the current attempt: PAID, or PAYOUT_FAILED with its reason (the
    friend's reward records it without a status)."""
    entry = ledger.find_payout(result.payout_id)
    if entry is None:
        message = f"no reward with payout {result.payout_id}"
        return _ignored(ledger, Outcome.UNKNOWN_PAYOUT, message)
    friend = entry.friend if entry.friend and entry.friend.payout_id == result.payout_id else None
    state, attempt = (friend.state, friend.attempt) if friend else (entry.state, entry.attempt)
    if result.attempt != attempt:
        message = f"result for attempt {result.attempt}, current attempt is {attempt}"
        return _ignored(ledger, Outcome.STALE_ATTEMPT, message)
    if state is State.CLAWED_BACK:
        message = f"payout {result.payout_id} was clawed back; its {result.status} is recorded only"
        return _ignored(ledger, Outcome.AFTER_CLAWBACK, message)
    if state is not State.REWARDED:
        message = f"payout {result.payout_id} is already {describe(entry, result.payout_id)}"
        return _ignored(ledger, Outcome.ALREADY_SETTLED, message)
    paid = result.status is PayoutStatus.PAID
    reason = None if paid else (result.reason or UNSPECIFIED_FAILURE)
    new_state = State.PAID if paid else State.FAILED
    if friend is not None:
        entry = replace(entry, friend=replace(friend, state=new_state, reason=reason))
        return Decision(ledger.put(entry))
    entry = replace(entry, state=new_state, reason=reason)
    if paid:
        return Decision(ledger.put(entry), (status(ledger, entry, ReferralStatus.PAID, now),))
    failed = status(ledger, entry, ReferralStatus.PAYOUT_FAILED, now, reason)
    return Decision(ledger.put(entry), (failed,))


def settles(ledger: Ledger, result: PayoutResult) -> bool:
    """Whether `result` is (or repeats) the PAID of the payout's current attempt: once it is
    applied the payout is settled for good, and no later result or command changes it (a
    result is ALREADY_SETTLED or STALE_ATTEMPT, an approval, denial or retry is refused)."""
    entry = ledger.find_payout(result.payout_id)
    if entry is None or result.status is not PayoutStatus.PAID:
        return False
    friend = entry.friend if entry.friend and entry.friend.payout_id == result.payout_id else None
    state, attempt = (friend.state, friend.attempt) if friend else (entry.state, entry.attempt)
    return result.attempt == attempt and state in (State.REWARDED, State.PAID)


def on_tick(ledger: Ledger, now: datetime) -> Decision:
    """Releases every PENDING reward (the advocate's or a friend's) whose due time (WON
    occurred_at + hold_days) has passed."""
    outputs: list[Output] = []
    now_ms = to_ms(now)
    for entry in ledger.entries:
        if entry.due_at > now_ms:
            continue
        emitted: list[Output] = []
        if entry.state is State.PENDING:
            entry, emitted = issue(ledger, entry, now)
        if entry.friend is not None and entry.friend.state is State.PENDING:
            entry, more = issue_friend(ledger, entry, now)
            emitted += more
        if emitted:
            ledger = ledger.put(entry)
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
