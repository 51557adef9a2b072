"""Any arrival order: what waits, what it waits for, how it resolves and when it is dropped."""

from __future__ import annotations

import pytest
from attribution_builders import (
    DAY,
    KEY,
    MS,
    PROSPECT_EMAIL,
    T0,
    code_of,
    conversion,
    deal,
    directory,
    engine,
    profile,
    said,
    share,
)

from referrals.contract.records import Channel, DealStage, MatchedBy, ReferralStatus
from services.attribution.domain.referral import expire, on_conversion, on_deal, on_dependency
from services.attribution.domain.state import Waits


def test_an_unknown_code_waits_for_its_share_and_says_nothing() -> None:
    step = on_conversion(None, conversion(code="NOBODY"), directory())
    assert step.outputs == []
    assert step.waits == Waits(codes=frozenset({"NOBODY"}))


def test_an_unknown_prospect_email_waits_for_an_email_share() -> None:
    step = on_conversion(None, conversion(email=PROSPECT_EMAIL), directory())
    assert step.outputs == []
    assert step.waits.emails == {PROSPECT_EMAIL}


def test_a_conversion_before_its_share_resolves_when_the_share_arrives() -> None:
    step = on_conversion(None, conversion(code=code_of("adv-a")), dir_ := directory())
    assert step.state is not None
    dir_.add_share(share("sh-1", "adv-a", channel=Channel.PRINT_CARD))
    resolved = on_dependency(step.state, dir_)
    assert said(resolved.outputs) == [("adv-a", "LEAD", None)]
    assert resolved.outputs[0].channel is Channel.PRINT_CARD
    assert resolved.outputs[0].occurred_at == T0  # the conversion's time, not the share's


def test_a_profile_arriving_late_resolves_the_claim_with_its_owner_rep() -> None:
    engine_ = engine(advocates=())
    engine_.conversion(conversion(declared="adv-a"))
    assert engine_.outputs == []
    assert engine_.waits(KEY).advocates == {"adv-a"}
    engine_.profile(profile("adv-a", owner_rep_id="rep-9"))
    [lead] = engine_.outputs
    assert (lead.status, lead.owner_rep_id) == (ReferralStatus.LEAD, "rep-9")
    assert not engine_.waits(KEY)


def test_a_code_claim_waits_for_the_advocate_profile_to_rule_out_self_referral() -> None:
    engine_ = engine(advocates=(), shares=[share("sh-1", "adv-a")])
    engine_.conversion(conversion(code=code_of("adv-a"), email=PROSPECT_EMAIL))
    assert engine_.outputs == []
    assert engine_.waits(KEY).advocates == {"adv-a"}
    engine_.profile(profile("adv-a", email_sha256=PROSPECT_EMAIL))
    assert said(engine_.outputs) == [("adv-a", "REJECTED", "SELF_REFERRAL")]


def test_a_deal_naming_a_declared_advocate_creates_the_referral_by_itself() -> None:
    step = on_deal(None, deal("dl-1", DealStage.QUALIFIED, declared="adv-a"), directory())
    assert said(step.outputs) == [("adv-a", "LEAD", None), ("adv-a", "IN_PROGRESS", None)]
    assert {o.matched_by for o in step.outputs} == {MatchedBy.DECLARED}


def test_a_deal_before_its_conversion_waits_and_resolves_as_lead_then_its_current_stage() -> None:
    engine_ = engine(shares=[share("sh-1", "adv-a")])
    engine_.deal(deal("dl-1", DealStage.OPEN))
    engine_.deal(deal("dl-2", DealStage.WON, at=T0 + 2 * DAY))
    assert engine_.outputs == []
    engine_.conversion(conversion(code=code_of("adv-a")))
    assert said(engine_.outputs) == [("adv-a", "LEAD", None), ("adv-a", "WON", None)]


def test_a_deal_won_then_reversed_before_its_referral_resolved_announces_the_win_first() -> None:
    """Its whole life went by while the conversion waited (a share read late, or the deal's
    events handled before the conversion fetched with them): the advocate earned the reward
    and lost it, so WON (the WON event's id and time) comes before REVERSED, as in order."""
    engine_ = engine(shares=[share("sh-1", "adv-a")])
    engine_.deal(deal("dl-1", DealStage.OPEN, at=T0 + DAY))
    engine_.deal(deal("dl-2", DealStage.WON, at=T0 + 2 * DAY))
    engine_.deal(deal("dl-3", DealStage.REVERSED, at=T0 + 3 * DAY))
    engine_.conversion(conversion(code=code_of("adv-a")))
    assert said(engine_.outputs) == [
        ("adv-a", "LEAD", None),
        ("adv-a", "WON", None),
        ("adv-a", "REVERSED", None),
    ]
    won = engine_.outputs[1]
    assert won.occurred_at == T0 + 2 * DAY
    in_order = engine(shares=[share("sh-1", "adv-a")])
    in_order.conversion(conversion(code=code_of("adv-a")))
    for day, stage in enumerate((DealStage.OPEN, DealStage.WON, DealStage.REVERSED), 1):
        in_order.deal(deal(f"dl-{day}", stage, at=T0 + day * DAY))
    same = {o.status: o.status_id for o in in_order.outputs}
    assert won.status_id == same[ReferralStatus.WON]  # the same status, whatever the order


@pytest.mark.parametrize(
    ("stage", "status"),
    [
        (DealStage.OPEN, ReferralStatus.IN_PROGRESS),
        (DealStage.QUALIFIED, ReferralStatus.IN_PROGRESS),
        (DealStage.WON, ReferralStatus.WON),
        (DealStage.LOST, ReferralStatus.LOST),
        (DealStage.REVERSED, ReferralStatus.REVERSED),
    ],
)
def test_deal_stages_map_to_referral_statuses_with_the_deal_facts(
    stage: DealStage, status: ReferralStatus
) -> None:
    engine_ = engine()
    engine_.conversion(conversion(declared="adv-a"))
    [record] = engine_.deal(deal("dl-1", stage, amount_minor=990, currency="EUR"))
    assert record.status is status
    assert (record.deal_id, record.amount_minor, record.currency) == ("deal-1", 990, "EUR")
    assert (record.channel, record.matched_by) == (Channel.VERBAL, MatchedBy.DECLARED)
    assert record.occurred_at == T0 + DAY


def test_a_repeated_stage_or_open_then_qualified_says_nothing_new() -> None:
    engine_ = engine()
    engine_.conversion(conversion(declared="adv-a"))
    engine_.deal(deal("dl-1", DealStage.OPEN))
    assert engine_.deal(deal("dl-2", DealStage.QUALIFIED, at=T0 + 2 * DAY)) == []
    assert engine_.deal(deal("dl-3", DealStage.QUALIFIED, at=T0 + 3 * DAY)) == []


def test_an_older_stage_arriving_after_a_newer_one_changes_nothing() -> None:
    engine_ = engine()
    engine_.conversion(conversion(declared="adv-a"))
    engine_.deal(deal("dl-2", DealStage.WON, at=T0 + 5 * DAY))
    assert engine_.deal(deal("dl-1", DealStage.OPEN, at=T0 + 2 * DAY)) == []


def test_the_same_event_id_twice_has_no_second_effect() -> None:
    engine_ = engine(shares=[share("sh-1", "adv-a")])
    for _ in range(2):
        engine_.conversion(conversion(code=code_of("adv-a")))
        engine_.deal(deal("dl-1", DealStage.WON))
    assert said(engine_.outputs) == [("adv-a", "LEAD", None), ("adv-a", "WON", None)]
    assert engine_.counters["duplicates_ignored"] == 2


def test_a_redelivered_share_does_not_wake_anyone() -> None:
    engine_ = engine()
    engine_.conversion(conversion(code=code_of("adv-a")))
    assert len(engine_.share(share("sh-1", "adv-a"))) == 1
    assert engine_.share(share("sh-1", "adv-a")) == []


def test_expire_drops_an_unmatched_deal_after_the_window_and_counts_it() -> None:
    step = on_deal(None, deal("dl-1", DealStage.WON, at=T0), directory())
    assert step.state is not None
    kept = expire(step.state, T0 + 90 * DAY)
    assert kept.state == step.state and kept.counters == {}
    dropped = expire(step.state, T0 + 90 * DAY + MS)
    assert dropped.state is None
    assert dropped.counters == {"deals_unmatched_dropped": 1}


def test_expire_drops_an_unmatched_conversion_and_stops_waiting() -> None:
    step = on_conversion(None, conversion(code="NOBODY", at=T0), directory(window_days=30))
    assert step.state is not None
    dropped = expire(step.state, T0 + 30 * DAY + MS)
    assert dropped.state is None
    assert dropped.counters == {"conversions_unmatched_dropped": 1}
    assert not dropped.waits


def test_expire_closes_a_matched_referral_but_keeps_it_and_its_deals() -> None:
    engine_ = engine(shares=[share("sh-1", "adv-a")])
    engine_.conversion(conversion(code=code_of("adv-a")))
    engine_.deal(deal("dl-1", DealStage.OPEN))
    engine_.expire(T0 + 400 * DAY)
    state = engine_.state(KEY)
    assert state is not None and state.winner is not None and len(state.deals) == 1
    assert not engine_.waits(KEY)
    assert said(engine_.deal(deal("dl-2", DealStage.WON, at=T0 + 401 * DAY))) == [
        ("adv-a", "WON", None)
    ]


def test_a_share_arriving_after_the_wait_expired_resolves_nothing() -> None:
    engine_ = engine()
    engine_.conversion(conversion(code=code_of("adv-a")))
    engine_.deal(deal("dl-1", DealStage.WON))
    engine_.expire(T0 + 200 * DAY)
    assert engine_.share(share("sh-1", "adv-a")) == []
    assert engine_.counters["conversions_unmatched_dropped"] == 1
    assert engine_.counters["deals_unmatched_dropped"] == 1
    assert engine_.state(KEY) is None
