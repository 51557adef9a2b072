"""The attribution commands: each takes a referral's state and one input, returns a `Step`.

A referral is one prospect in one program. Conversions and deals (in order, per referral) are
folded into a `ReferralState`; every command then re-resolves the referral's claims against the
`Directory` (`resolve`), decides the winner from the whole set (`decide`) and emits only what
changed (`emit`). Nothing here reads a clock: `expire` gets the adapter's stream time.

Decisions where the contract is silent:
- Claims. Each conversion, and each deal naming a declared advocate, is a *source* of claims at
  its strongest valid level (see `resolve`: shares after the event beyond CLOCK_SKEW are ignored;
  a stronger level becomes valid later -> it replaces the weaker claims). Conflicts across
  sources are decided by the policy on touch time only (`decide`). Before WON a better claim takes
  the referral over: the previous winner gets one REJECTED ALREADY_REFERRED, the new one LEAD and
  the current deal statuses. A claim that becomes valid after the WON is told ALREADY_REFERRED.
- Waiting. Until its deadline (occurred_at + window, in stream time) a source waits for its
  code and email (more shares may add or move claimants, so resolved sources keep waiting too;
  after the WON a late claimant is still told ALREADY_REFERRED) and for missing profiles of its
  claimants. A deal waits for a winner until its own deadline. `expire` drops what never
  resolved and counts it; a referral with nothing said and nothing waiting is then forgotten.
- Arrival order. The winner is a function of the set of claims, so any order gives the same
  final attribution provided the WON deal comes after every claim and the shares and profiles
  they need (the contract: once WON, the advocate is final). A deal's own declared claim is
  decided in the same step, before its stage is shown.
- Self-referral compares the advocate's email hash with every prospect email hash seen in the
  referral's conversions; a referral made only by deals has none and is never self-referral.
  A self-referral found after a LEAD (a later conversion reveals the email) rejects the winner.
- Deals. A deal's stage is its latest by occurred_at (then stage order), so a late OPEN never
  undoes a WON. Statuses carry deal_id, amount_minor and currency. After a WON the referral
  follows that deal only; the other deals' stages are kept but not announced.
- occurred_at of a status is that of the event it is about: the claim's conversion or deal
  (LEAD, REJECTED) or the deal event (deal statuses), so a change triggered by an arriving share
  or profile is still stamped with event time. status_id hashes the same facts (`ids`).
- An advocate whose profile belongs to another program claims nothing.
- Program lifecycle. While the program version in force is ENDED, a referral with no advocate
  yet (no LEAD standing) is not created: each claimant with a valid claim is told REJECTED
  PROGRAM_ENDED once, and deals wait for a winner as usual (and are dropped at their deadline).
  A referral that has its advocate goes on as before (conflicts, deal statuses). PAUSED changes
  nothing here. Should the program become ACTIVE again, the next event or share of that
  referral decides it as usual (a LEAD for a claimant told PROGRAM_ENDED before).

Bounds (`state`): the last MAX_SEEN event ids (a forgotten duplicate re-applies as a no-op);
MAX_SOURCES sources and MAX_DEALS deals (more: counted and ignored); MAX_CLAIMANTS per source
(the policy's best); MAX_EMAILS prospect email hashes.

Counters: duplicates_ignored, conversions_without_claim, claims_over_limit, deals_over_limit,
matched_{code,email,declared},
rejected_{self_referral,already_referred,outside_window,program_ended},
conversions_unmatched_dropped, declared_unmatched_dropped, deals_unmatched_dropped.
"""

from __future__ import annotations

from datetime import datetime

from referrals.contract.records import ConversionEvent, DealEvent, DealStage, MatchedBy
from referrals.platform.evolve import replace
from services.attribution.domain.decide import decide
from services.attribution.domain.emit import Emitter
from services.attribution.domain.model import Directory
from services.attribution.domain.resolve import Context, resolve
from services.attribution.domain.state import (
    MAX_DEALS,
    MAX_EMAILS,
    MAX_SEEN,
    MAX_SOURCES,
    Deal,
    ReferralState,
    Source,
    Step,
    Waits,
    to_ms,
)

__all__ = [
    "expire",
    "new_state",
    "on_conversion",
    "on_deal",
    "on_dependency",
    "waits_of",
]

_DAY_MS = 86_400_000


def new_state(program_id: str, prospect_id: str) -> ReferralState:
    return ReferralState(program_id=program_id, prospect_id=prospect_id)


def on_conversion(
    state: ReferralState | None, conversion: ConversionEvent, directory: Directory
) -> Step:
    """A prospect converted, possibly naming a declared advocate, a code or an email hash."""
    state = _open(state, conversion.program_id, conversion.prospect_id)
    if _seen(state, conversion.event_id):
        return Step(state, waits=waits_of(state), counters={"duplicates_ignored": 1})
    at = to_ms(conversion.occurred_at)
    deadline = at + directory.rules(state.program_id).window_days * _DAY_MS
    state = _remember(state, conversion.event_id, deadline, conversion.prospect_email_sha256)
    source = Source(
        event_id=conversion.event_id,
        occurred_ms=at,
        deadline_ms=deadline,
        from_deal=False,
        declared=conversion.declared_advocate_id,
        code=conversion.referral_code,
        email=conversion.prospect_email_sha256,
    )
    counters: dict[str, int] = {}
    state = _add_source(state, source, counters)
    return _settle(state, directory, counters)


def on_deal(state: ReferralState | None, deal: DealEvent, directory: Directory) -> Step:
    """A deal of the prospect changed stage; naming a declared advocate, it also claims."""
    state = _open(state, deal.program_id, deal.prospect_id)
    if _seen(state, deal.event_id):
        return Step(state, waits=waits_of(state), counters={"duplicates_ignored": 1})
    at = to_ms(deal.occurred_at)
    deadline = at + directory.rules(state.program_id).window_days * _DAY_MS
    state = _remember(state, deal.event_id, deadline, None)
    counters: dict[str, int] = {}
    entry = Deal(
        deal_id=deal.deal_id,
        event_id=deal.event_id,
        stage=deal.stage,
        occurred_ms=at,
        deadline_ms=deadline,
        amount_minor=deal.amount_minor,
        currency=deal.currency,
    )
    state = _add_deal(state, entry, counters)
    if deal.declared_advocate_id is not None:
        source = Source(deal.event_id, at, deadline, True, declared=deal.declared_advocate_id)
        state = _add_source(state, source, counters)
    return _settle(state, directory, counters)


def on_dependency(state: ReferralState, directory: Directory) -> Step:
    """Something the referral waited for (a share, a profile) arrived: decide again."""
    return _settle(state, directory, {})


def expire(state: ReferralState, stream_time: datetime) -> Step:
    """Stop waiting past each deadline: drop what never matched (counted), close the rest.

    Returns `Step(None)` when nothing is left to remember (never announced, nothing waiting).
    """
    now = to_ms(stream_time)
    counters: dict[str, int] = {}
    sources: list[Source] = []
    for source in state.sources:
        if source.closed or source.deadline_ms >= now:
            sources.append(source)
        elif source.resolved:
            sources.append(replace(source, closed=True))
        else:
            kind = "declared" if source.from_deal else "conversions"
            _count(counters, f"{kind}_unmatched_dropped")
    deals = state.deals
    if state.winner is None:
        deals = tuple(d for d in deals if d.deadline_ms >= now)
        if len(deals) < len(state.deals):
            _count(counters, "deals_unmatched_dropped", len(state.deals) - len(deals))
    state = replace(state, sources=tuple(sources), deals=deals)
    if state.dormant and state.deadline_ms < now:
        return Step(None, counters=counters)
    return Step(state, waits=waits_of(state), counters=counters)


def waits_of(state: ReferralState) -> Waits:
    """Codes, email hashes and advocate profiles whose arrival may change this referral."""
    codes: set[str] = set()
    emails: set[str] = set()
    advocates: set[str] = set()
    for source in state.sources:
        if source.closed:
            continue
        advocates.update(source.missing)
        if source.code is not None and source.level is not MatchedBy.DECLARED:
            codes.add(source.code)
        if source.email is not None and source.level in (None, MatchedBy.EMAIL):
            emails.add(source.email)
    return Waits(frozenset(codes), frozenset(emails), frozenset(advocates))


def _settle(state: ReferralState, directory: Directory, counters: dict[str, int]) -> Step:
    rules = directory.rules(state.program_id)
    ctx = Context(state.program_id, rules, frozenset(state.emails), directory)
    sources = tuple(resolve(s, ctx) for s in state.sources)
    if any(new is not old for new, old in zip(sources, state.sources, strict=True)):
        state = replace(state, sources=sources)
    frozen = state.winner if state.final else None
    # Ended: no new referral; one that has its advocate already goes on.
    view = decide(state.sources, rules.policy, frozen, ended=rules.ended and state.winner is None)
    emitter = Emitter(directory, rules.version, counters=counters)
    state = emitter.publish(state, view)
    return Step(state, emitter.outputs, waits_of(state), emitter.counters)


def _open(state: ReferralState | None, program_id: str, prospect_id: str) -> ReferralState:
    if state is None:
        return new_state(program_id, prospect_id)
    if (state.program_id, state.prospect_id) != (program_id, prospect_id):
        raise ValueError(
            f"event of {program_id}/{prospect_id} routed to {state.program_id}/{state.prospect_id}"
        )
    return state


def _seen(state: ReferralState, event_id: str) -> bool:
    return (
        event_id in state.seen
        or any(s.event_id == event_id for s in state.sources)
        or any(d.event_id == event_id for d in state.deals)
    )


def _remember(
    state: ReferralState, event_id: str, deadline_ms: int, email: str | None
) -> ReferralState:
    emails = state.emails
    if email is not None and email not in emails and len(emails) < MAX_EMAILS:
        emails = (*emails, email)
    return replace(
        state,
        seen=(*state.seen, event_id)[-MAX_SEEN:],
        emails=emails,
        deadline_ms=max(state.deadline_ms, deadline_ms),
    )


def _add_source(state: ReferralState, source: Source, counters: dict[str, int]) -> ReferralState:
    if source.declared is None and source.code is None and source.email is None:
        _count(counters, "conversions_without_claim")
        return state
    if len(state.sources) >= MAX_SOURCES:
        _count(counters, "claims_over_limit")
        return state
    return replace(state, sources=(*state.sources, source))


def _add_deal(state: ReferralState, deal: Deal, counters: dict[str, int]) -> ReferralState:
    held = next((d for d in state.deals if d.deal_id == deal.deal_id), None)
    if held is None and len(state.deals) >= MAX_DEALS:
        _count(counters, "deals_over_limit")
        return state
    if held is not None and held.order() >= deal.order():
        return state  # an older stage arriving late changes nothing
    if deal.stage is DealStage.WON:
        deal = replace(deal, won_event_id=deal.event_id, won_ms=deal.occurred_ms)
    elif held is not None and held.won_event_id is not None:
        deal = replace(deal, won_event_id=held.won_event_id, won_ms=held.won_ms)
    others = tuple(d for d in state.deals if d.deal_id != deal.deal_id)
    return replace(state, deals=(*others, deal))


def _count(counters: dict[str, int], name: str, by: int = 1) -> None:
    counters[name] = counters.get(name, 0) + by
