"""Resolve one claim-bearing event against the directory: which advocates it claims for.

Within one event the strongest *valid* claim counts: the declared advocate, then the referral
code, then the prospect's email hash matching an EMAIL or LEAD_FORM share. A level whose
claimants are all invalid (unknown profile, self-referral, share outside the window) does not
stop the search, so a typo'd code or a not-yet-known declared advocate falls back to the next
level; when the stronger level becomes valid later, it replaces the weaker claims.

A code or email touch counts if the share is at most `window_days` older than the event
(exactly the window counts; one millisecond more is OUTSIDE_WINDOW). A share *after* the event
cannot have caused it: it is ignored (no claim, no rejection), except within CLOCK_SKEW, which
absorbs producers' clock differences. Several shares of one advocate: the one the policy picks
(FIRST_TOUCH the earliest, LAST_TOUCH the latest); several advocates are all claimants.

An erased advocate (`Advocate.erased`) is claimed for no more: a claim not already held is
REJECTED with ADVOCATE_ERASED (inside the window or not), so a referral naming the advocate
after the erasure, by code, email hash or declaration, is rejected. A claim the source held
before the erasure stays valid: referrals already made go on, their statuses carry only ids.

An event is resolved again whenever its referral is decided again (a deal months later), but
the directory forgets old shares (`adapters/directory`: touches past the longest window plus
a margin are pruned). So the touches behind the claims and rejections a source already holds
are remembered: each one the directory no longer returns (same advocate, time and channel)
is taken as if it were still there, and judged again by the same rules (window, profile).
While nothing is pruned every remembered touch is found in the directory, and this changes
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from referrals.contract.records import Channel, MatchedBy
from referrals.platform.evolve import replace
from services.attribution.domain.model import (
    EMAIL_MATCH_CHANNELS,
    Directory,
    Policy,
    Rules,
    Touch,
)
from services.attribution.domain.state import (
    MAX_CLAIMANTS,
    Claim,
    Reason,
    Rejection,
    Source,
    from_ms,
    to_ms,
)

# Producers stamp occurred_at with their own clocks; a share stamped up to an hour after the
# conversion it led to is skew, not a later share. Small next to any attribution window.
CLOCK_SKEW_MS = 3_600_000
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Context:
    program_id: str
    rules: Rules
    prospect_emails: frozenset[str]
    directory: Directory


@dataclass(slots=True)
class _Found:
    claims: list[Claim] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def resolve(source: Source, ctx: Context) -> Source:
    """The source with its claims, rejections and missing profiles as of `ctx.directory`."""
    found = _Found()
    if source.declared is not None:
        _declared(source, source.declared, ctx, found)
    if not found.claims and source.code is not None:
        touches = ctx.directory.touches_by_code(ctx.program_id, source.code)
        touches = _remembered(source, touches, MatchedBy.CODE, ctx.program_id)
        mine = (t for t in touches if t.referral_code == source.code)
        _by_touches(source, mine, MatchedBy.CODE, ctx, found)
    if not found.claims and source.email is not None:
        touches = ctx.directory.touches_by_email(ctx.program_id, source.email)
        touches = _remembered(source, touches, MatchedBy.EMAIL, ctx.program_id)
        mine = (
            t
            for t in touches
            if t.channel in EMAIL_MATCH_CHANNELS and t.prospect_email_sha256 == source.email
        )
        _by_touches(source, mine, MatchedBy.EMAIL, ctx, found)
    claims = tuple(sorted(found.claims, key=lambda c: c.rank(ctx.rules.policy))[:MAX_CLAIMANTS])
    rejections = tuple(_dedupe(found.rejections)[:MAX_CLAIMANTS])
    missing = tuple(sorted(set(found.missing)))
    if (claims, rejections, missing) == (source.claims, source.rejections, source.missing):
        return source  # unchanged (the usual case when decided again): no copy
    return replace(source, claims=claims, rejections=rejections, missing=missing)


def _remembered(
    source: Source, touches: Iterable[Touch], matched_by: MatchedBy, program_id: str
) -> list[Touch]:
    """`touches`, plus the touch of each claim or rejection of `source` at `matched_by` that
    they lack (pruned from the directory since)."""
    found = list(touches)
    have = {(t.advocate_id, to_ms(t.occurred_at), t.channel) for t in found}
    held = (*source.claims, *(r.claim for r in source.rejections))
    for claim in held:
        key = (claim.advocate_id, claim.touch_ms, claim.channel)
        if claim.matched_by is not matched_by or key in have:
            continue
        have.add(key)
        found.append(
            Touch(
                event_id="",
                program_id=program_id,
                advocate_id=claim.advocate_id,
                channel=claim.channel,
                referral_code=source.code or "",
                occurred_at=from_ms(claim.touch_ms),
                prospect_email_sha256=source.email if matched_by is MatchedBy.EMAIL else None,
            )
        )
    return found


def _declared(source: Source, advocate_id: str, ctx: Context, found: _Found) -> None:
    claim = Claim(
        advocate_id=advocate_id,
        matched_by=MatchedBy.DECLARED,
        channel=Channel.VERBAL,
        touch_ms=source.occurred_ms,
        source_id=source.event_id,
        source_ms=source.occurred_ms,
    )
    _admit(claim, source, ctx, found)


def _by_touches(
    source: Source, touches: Iterable[Touch], matched_by: MatchedBy, ctx: Context, found: _Found
) -> None:
    window_ms = ctx.rules.window_days * _DAY_MS
    by_advocate: dict[str, list[Touch]] = {}
    for touch in touches:
        if touch.program_id != ctx.program_id:
            continue
        if to_ms(touch.occurred_at) - source.occurred_ms > CLOCK_SKEW_MS:
            continue  # after the event: cannot have caused it
        by_advocate.setdefault(touch.advocate_id, []).append(touch)
    for advocate_id in sorted(by_advocate):
        candidates = by_advocate[advocate_id]
        inside = [t for t in candidates if source.occurred_ms - to_ms(t.occurred_at) <= window_ms]
        claim = _claim(source, _pick(inside or candidates, ctx), matched_by)
        if inside:
            _admit(claim, source, ctx, found)
        elif _erased(claim, source, ctx):
            found.rejections.append(Rejection(claim, Reason.ADVOCATE_ERASED))
        else:
            found.rejections.append(Rejection(claim, Reason.OUTSIDE_WINDOW))


def _pick(touches: list[Touch], ctx: Context) -> Touch:
    """The touch the policy would pick among one advocate's shares."""
    keyed = sorted(touches, key=lambda t: (to_ms(t.occurred_at), t.event_id))
    return keyed[0] if ctx.rules.policy is Policy.FIRST_TOUCH else keyed[-1]


def _claim(source: Source, touch: Touch, matched_by: MatchedBy) -> Claim:
    return Claim(
        advocate_id=touch.advocate_id,
        matched_by=matched_by,
        channel=touch.channel,
        touch_ms=to_ms(touch.occurred_at),
        source_id=source.event_id,
        source_ms=source.occurred_ms,
    )


def _admit(claim: Claim, source: Source, ctx: Context, found: _Found) -> None:
    """A claim in time is valid once its advocate's profile is known and is not the prospect;
    an erased advocate's is valid only if the source held it before the erasure."""
    advocate = ctx.directory.advocate(claim.advocate_id)
    if advocate is None:
        found.missing.append(claim.advocate_id)
    elif advocate.erased:
        if _held(claim, source):
            found.claims.append(claim)
        else:
            found.rejections.append(Rejection(claim, Reason.ADVOCATE_ERASED))
    elif advocate.program_id != ctx.program_id:
        return  # an advocate of another program cannot refer into this one
    elif advocate.email_sha256 in ctx.prospect_emails:
        found.rejections.append(Rejection(claim, Reason.SELF_REFERRAL))
    else:
        found.claims.append(claim)


def _held(claim: Claim, source: Source) -> bool:
    """Whether `source` already held a valid claim of this advocate (made before an erasure)."""
    return any(held.advocate_id == claim.advocate_id for held in source.claims)


def _erased(claim: Claim, source: Source, ctx: Context) -> bool:
    """An erased advocate whose claim the source did not hold before: ADVOCATE_ERASED."""
    advocate = ctx.directory.advocate(claim.advocate_id)
    return advocate is not None and advocate.erased and not _held(claim, source)


# Which rejection an advocate is told when one source rejects it for several reasons.
_PRECEDENCE = {Reason.ADVOCATE_ERASED: 0, Reason.SELF_REFERRAL: 1}


def _dedupe(rejections: list[Rejection]) -> list[Rejection]:
    """One rejection per advocate (ADVOCATE_ERASED over SELF_REFERRAL over OUTSIDE_WINDOW), in
    advocate order."""
    best: dict[str, Rejection] = {}
    for rejection in rejections:
        advocate_id = rejection.claim.advocate_id
        held = best.get(advocate_id)
        if held is None or _PRECEDENCE.get(rejection.reason, 9) < _PRECEDENCE.get(held.reason, 9):
            best[advocate_id] = rejection
    return [best[advocate_id] for advocate_id in sorted(best)]
