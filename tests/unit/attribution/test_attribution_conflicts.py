"""Several advocates claiming one prospect: the policy decides, losers hear once, WON is final."""

from __future__ import annotations

import pytest
from attribution_builders import (
    DAY,
    T0,
    code_of,
    conversion,
    deal,
    engine,
    said,
    share,
)

from referrals.contract.records import Channel, DealStage, ReferralStatus
from services.attribution.domain.model import Policy

EARLY_A_LATE_B = [
    share("sh-a", "adv-a", at=T0 - 20 * DAY),
    share("sh-b", "adv-b", channel=Channel.SOCIAL, at=T0 - 2 * DAY),
]


@pytest.mark.parametrize(
    ("policy", "winner", "loser"),
    [(Policy.FIRST_TOUCH, "adv-a", "adv-b"), (Policy.LAST_TOUCH, "adv-b", "adv-a")],
)
@pytest.mark.parametrize("a_first", [True, False])
def test_the_policy_picks_the_claim_by_touch_time_whatever_the_arrival_order(
    policy: Policy, winner: str, loser: str, a_first: bool
) -> None:
    engine_ = engine(shares=EARLY_A_LATE_B, policy=policy)
    first, second = ("adv-a", "adv-b") if a_first else ("adv-b", "adv-a")
    engine_.conversion(conversion("cv-1", code=code_of(first)))
    engine_.conversion(conversion("cv-2", code=code_of(second), at=T0 + DAY))
    engine_.deal(deal("dl-1", DealStage.WON, at=T0 + 5 * DAY))
    final = {o.advocate_id: (o.status, o.reason) for o in engine_.outputs}
    assert final == {
        winner: (ReferralStatus.WON, None),
        loser: (ReferralStatus.REJECTED, "ALREADY_REFERRED"),
    }
    assert [o.advocate_id for o in engine_.outputs if o.status is ReferralStatus.WON] == [winner]


def test_a_declared_claim_competes_by_the_time_of_its_declaring_event() -> None:
    engine_ = engine(shares=[share("sh-b", "adv-b", at=T0 - DAY)], policy=Policy.LAST_TOUCH)
    engine_.conversion(conversion("cv-1", code=code_of("adv-b")))
    engine_.deal(deal("dl-1", DealStage.OPEN, declared="adv-a", at=T0 + DAY))
    # The deal's own claim is decided before its stage is shown: adv-b never sees IN_PROGRESS.
    assert said(engine_.outputs) == [
        ("adv-b", "LEAD", None),
        ("adv-b", "REJECTED", "ALREADY_REFERRED"),
        ("adv-a", "LEAD", None),
        ("adv-a", "IN_PROGRESS", None),
    ]


def test_a_takeover_tells_the_previous_winner_once_and_the_new_one_the_current_state() -> None:
    engine_ = engine(shares=EARLY_A_LATE_B)
    engine_.conversion(conversion("cv-1", code=code_of("adv-b")))
    engine_.deal(deal("dl-1", DealStage.QUALIFIED))
    engine_.conversion(conversion("cv-2", code=code_of("adv-a"), at=T0 + 2 * DAY))
    assert said(engine_.outputs) == [
        ("adv-b", "LEAD", None),
        ("adv-b", "IN_PROGRESS", None),
        ("adv-b", "REJECTED", "ALREADY_REFERRED"),
        ("adv-a", "LEAD", None),
        ("adv-a", "IN_PROGRESS", None),
    ]


def test_each_loser_gets_exactly_one_already_referred_even_when_it_claims_again() -> None:
    shares = [*EARLY_A_LATE_B, share("sh-c", "adv-c", at=T0 - 3 * DAY)]
    engine_ = engine(shares=shares)
    engine_.conversion(conversion("cv-1", code=code_of("adv-a")))
    for n, loser in enumerate(["adv-b", "adv-c", "adv-b", "adv-c", "adv-b"]):
        engine_.conversion(conversion(f"cv-{n + 2}", code=code_of(loser), at=T0 + n * DAY))
    engine_.deal(deal("dl-1", DealStage.OPEN, declared="adv-b", at=T0 + 9 * DAY))
    rejections = [o for o in engine_.outputs if o.status is ReferralStatus.REJECTED]
    assert sorted((o.advocate_id, o.reason) for o in rejections) == [
        ("adv-b", "ALREADY_REFERRED"),
        ("adv-c", "ALREADY_REFERRED"),
    ]
    assert [o.channel for o in rejections if o.advocate_id == "adv-c"] == [Channel.SHARE_URL]


def test_several_advocates_emailing_the_prospect_conflict_within_one_event() -> None:
    email = "f" * 64
    shares = [
        share("sh-a", "adv-a", channel=Channel.EMAIL, email=email, at=T0 - 4 * DAY),
        share("sh-b", "adv-b", channel=Channel.LEAD_FORM, email=email, at=T0 - 9 * DAY),
    ]
    engine_ = engine(shares=shares)
    engine_.conversion(conversion(email=email))
    assert said(engine_.outputs) == [
        ("adv-b", "LEAD", None),
        ("adv-a", "REJECTED", "ALREADY_REFERRED"),
    ]


def test_once_won_the_advocate_is_final_and_a_better_claim_is_already_referred() -> None:
    engine_ = engine(shares=EARLY_A_LATE_B)
    engine_.conversion(conversion("cv-1", code=code_of("adv-b")))
    engine_.deal(deal("dl-1", DealStage.WON))
    engine_.conversion(conversion("cv-2", code=code_of("adv-a"), at=T0 + 3 * DAY))
    engine_.deal(deal("dl-2", DealStage.REVERSED, at=T0 + 4 * DAY))
    assert said(engine_.outputs) == [
        ("adv-b", "LEAD", None),
        ("adv-b", "WON", None),
        ("adv-a", "REJECTED", "ALREADY_REFERRED"),
        ("adv-b", "REVERSED", None),
    ]


def test_a_won_referral_follows_its_credited_deal_only() -> None:
    engine_ = engine()
    engine_.conversion(conversion(declared="adv-a"))
    engine_.deal(deal("dl-1", DealStage.WON, deal_id="deal-1"))
    engine_.deal(deal("dl-2", DealStage.OPEN, deal_id="deal-2", at=T0 + 2 * DAY))
    engine_.deal(deal("dl-3", DealStage.LOST, deal_id="deal-2", at=T0 + 3 * DAY))
    assert [(o.status.value, o.deal_id) for o in engine_.outputs] == [
        ("LEAD", None),
        ("WON", "deal-1"),
    ]


def test_a_re_instated_advocate_that_loses_again_is_told_again() -> None:
    # adv-b takes the referral from adv-a, adv-a gets it back with an earlier share, then both
    # lose to adv-c: adv-a's last word must not be a stale LEAD.
    engine_ = engine(shares=[share("sh-a", "adv-a", at=T0 - 5 * DAY)])
    engine_.conversion(conversion("cv-1", code=code_of("adv-a")))
    engine_.directory.add_share(share("sh-b", "adv-b", at=T0 - 6 * DAY))
    engine_.conversion(conversion("cv-2", code=code_of("adv-b")))
    engine_.share(share("sh-a0", "adv-a", at=T0 - 7 * DAY))
    engine_.conversion(conversion("cv-3", declared="adv-c", at=T0 - 8 * DAY))
    assert said(engine_.outputs) == [
        ("adv-a", "LEAD", None),
        ("adv-a", "REJECTED", "ALREADY_REFERRED"),
        ("adv-b", "LEAD", None),
        ("adv-b", "REJECTED", "ALREADY_REFERRED"),
        ("adv-a", "LEAD", None),
        ("adv-a", "REJECTED", "ALREADY_REFERRED"),
        ("adv-c", "LEAD", None),
    ]
    assert len({o.status_id for o in engine_.outputs}) == len(engine_.outputs)


def test_a_late_share_of_a_better_claimant_takes_over_as_soon_as_it_arrives() -> None:
    email = "f" * 64
    later = share("sh-a", "adv-a", channel=Channel.EMAIL, email=email, at=T0 - 2 * DAY)
    engine_ = engine(shares=[later])
    engine_.conversion(conversion(email=email))
    earlier = share("sh-b", "adv-b", channel=Channel.LEAD_FORM, email=email, at=T0 - 8 * DAY)
    assert said(engine_.share(earlier)) == [
        ("adv-a", "REJECTED", "ALREADY_REFERRED"),
        ("adv-b", "LEAD", None),
    ]


def test_a_claimant_whose_share_arrives_after_the_won_is_told_already_referred() -> None:
    engine_ = engine(shares=[share("sh-b", "adv-b", at=T0 - DAY)])
    engine_.conversion(conversion("cv-1", code=code_of("adv-b")))
    engine_.conversion(conversion("cv-2", code=code_of("adv-a")))
    engine_.deal(deal("dl-1", DealStage.WON))
    assert said(engine_.share(share("sh-a", "adv-a", at=T0 - 30 * DAY))) == [
        ("adv-a", "REJECTED", "ALREADY_REFERRED")
    ]
