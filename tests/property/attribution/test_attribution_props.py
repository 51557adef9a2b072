"""Properties of the attribution core over any arrival order of one referral's events.

Conversions, deals, shares and profiles of one prospect, delivered in any order with duplicates
mixed in, through the reference adapter loop (`InMemoryAttribution`: shares and profiles go to
the directory and wake the referral only if it waits for them). As long as the WON deal comes
after every claim (the claiming events and the shares and profiles they need), the final
attribution is the same. In every order: after each event the referral is settled (what it
waits for covers everything whose arrival would change it), at most one advocate is ever
credited, and duplicates, persisting the state and replaying change nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    ReferralStatus,
    ReferralStatusChanged,
    ShareEvent,
)
from services.attribution.adapters.codec import REFERRALS
from services.attribution.domain.memory import InMemoryAttribution
from services.attribution.domain.model import EMAIL_MATCH_CHANNELS, DictDirectory, Policy, Rules
from services.attribution.domain.referral import on_dependency
from services.attribution.domain.state import ReferralState

PROGRAM = "acme-b2b"
PROSPECT = "prospect-1"
PROSPECT_EMAIL = "e" * 64
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ADVOCATES = ("adv-a", "adv-b", "adv-c")
Event = ConversionEvent | DealEvent | ShareEvent | AdvocateProfile


@dataclass(frozen=True)
class Scenario:
    policy: Policy
    known_profiles: tuple[AdvocateProfile, ...]  # in the directory before anything happens
    claims: tuple[Event, ...]  # claiming events and the shares / profiles they need
    stages: tuple[DealEvent, ...]  # OPEN / QUALIFIED of the deal, occurring before its WON
    won: DealEvent


def _profile(advocate_id: str, email_sha256: str) -> AdvocateProfile:
    return AdvocateProfile(
        program_id=PROGRAM,
        advocate_id=advocate_id,
        email=f"{advocate_id}@example.com",
        display_name=advocate_id,
        email_sha256=email_sha256,
        opted_out=False,
        tax_form_on_file=False,
        updated_at=T0,
        owner_rep_id=f"rep-of-{advocate_id}",
    )


@st.composite
def shares_of(draw: st.DrawFn, advocate_id: str) -> list[ShareEvent]:
    found = []
    for n in range(draw(st.integers(0, 3))):
        channel = draw(st.sampled_from(list(Channel)))
        to_prospect = channel in EMAIL_MATCH_CHANNELS and draw(st.booleans())
        found.append(
            ShareEvent(
                event_id=f"sh-{advocate_id}-{n}",
                program_id=PROGRAM,
                advocate_id=advocate_id,
                channel=channel,
                referral_code=f"CODE-{advocate_id}",
                # Up to 150 days back: some shares are outside the 90-day window.
                occurred_at=T0 - timedelta(hours=draw(st.integers(0, 150 * 24))),
                prospect_email_sha256=PROSPECT_EMAIL if to_prospect else None,
            )
        )
    return found


@st.composite
def conversions(draw: st.DrawFn) -> list[ConversionEvent]:
    names = [*ADVOCATES, "adv-nobody"]
    advocate = st.sampled_from(names)
    # Mostly no declared advocate: it would win every conflict it is in and hide the others.
    declared = st.sampled_from([None] * 8 + names)
    found = []
    for n in range(draw(st.integers(1, 3))):
        code = draw(st.none() | advocate.map(lambda a: f"CODE-{a}"))
        found.append(
            ConversionEvent(
                event_id=f"cv-{n}",
                program_id=PROGRAM,
                prospect_id=PROSPECT,
                occurred_at=T0 + timedelta(hours=n),
                referral_code=code,
                prospect_email_sha256=draw(st.none() | st.just(PROSPECT_EMAIL)),
                declared_advocate_id=draw(declared),
            )
        )
    return found


def _deal(event_id: str, stage: DealStage, days: int, declared: str | None = None) -> DealEvent:
    return DealEvent(
        event_id=event_id,
        program_id=PROGRAM,
        deal_id="deal-1",
        prospect_id=PROSPECT,
        stage=stage,
        occurred_at=T0 + timedelta(days=days),
        amount_minor=100_000,
        currency="USD",
        declared_advocate_id=declared,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    claims: list[Event] = list(draw(conversions()))
    known: list[AdvocateProfile] = []
    for advocate_id in ADVOCATES:
        claims += draw(shares_of(advocate_id))
        is_prospect = draw(st.integers(0, 5)) == 0  # sometimes a self-referral
        profile = _profile(advocate_id, PROSPECT_EMAIL if is_prospect else f"{advocate_id:>064}")
        (claims if draw(st.booleans()) else known).append(profile)
    declared = draw(st.sampled_from([None] * 6 + list(ADVOCATES)))
    if declared is not None:
        claims.append(_deal("dl-declared", DealStage.OPEN, 1, declared))
    stages = (_deal("dl-open", DealStage.OPEN, 2), _deal("dl-qualified", DealStage.QUALIFIED, 3))
    won = _deal("dl-won", DealStage.WON, 10)
    return Scenario(draw(st.sampled_from(Policy)), tuple(known), tuple(claims), stages, won)


@st.composite
def orders(draw: st.DrawFn, scenario: Scenario, won_last: bool = True) -> list[Event]:
    """A permutation of the scenario's events, WON after every claim, duplicates mixed in."""
    order: list[Event] = draw(st.permutations([*scenario.claims, *scenario.stages]))
    after_claims = max(i for i, e in enumerate(order) if e in scenario.claims) + 1
    low = after_claims if won_last else 0
    order.insert(draw(st.integers(low, len(order))), scenario.won)
    for _ in range(draw(st.integers(0, 4))):
        original = draw(st.integers(0, len(order) - 1))
        order.insert(draw(st.integers(original + 1, len(order))), order[original])
    return order


def _stored(state: ReferralState) -> ReferralState:
    """What the adapter's store gives back: its codec's encode, then decode."""
    return REFERRALS.decode(REFERRALS.encode(state))


def run(
    scenario: Scenario,
    order: Sequence[Event],
    *,
    persist: bool = True,
    check_waits: bool = False,
) -> InMemoryAttribution:
    rules = Rules(PROGRAM, version=3, policy=scenario.policy)
    directory = DictDirectory(rules=[rules])
    for profile in scenario.known_profiles:
        directory.add_profile(profile)
    engine = InMemoryAttribution(directory, persist=_stored if persist else None)
    for event in order:
        if isinstance(event, ConversionEvent):
            engine.conversion(event)
        elif isinstance(event, DealEvent):
            engine.deal(event)
        elif isinstance(event, ShareEvent):
            engine.share(event)
        else:
            engine.profile(event)
        if check_waits:
            assert_settled(engine)
    return engine


def assert_settled(engine: InMemoryAttribution) -> None:
    """Re-deciding now says nothing new: the referral waited for everything that mattered."""
    state = engine.state((PROGRAM, PROSPECT))
    if state is not None:
        assert on_dependency(state, engine.directory).outputs == []


def canonical(scenario: Scenario) -> list[Event]:
    """Everything known first, then the events in time order: the easy case."""
    directory_first = sorted(
        scenario.claims, key=lambda e: isinstance(e, ConversionEvent | DealEvent)
    )
    return [*directory_first, *scenario.stages, scenario.won]


def attribution(outputs: Sequence[ReferralStatusChanged]) -> tuple[set[str], dict[str, str]]:
    """Who was credited, and each credited advocate's last status."""
    credited = {o.advocate_id for o in outputs if o.status is ReferralStatus.WON}
    last = {o.advocate_id: o.status.value for o in outputs}
    return credited, {a: last[a] for a in credited}


def assert_consistent(outputs: Sequence[ReferralStatusChanged]) -> None:
    credited = {o.advocate_id for o in outputs if o.status is ReferralStatus.WON}
    assert len(credited) <= 1, f"credited {credited}"
    last: dict[str, ReferralStatusChanged] = {o.advocate_id: o for o in outputs}
    told = Counter((o.advocate_id, o.status, o.reason) for o in outputs)
    for advocate_id, record in last.items():
        if advocate_id not in credited and record.status is not ReferralStatus.LEAD:
            assert record.status is ReferralStatus.REJECTED, record
        leads = told[(advocate_id, ReferralStatus.LEAD, None)]
        for reason in ("ALREADY_REFERRED", "SELF_REFERRAL", "OUTSIDE_WINDOW"):
            assert told[(advocate_id, ReferralStatus.REJECTED, reason)] <= leads + 1
    assert len({o.status_id for o in outputs}) == len(outputs)
    assert {o.config_version for o in outputs} <= {3}


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_order_with_won_after_every_claim_gives_the_same_final_attribution(
    data: st.DataObject,
) -> None:
    scenario = data.draw(scenarios())
    expected = attribution(run(scenario, canonical(scenario)).outputs)
    order = data.draw(orders(scenario))
    outputs = run(scenario, order, check_waits=True).outputs
    assert attribution(outputs) == expected
    assert_consistent(outputs)
    # Non-credited advocates that still hold a LEAD are possible only without a WON at all.
    if expected[0]:
        last = {o.advocate_id: o.status for o in outputs}
        assert [a for a, s in last.items() if s is ReferralStatus.LEAD] == []


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_in_every_order_at_most_one_advocate_is_ever_credited(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    outputs = run(scenario, data.draw(orders(scenario, won_last=False)), check_waits=True).outputs
    assert_consistent(outputs)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_duplicates_persisting_and_replay_change_nothing(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    order = data.draw(orders(scenario, won_last=data.draw(st.booleans())))
    first_seen: list[Event] = []
    for event in order:
        if event not in first_seen:
            first_seen.append(event)
    reference = run(scenario, order, persist=False).outputs
    assert run(scenario, order).outputs == reference  # state through bytes at every step
    assert run(scenario, order).outputs == reference  # replay: same records, same status ids
    assert run(scenario, first_seen).outputs == reference  # duplicates add nothing
