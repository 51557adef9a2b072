"""Program lifecycle: an ENDED program takes no new referrals (each claimant is told REJECTED
PROGRAM_ENDED), while a referral that already had its advocate goes on to WON and beyond."""

from __future__ import annotations

from attribution_builders import (
    DAY,
    KEY,
    PROSPECT_EMAIL,
    T0,
    advocate,
    code_of,
    conversion,
    deal,
    engine,
    rules,
    said,
    share,
)

from referrals.contract.records import Channel, DealStage, ReferralStatus
from services.attribution.domain.ids import referral_id, status_id
from services.attribution.domain.memory import InMemoryAttribution

SHARES = [
    share("sh-a", "adv-a", at=T0 - 20 * DAY),
    share("sh-b", "adv-b", channel=Channel.SOCIAL, at=T0 - 2 * DAY),
]


def ended(engine_: InMemoryAttribution, version: int = 8) -> None:
    """Marketing puts the program again with `status: ENDED` (a new config version)."""
    engine_.directory.set_rules(rules(version=version, ended=True))


def test_a_first_claim_in_an_ended_program_is_rejected_program_ended_and_creates_nothing() -> None:
    engine_ = engine(shares=SHARES)
    ended(engine_)
    [rejected] = engine_.conversion(conversion("cv-1", code=code_of("adv-a")))
    assert (rejected.advocate_id, rejected.status, rejected.reason) == (
        "adv-a",
        ReferralStatus.REJECTED,
        "PROGRAM_ENDED",
    )
    assert (rejected.config_version, rejected.occurred_at) == (8, T0)
    assert rejected.status_id == status_id(
        referral_id(*KEY), "adv-a", ReferralStatus.REJECTED, reason="PROGRAM_ENDED", event_id="cv-1"
    )
    state = engine_.state(KEY)
    assert state is not None and state.winner is None and state.leads == 0
    assert engine_.counters["rejected_program_ended"] == 1
    assert "matched_code" not in engine_.counters


def test_every_claimant_is_told_once_and_deals_of_the_rejected_referral_say_nothing() -> None:
    engine_ = engine(shares=SHARES)
    ended(engine_)
    engine_.conversion(conversion("cv-1", code=code_of("adv-a")))
    engine_.conversion(conversion("cv-2", code=code_of("adv-b"), at=T0 + DAY))
    engine_.conversion(conversion("cv-3", code=code_of("adv-a"), at=T0 + 2 * DAY))
    engine_.deal(deal("dl-1", DealStage.OPEN, at=T0 + 3 * DAY, declared="adv-c"))
    engine_.deal(deal("dl-2", DealStage.WON, at=T0 + 4 * DAY))
    assert said(engine_.outputs) == [
        ("adv-a", "REJECTED", "PROGRAM_ENDED"),
        ("adv-b", "REJECTED", "PROGRAM_ENDED"),
        ("adv-c", "REJECTED", "PROGRAM_ENDED"),
    ]


def test_a_replay_of_the_same_events_gives_the_same_status_ids() -> None:
    def run() -> list[str]:
        engine_ = engine(shares=SHARES)
        ended(engine_)
        engine_.conversion(conversion("cv-1", code=code_of("adv-a")))
        engine_.conversion(conversion("cv-1", code=code_of("adv-a")))  # redelivered
        return [o.status_id for o in engine_.outputs]

    first = run()
    assert len(first) == 1 and run() == first


def test_self_referral_and_stale_claims_keep_their_own_reasons() -> None:
    stale = share("sh-c", "adv-c", at=T0 - 300 * DAY)
    engine_ = engine(shares=[*SHARES, stale])
    engine_.directory.add_advocate(advocate("adv-b", email_sha256=PROSPECT_EMAIL))
    ended(engine_)
    engine_.conversion(conversion("cv-1", code=code_of("adv-c")))
    engine_.conversion(conversion("cv-2", code=code_of("adv-b"), email=PROSPECT_EMAIL))
    engine_.conversion(conversion("cv-3", code=code_of("adv-a"), at=T0 + DAY))
    assert said(engine_.outputs) == [
        ("adv-c", "REJECTED", "OUTSIDE_WINDOW"),
        ("adv-b", "REJECTED", "SELF_REFERRAL"),
        ("adv-a", "REJECTED", "PROGRAM_ENDED"),
    ]


def test_a_referral_made_before_the_program_ended_goes_on_to_won_and_reversed() -> None:
    engine_ = engine(shares=SHARES)
    engine_.conversion(conversion("cv-1", code=code_of("adv-a")))
    engine_.deal(deal("dl-1", DealStage.QUALIFIED))
    ended(engine_)
    engine_.conversion(conversion("cv-2", code=code_of("adv-b"), at=T0 + 2 * DAY))
    engine_.deal(deal("dl-2", DealStage.WON, at=T0 + 3 * DAY))
    engine_.deal(deal("dl-3", DealStage.REVERSED, at=T0 + 40 * DAY))
    assert said(engine_.outputs) == [
        ("adv-a", "LEAD", None),
        ("adv-a", "IN_PROGRESS", None),
        ("adv-b", "REJECTED", "ALREADY_REFERRED"),  # the referral exists: the usual conflict
        ("adv-a", "WON", None),
        ("adv-a", "REVERSED", None),
    ]
    assert [o.config_version for o in engine_.outputs] == [7, 7, 8, 8, 8]
    assert engine_.counters["rejected_program_ended"] == 0


def test_a_lost_deal_of_an_existing_referral_is_still_reported() -> None:
    engine_ = engine(shares=SHARES)
    engine_.conversion(conversion("cv-1", code=code_of("adv-a")))
    ended(engine_)
    engine_.deal(deal("dl-1", DealStage.LOST))
    assert said(engine_.outputs) == [("adv-a", "LEAD", None), ("adv-a", "LOST", None)]


def test_a_claim_waiting_for_its_share_is_rejected_when_the_share_arrives() -> None:
    engine_ = engine()
    ended(engine_)
    assert engine_.conversion(conversion("cv-1", email=PROSPECT_EMAIL)) == []
    late = share("sh-a", "adv-a", channel=Channel.EMAIL, email=PROSPECT_EMAIL, at=T0 - DAY)
    assert said(engine_.share(late)) == [("adv-a", "REJECTED", "PROGRAM_ENDED")]


def test_a_program_active_again_takes_the_referral_on_the_next_event() -> None:
    engine_ = engine(shares=SHARES)
    ended(engine_)
    engine_.conversion(conversion("cv-1", code=code_of("adv-a")))
    engine_.directory.set_rules(rules(version=9))
    engine_.deal(deal("dl-1", DealStage.OPEN))
    assert said(engine_.outputs) == [
        ("adv-a", "REJECTED", "PROGRAM_ENDED"),
        ("adv-a", "LEAD", None),
        ("adv-a", "IN_PROGRESS", None),
    ]
