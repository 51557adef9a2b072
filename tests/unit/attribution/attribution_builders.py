"""Builders shared by the attribution core's unit tests (a plain module: no fixtures, no magic)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    ReferralStatusChanged,
    ShareEvent,
)
from services.attribution.adapters.codec import REFERRALS
from services.attribution.domain.memory import InMemoryAttribution
from services.attribution.domain.model import Advocate, DictDirectory, Policy, Rules
from services.attribution.domain.state import ReferralState

PROGRAM = "acme-b2b"
PROSPECT = "prospect-1"
KEY = (PROGRAM, PROSPECT)
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)
ADVOCATES = ("adv-a", "adv-b", "adv-c")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


PROSPECT_EMAIL = sha("prospect@example.com")


def rules(**changes: Any) -> Rules:
    return replace(Rules(program_id=PROGRAM, version=7), **changes)


def advocate(advocate_id: str, **changes: Any) -> Advocate:
    base = Advocate(
        advocate_id=advocate_id,
        program_id=PROGRAM,
        email_sha256=sha(f"{advocate_id}@example.com"),
        owner_rep_id=f"rep-of-{advocate_id}",
    )
    return replace(base, **changes)


def profile(advocate_id: str, **changes: Any) -> AdvocateProfile:
    base = AdvocateProfile(
        program_id=PROGRAM,
        advocate_id=advocate_id,
        email=f"{advocate_id}@example.com",
        display_name=advocate_id,
        email_sha256=sha(f"{advocate_id}@example.com"),
        opted_out=False,
        tax_form_on_file=False,
        updated_at=T0 - 365 * DAY,
        owner_rep_id=f"rep-of-{advocate_id}",
    )
    return replace(base, **changes)


def code_of(advocate_id: str) -> str:
    return f"CODE-{advocate_id.upper()}"


def share(
    event_id: str,
    advocate_id: str,
    *,
    channel: Channel = Channel.SHARE_URL,
    at: datetime = T0 - DAY,
    email: str | None = None,
    code: str | None = None,
) -> ShareEvent:
    return ShareEvent(
        event_id=event_id,
        program_id=PROGRAM,
        advocate_id=advocate_id,
        channel=channel,
        referral_code=code or code_of(advocate_id),
        occurred_at=at,
        prospect_email_sha256=email,
    )


def conversion(
    event_id: str = "cv-1",
    *,
    at: datetime = T0,
    code: str | None = None,
    email: str | None = None,
    declared: str | None = None,
    prospect: str = PROSPECT,
) -> ConversionEvent:
    return ConversionEvent(
        event_id=event_id,
        program_id=PROGRAM,
        prospect_id=prospect,
        occurred_at=at,
        referral_code=code,
        prospect_email_sha256=email,
        declared_advocate_id=declared,
    )


def deal(
    event_id: str,
    stage: DealStage,
    *,
    deal_id: str = "deal-1",
    at: datetime = T0 + DAY,
    amount_minor: int | None = 125_000,
    currency: str | None = "USD",
    declared: str | None = None,
) -> DealEvent:
    return DealEvent(
        event_id=event_id,
        program_id=PROGRAM,
        deal_id=deal_id,
        prospect_id=PROSPECT,
        stage=stage,
        occurred_at=at,
        amount_minor=amount_minor,
        currency=currency,
        declared_advocate_id=declared,
    )


def directory(
    *,
    advocates: Iterable[str] = ADVOCATES,
    shares: Iterable[ShareEvent] = (),
    policy: Policy = Policy.FIRST_TOUCH,
    window_days: int = 90,
) -> DictDirectory:
    found = DictDirectory(
        rules=[rules(policy=policy, window_days=window_days)],
        advocates=[advocate(a) for a in advocates],
    )
    for event in shares:
        found.add_share(event)
    return found


def stored(state: ReferralState) -> ReferralState:
    """What the adapter's store gives back for `state`: its codec's encode, then decode."""
    return REFERRALS.decode(REFERRALS.encode(state))


def engine(**kwargs: Any) -> InMemoryAttribution:
    """A referral engine over `directory(**kwargs)`, persisting state as bytes at every step."""
    return InMemoryAttribution(directory(**kwargs), persist=stored)


def busy_engine(*, persist: bool = True) -> InMemoryAttribution:
    """A referral with every kind of state: claims, rejections, waits, deals, a WON."""
    shares = [
        share("sh-a", "adv-a", at=T0 - 3 * DAY),
        share("sh-b", "adv-b", channel=Channel.EMAIL, email=PROSPECT_EMAIL, at=T0 - DAY),
        share("sh-c", "adv-c", at=T0 - 300 * DAY),
    ]
    engine_ = InMemoryAttribution(directory(shares=shares), persist=stored if persist else None)
    engine_.conversion(conversion("cv-1", code=code_of("adv-c"), email=PROSPECT_EMAIL))
    engine_.conversion(conversion("cv-2", code=code_of("adv-a")))
    engine_.conversion(conversion("cv-3", code="UNKNOWN", at=T0 + DAY))
    engine_.deal(deal("dl-1", DealStage.WON, amount_minor=None, currency=None))
    engine_.deal(deal("dl-2", DealStage.OPEN, deal_id="deal-2", declared="adv-z"))
    return engine_


def said(outputs: Iterable[ReferralStatusChanged]) -> list[tuple[str, str, str | None]]:
    """(advocate, status, reason) of each record, in order: the story the world was told."""
    return [(o.advocate_id, o.status.value, o.reason) for o in outputs]
