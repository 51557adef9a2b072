"""A program's recorded inputs through the services' pure cores with another document, in memory.

Nothing here reads a clock or a topic: `replay(history, program, now)` is a function of the
recorded history (`history`, read by `read`), the document to try (`program`) and one instant
(`now`). It calls the same cores the services call (attribution's `referral` commands, rewards'
`decide`), with rules built by the same translations (`rules_for` of each service), and returns
what the services would have written: every status and every payout command.

How the services are mirrored, and where a replay must choose (the services run concurrently):
- Attribution, in the order the inputs were written (`History.arrivals`: each partition in
  offset order, partitions merged by record timestamp). Shares and profiles fill the directory
  and wake, at once, the referrals waiting for them (the service wakes them at its next
  punctuation); conversions and deals move stream time, and when it enters a new hour every
  referral past its deadline is expired, as the service's table does per partition (here over
  all of the program's conversions and deals).
- Rewards, per advocate, in the order the rewards service read its inputs: a WON or REVERSED
  the services recorded (of the same referral and advocate: the rewards service takes one of
  each per referral) at the recorded status's position (its timestamp, never earlier than the
  one before it in its partition), a new one at the input that caused it; profiles (tax
  forms), operator commands and finance's results at their own record timestamps. So an
  advocate's ordinals follow the order the service counted them in.
- Operator commands and finance's results are replayed by payout_id (deterministic: program,
  referral, rule), on the ledger that holds that payout; one naming a payout the new document
  never creates changes nothing. A reward the new document holds for review that no recorded
  command decides stays held.
- Time: `now` is the wall clock of every decision (the services use theirs), so a reward is
  issued if it is due by `now` (WON occurred_at + hold_days) and stays pending otherwise.
- The document replaces every recorded version over the whole history: its `status` (PAUSED,
  ENDED) applies throughout, its version is the recorded newest plus one.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime

from referrals.contract.records import (
    AdvocateProfile,
    ConversionEvent,
    DealEvent,
    OperatorCommand,
    PayoutCommand,
    PayoutResult,
    ReferralStatus,
    ReferralStatusChanged,
    ShareEvent,
)
from referrals.programs.catalog import Program
from services.attribution.adapters.keys import WaitKey, advocate_wait, code_wait, email_wait
from services.attribution.adapters.keys import wait_keys as waits_to_keys
from services.attribution.adapters.program_rules import rules_for as attribution_rules
from services.attribution.adapters.table import HORIZON_MS, entry_of
from services.attribution.domain.model import DictDirectory, Touch
from services.attribution.domain.referral import (
    expire,
    on_conversion,
    on_deal,
    on_dependency,
    waits_of,
)
from services.attribution.domain.state import ReferralState, Step, Waits, from_ms, to_ms
from services.rewards.adapters.processor import is_reward_input, reward_command
from services.rewards.adapters.program_rules import rules_for as reward_rules
from services.rewards.domain import decide
from services.rewards.domain.ledger import Ledger
from services.rewards.domain.outputs import Decision
from services.rewards.domain.rules import RewardRules


@dataclass(frozen=True, slots=True)
class Erased:
    """A tombstone on referral.advocates.v1: the advocate was erased (attribution then rejects
    new claims for them ADVOCATE_ERASED; rewards keeps what they had)."""

    advocate_id: str


Input = (
    AdvocateProfile
    | Erased
    | ShareEvent
    | ConversionEvent
    | DealEvent
    | OperatorCommand
    | PayoutResult
)
INPUT_TYPES = (
    AdvocateProfile,
    Erased,
    ShareEvent,
    ConversionEvent,
    DealEvent,
    OperatorCommand,
    PayoutResult,
)


@dataclass(frozen=True, slots=True)
class Arrival:
    """A recorded input and when it was written (its record timestamp, ms)."""

    at_ms: int
    record: Input


@dataclass(frozen=True, slots=True)
class History:
    """What the topics recorded about one program, in the order the services read it.

    `arrivals`: the inputs, each partition in offset order. `statuses`: referral.status.v1's
    records of the program with the time the rewards service could read each (its timestamp,
    raised to the one before it in its partition). `payouts`: rewards.payouts.v2 (or v1 where
    v2 holds nothing of the program). `version`: the newest version put, 0 if none.
    """

    program_id: str
    arrivals: tuple[Arrival, ...] = ()
    statuses: tuple[tuple[int, ReferralStatusChanged], ...] = ()
    payouts: tuple[PayoutCommand, ...] = ()
    version: int = 0


@dataclass
class Replayed:
    """What the services would have written with the document: statuses (attribution's and
    rewards') and payout commands (every kind and recipient), in the replay's order."""

    statuses: list[ReferralStatusChanged] = field(default_factory=list)
    payouts: list[PayoutCommand] = field(default_factory=list)
    ledgers: dict[str, Ledger] = field(default_factory=dict)


def replay(history: History, program: Program, now: datetime) -> Replayed:
    """The statuses and payouts of `history` decided with `program` at `now` (module doc)."""
    attribution = _Attribution(program)
    caused = attribution.run(history.arrivals)
    rewards = _Rewards(reward_rules(program), now)
    rewards.run(_reward_inputs(history, caused))
    return Replayed(
        statuses=[s for _, s in caused] + rewards.statuses,
        payouts=rewards.payouts,
        ledgers=rewards.ledgers,
    )


# -- attribution --------------------------------------------------------------------------------
class _Attribution:
    """Attribution's adapter loop over one program, in memory (`services/attribution/adapters/
    processor.py` is the original): states by prospect, a wait index, deadlines, stream time."""

    def __init__(self, program: Program) -> None:
        self.program_id = program.program_id
        self.directory = DictDirectory([attribution_rules(program)])
        self.states: dict[str, ReferralState] = {}
        self.waiting: dict[WaitKey, set[str]] = {}
        self.deadlines: list[tuple[int, str]] = []  # (deadline ms, prospect): a lazy heap
        self.stream_ms = 0
        self.out: list[tuple[int, ReferralStatusChanged]] = []
        self.at_ms = 0

    def run(self, arrivals: Iterable[Arrival]) -> list[tuple[int, ReferralStatusChanged]]:
        """Every status attribution emits, with the time of the input that caused it."""
        for arrival in arrivals:
            self.at_ms = arrival.at_ms
            record = arrival.record
            if isinstance(record, AdvocateProfile):
                # Every program's profiles, as the service's directory: an advocate of another
                # program is known, and claims nothing here.
                self.directory.add_profile(record)
                self._wake([advocate_wait(record.advocate_id)])
            elif isinstance(record, Erased):
                self.directory.erase(record.advocate_id)
                self._wake([advocate_wait(record.advocate_id)])
            elif isinstance(record, ShareEvent) and record.program_id == self.program_id:
                if self.directory.add_touch(Touch.from_share(record)):
                    self._wake(_share_waits(record))
            elif (
                isinstance(record, ConversionEvent | DealEvent)
                and record.program_id == self.program_id
            ):
                self._event(record)
        return self.out

    def _event(self, event: ConversionEvent | DealEvent) -> None:
        self._advance(event.occurred_at)
        old = self.states.get(event.prospect_id)
        if isinstance(event, ConversionEvent):
            step = on_conversion(old, event, self.directory)
        else:
            step = on_deal(old, event, self.directory)
        self._apply(event.prospect_id, old, step)

    def _advance(self, occurred_at: datetime) -> None:
        """Stream time moves on; entering a new hour expires every referral due before it."""
        ms = to_ms(occurred_at)
        if ms <= self.stream_ms:
            return
        hour_before, self.stream_ms = self.stream_ms // HORIZON_MS, ms
        horizon = (ms // HORIZON_MS) * HORIZON_MS
        if ms // HORIZON_MS == hour_before:
            return
        due: set[str] = set()
        while self.deadlines and self.deadlines[0][0] < horizon:
            due.add(heapq.heappop(self.deadlines)[1])
        for prospect in sorted(due):
            old = self.states.get(prospect)
            entry = entry_of(old)
            if old is None or entry is None:
                continue
            if entry[0] >= horizon:  # moved on since: its current deadline is queued
                continue
            self._apply(prospect, old, expire(old, from_ms(horizon)))

    def _wake(self, keys: list[WaitKey]) -> None:
        woken = sorted({p for key in keys for p in self.waiting.get(key, ())})
        for prospect in woken:
            old = self.states[prospect]
            self._apply(prospect, old, on_dependency(old, self.directory))

    def _apply(self, prospect: str, old: ReferralState | None, step: Step) -> None:
        before = waits_to_keys(self.program_id, waits_of(old) if old is not None else Waits())
        after = waits_to_keys(self.program_id, step.waits)
        for key in before - after:
            refs = self.waiting[key]
            refs.discard(prospect)
            if not refs:
                del self.waiting[key]
        for key in after - before:
            self.waiting.setdefault(key, set()).add(prospect)
        if step.state is None:
            self.states.pop(prospect, None)
        else:
            self.states[prospect] = step.state
            entry = entry_of(step.state)
            if entry is not None and entry != entry_of(old):
                heapq.heappush(self.deadlines, (entry[0], prospect))
        self.out += [(self.at_ms, status) for status in step.outputs]


def _share_waits(share: ShareEvent) -> list[WaitKey]:
    keys = [code_wait(share.program_id, share.referral_code)]
    if share.prospect_email_sha256 is not None:
        keys.append(email_wait(share.program_id, share.prospect_email_sha256))
    return keys


# -- rewards ------------------------------------------------------------------------------------
RewardInput = ReferralStatusChanged | AdvocateProfile | OperatorCommand | PayoutResult


def _reward_inputs(
    history: History, caused: list[tuple[int, ReferralStatusChanged]]
) -> Iterator[RewardInput]:
    """The rewards service's inputs in the order it read them (module doc): a status at its
    recorded position when the services recorded it, else at the input that caused it."""
    recorded: dict[tuple[str, str, ReferralStatus], tuple[int, int]] = {}
    for index, (at_ms, status) in enumerate(history.statuses):
        if is_reward_input(status):
            recorded.setdefault(_reward_key(status), (at_ms, index))
    # (time, 0 recorded status | 1 new status | 2 other input, index in its list, input)
    keyed: list[tuple[int, int, int, RewardInput]] = []
    for index, (at_ms, status) in enumerate(caused):
        if not is_reward_input(status):
            continue
        found = recorded.get(_reward_key(status))
        keyed.append((found[0], 0, found[1], status) if found else (at_ms, 1, index, status))
    for index, arrival in enumerate(history.arrivals):
        record = arrival.record
        if isinstance(record, AdvocateProfile | OperatorCommand | PayoutResult):
            keyed.append((arrival.at_ms, 2, index, record))
    keyed.sort(key=lambda item: item[:3])
    return (item[3] for item in keyed)


def _reward_key(status: ReferralStatusChanged) -> tuple[str, str, ReferralStatus]:
    """What the rewards service keys a WON or REVERSED by: one of each per referral counts (a
    second WON of a referral is a duplicate to it), whatever attribution's status_id."""
    return (status.referral_id, status.advocate_id, status.status)


class _Rewards:
    """The rewards service's ledger side over one program, in memory (`services/rewards/
    adapters/ledgers.py` is the original): ledgers by advocate, payouts by owner."""

    def __init__(self, rules: RewardRules, now: datetime) -> None:
        self.rules = rules
        self.now = now
        self.ledgers: dict[str, Ledger] = {}
        self.owners: dict[str, str] = {}  # payout_id -> advocate_id
        self.statuses: list[ReferralStatusChanged] = []
        self.payouts: list[PayoutCommand] = []

    def run(self, inputs: Iterable[RewardInput]) -> None:
        for record in inputs:
            if isinstance(record, ReferralStatusChanged):
                self._status(record)
            elif isinstance(record, AdvocateProfile):
                if record.program_id == self.rules.program_id:
                    self._profile(record)
            elif isinstance(record, OperatorCommand):
                self._command(record)
            else:
                self._result(record)
        for advocate_id in sorted(self.ledgers):
            self._decide(advocate_id, lambda book: decide.on_tick(book, self.now))

    def _status(self, status: ReferralStatusChanged) -> None:
        rules, now = self.rules, self.now
        if status.status is ReferralStatus.WON:
            self._decide(status.advocate_id, lambda book: decide.on_won(book, rules, status, now))
        else:
            self._decide(
                status.advocate_id,
                lambda book: decide.on_reversed(book, status, now, clawback_on=rules.clawback),
            )

    def _profile(self, profile: AdvocateProfile) -> None:
        now = self.now
        self._decide(profile.advocate_id, lambda book: decide.on_profile(book, profile, now))

    def _command(self, command: OperatorCommand) -> None:
        owner = self.owners.get(command.target_id)
        if owner is None:
            return  # a payout this document never creates: the service refuses it, UNKNOWN
        routed = replace(reward_command(command), advocate_id=owner)
        self._decide(owner, lambda book: decide.on_command(book, self.rules, routed, self.now))

    def _result(self, result: PayoutResult) -> None:
        owner = self.owners.get(result.payout_id)
        if owner is not None:
            self._decide(owner, lambda book: decide.on_payout_result(book, result, self.now))

    def _decide(self, advocate_id: str, command: Callable[[Ledger], Decision]) -> None:
        """Runs one core command on the advocate's ledger; keeps what it decided."""
        before = self.ledgers.get(advocate_id) or decide.new_ledger(
            self.rules.program_id, advocate_id
        )
        decision = command(before)
        if not decision.changed:
            return
        after = decision.ledger
        self.ledgers[advocate_id] = after
        for entry in after.entries:
            self.owners[entry.payout_id] = advocate_id
            if entry.friend is not None:
                self.owners[entry.friend.payout_id] = advocate_id
        for output in decision.outputs:
            if isinstance(output, PayoutCommand):
                self.payouts.append(output)
            else:
                self.statuses.append(output)
