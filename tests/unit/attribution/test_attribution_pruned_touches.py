"""A referral decided again after the directory pruned the touches behind its claims (the
directory forgets shares older than the longest window plus a margin) keeps its claims."""

from __future__ import annotations

import pytest
from attribution_builders import DAY, PROSPECT_EMAIL, T0, code_of, conversion, deal, share
from attribution_builders import directory as make_directory

from referrals.contract.records import Channel, DealStage, ReferralStatus
from services.attribution.domain.model import Policy
from services.attribution.domain.referral import on_conversion, on_deal
from services.attribution.domain.state import Reason


@pytest.mark.parametrize("policy", [Policy.FIRST_TOUCH, Policy.LAST_TOUCH])
def test_a_won_deal_long_after_the_shares_were_pruned_credits_the_same_advocate(
    policy: Policy,
) -> None:
    shares = [
        share("sh-a1", "adv-a", at=T0 - 80 * DAY),
        share("sh-b", "adv-b", at=T0 - 50 * DAY, code=code_of("adv-a")),
        share("sh-a2", "adv-a", at=T0 - 10 * DAY),
    ]
    full = make_directory(shares=shares, policy=policy)
    step = on_conversion(None, conversion(code=code_of("adv-a")), full)
    winner = "adv-a"  # FIRST_TOUCH: sh-a1; LAST_TOUCH: sh-a2
    [lead, rejected] = step.outputs
    assert (lead.advocate_id, lead.status) == (winner, ReferralStatus.LEAD)
    assert (rejected.advocate_id, rejected.reason) == ("adv-b", Reason.ALREADY_REFERRED)
    assert step.state is not None
    # 200 days on the oldest two shares are gone from the directory, the newest one stays
    pruned = make_directory(shares=shares[2:], policy=policy)
    won = on_deal(step.state, deal("dl-1", DealStage.WON, at=T0 + 200 * DAY), pruned)
    [status] = won.outputs
    assert (status.advocate_id, status.status) == (winner, ReferralStatus.WON)
    assert won.state is not None and won.state.winner == step.state.winner


def test_an_email_claim_and_an_outside_window_rejection_survive_pruning() -> None:
    shares = [
        share("sh-a", "adv-a", channel=Channel.EMAIL, at=T0 - 30 * DAY, email=PROSPECT_EMAIL),
        share("sh-b", "adv-b", channel=Channel.EMAIL, at=T0 - 95 * DAY, email=PROSPECT_EMAIL),
    ]
    step = on_conversion(None, conversion(email=PROSPECT_EMAIL), make_directory(shares=shares))
    before = [(s.advocate_id, s.status, s.reason) for s in step.outputs]
    assert ("adv-b", ReferralStatus.REJECTED, Reason.OUTSIDE_WINDOW) in before
    assert step.state is not None
    won = on_deal(step.state, deal("dl-1", DealStage.WON, at=T0 + 300 * DAY), make_directory())
    assert [(s.advocate_id, s.status) for s in won.outputs] == [("adv-a", ReferralStatus.WON)]
    assert won.state is not None
    [source] = won.state.sources
    assert [c.advocate_id for c in source.claims] == ["adv-a"]
    assert [(r.claim.advocate_id, r.reason) for r in source.rejections] == [
        ("adv-b", Reason.OUTSIDE_WINDOW)
    ]
