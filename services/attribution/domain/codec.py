"""`ReferralState` <-> bytes for the adapter's store: compact positional JSON, versioned.

Equal states give equal bytes (the encoding is canonical), so a changelog can skip no-op writes.
Anything malformed raises `ValueError`: a corrupt store is a bug to surface, never to guess.
"""

from __future__ import annotations

import json
from typing import Any

from referrals.contract.records import Channel, DealStage, MatchedBy, ReferralStatus
from referrals.platform.jsonvalues import integer, optional_text, text
from services.attribution.domain.state import (
    Claim,
    Deal,
    Reason,
    ReferralState,
    Rejection,
    Source,
)

FORMAT_VERSION = 1


def to_bytes(state: ReferralState) -> bytes:
    body = [
        FORMAT_VERSION,
        state.program_id,
        state.prospect_id,
        list(state.seen),
        list(state.emails),
        [_source(s) for s in state.sources],
        [_deal(d) for d in state.deals],
        _claim(state.winner) if state.winner is not None else None,
        [[deal_id, status.value] for deal_id, status in state.shown],
        [[advocate_id, reason.value] for advocate_id, reason in state.rejected],
        state.leads,
        state.credited_deal,
        state.deadline_ms,
    ]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def from_bytes(data: bytes) -> ReferralState:
    try:
        body = json.loads(data)
        if body[0] != FORMAT_VERSION:
            raise ValueError(f"unknown referral state format {body[0]!r}")
        (_, program_id, prospect_id, seen, emails, sources, deals, winner) = body[:8]
        (shown, rejected, leads, credited_deal, deadline_ms) = body[8:]
        return ReferralState(
            program_id=text(program_id),
            prospect_id=text(prospect_id),
            seen=tuple(text(e) for e in seen),
            emails=tuple(text(e) for e in emails),
            sources=tuple(_source_from(s) for s in sources),
            deals=tuple(_deal_from(d) for d in deals),
            winner=_claim_from(winner) if winner is not None else None,
            shown=tuple((text(d), ReferralStatus(s)) for d, s in shown),
            rejected=tuple((text(a), Reason(r)) for a, r in rejected),
            leads=integer(leads),
            credited_deal=optional_text(credited_deal),
            deadline_ms=integer(deadline_ms),
        )
    except (ValueError, TypeError, IndexError, KeyError) as err:
        raise ValueError(f"corrupt referral state: {err}") from err


def _claim(c: Claim) -> list[Any]:
    kind = [c.matched_by.value, c.channel.value]
    return [c.advocate_id, *kind, c.touch_ms, c.source_id, c.source_ms]


def _claim_from(raw: Any) -> Claim:
    advocate_id, matched_by, channel, touch_ms, source_id, source_ms = raw
    return Claim(
        text(advocate_id),
        MatchedBy(matched_by),
        Channel(channel),
        integer(touch_ms),
        text(source_id),
        integer(source_ms),
    )


def _source(s: Source) -> list[Any]:
    return [
        s.event_id,
        s.occurred_ms,
        s.deadline_ms,
        int(s.from_deal),
        s.declared,
        s.code,
        s.email,
        [_claim(c) for c in s.claims],
        [[_claim(r.claim), r.reason.value] for r in s.rejections],
        list(s.missing),
        int(s.closed),
    ]


def _source_from(raw: Any) -> Source:
    event_id, occurred_ms, deadline_ms, from_deal, declared, code, email = raw[:7]
    claims, rejections, missing, closed = raw[7:]
    return Source(
        event_id=text(event_id),
        occurred_ms=integer(occurred_ms),
        deadline_ms=integer(deadline_ms),
        from_deal=bool(from_deal),
        declared=optional_text(declared),
        code=optional_text(code),
        email=optional_text(email),
        claims=tuple(_claim_from(c) for c in claims),
        rejections=tuple(Rejection(_claim_from(c), Reason(r)) for c, r in rejections),
        missing=tuple(text(m) for m in missing),
        closed=bool(closed),
    )


def _deal(d: Deal) -> list[Any]:
    return [
        d.deal_id,
        d.event_id,
        d.stage.value,
        d.occurred_ms,
        d.deadline_ms,
        d.amount_minor,
        d.currency,
    ]


def _deal_from(raw: Any) -> Deal:
    deal_id, event_id, stage, occurred_ms, deadline_ms, amount_minor, currency = raw
    return Deal(
        deal_id=text(deal_id),
        event_id=text(event_id),
        stage=DealStage(stage),
        occurred_ms=integer(occurred_ms),
        deadline_ms=integer(deadline_ms),
        amount_minor=None if amount_minor is None else integer(amount_minor),
        currency=optional_text(currency),
    )
