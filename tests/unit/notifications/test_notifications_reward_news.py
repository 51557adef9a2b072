"""Advocates are told, courteously, when a reward is denied or clawed back: which statuses do
that, which kinds the program chooses, and that these messages follow every rule the others do."""

from __future__ import annotations

from typing import Any

import pytest
from notifications_builders import (
    ADVOCATE,
    DAY,
    NOW,
    kinds,
    known_advocate,
    only,
    profile,
    program,
    reasons,
    status,
    stored,
)

from referrals.contract.records import ReferralStatus, ReferralStatusChanged
from referrals.programs.model import MessageKind
from services.notifications.adapters.rendering import render
from services.notifications.domain.ids import notification_id
from services.notifications.domain.messages import Plan, Reason
from services.notifications.domain.plan import on_delivered, on_profile, on_status, unsent
from services.notifications.domain.state import Pending, new_state

S, K = ReferralStatus, MessageKind
REWARD: dict[str, Any] = {
    "payout_id": "po-r1",
    "amount_minor": 5_000,
    "currency": "USD",
    "reward_type": "GIFT_CARD",
}


def denied(referral: str = "r1", **extra: Any) -> ReferralStatusChanged:
    return status(referral, S.REJECTED, reason="DENIED", **REWARD, **extra)


def clawed_back(referral: str = "r1", **extra: Any) -> ReferralStatusChanged:
    return status(referral, S.REVERSED, reason="CLAWED_BACK", **REWARD, **extra)


@pytest.mark.parametrize(
    ("news", "kind"),
    [(denied(), K.REWARD_DENIED), (clawed_back(), K.REWARD_CLAWED_BACK)],
)
def test_a_denied_or_clawed_back_reward_is_told_to_the_advocate(
    news: ReferralStatusChanged, kind: MessageKind
) -> None:
    _, plan = on_status(known_advocate(), news, program(), NOW)

    message = only(plan)
    assert (message.kind, message.step, message.referral_id) == (kind, 0, "r1")
    assert message.notification_id == notification_id(ADVOCATE, "r1", kind, 0)
    assert message.context["reward_amount"] == "50.00 USD"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (S.REJECTED, "SELF_REFERRAL"),
        (S.REJECTED, "ALREADY_REFERRED"),
        (S.REJECTED, "PROGRAM_ENDED"),
        (S.REVERSED, "CANCELLED"),
        (S.REVERSED, "REWARD_CANCELLED"),
        (S.REVERSED, None),
        (S.REWARD_HELD, "DENIED"),
    ],
)
def test_other_rejections_and_reversals_tell_nothing(kind: ReferralStatus, reason: str) -> None:
    state = known_advocate()
    after, plan = on_status(state, status("r1", kind, reason=reason), program(), NOW)
    assert (after, plan) == (state, Plan())


def test_a_repeated_denial_is_told_once_even_after_a_restart() -> None:
    doc = program()
    state, first = on_status(known_advocate(), denied(), doc, NOW)
    state, again = on_status(stored(state), denied(), doc, NOW + DAY)

    assert kinds(first) == ["REWARD_DENIED:0"]
    assert (again.messages, reasons(again)) == ((), [Reason.DUPLICATE])


def test_the_news_does_not_take_the_place_of_earlier_messages_or_nurture_steps() -> None:
    """Their bits in the state are their own: a referral told every kind and all 365 nurture
    steps still recognises each one."""
    doc = program(rate_limit={"max_per_day": 20})
    state = known_advocate(doc)
    for news in (status("r1", S.LEAD), status("r1", S.WON), denied(), clawed_back()):
        state, plan = on_status(state, news, doc, NOW)
        assert len(plan.messages) == 1
    state = stored(state)
    for kind in (K.LEAD, K.WON, K.REWARD_DENIED, K.REWARD_CLAWED_BACK):
        assert state.knows(Pending("r1", kind, 0, 0))
    assert not state.knows(Pending("r1", K.REWARDED, 0, 0))
    bits = {Pending("r1", K.NURTURE, step, 0).bit for step in range(1, 366)}
    bits |= {Pending("r1", kind, 0, 0).bit for kind in K if kind is not K.NURTURE}
    assert len(bits) == 365 + 7


@pytest.mark.parametrize(
    ("news", "kind"),
    [(denied(), K.REWARD_DENIED), (clawed_back(), K.REWARD_CLAWED_BACK)],
)
def test_a_program_that_leaves_a_kind_out_does_not_send_it(
    news: ReferralStatusChanged, kind: MessageKind
) -> None:
    doc = program(kinds=[k.value for k in K if k is not kind])
    state = known_advocate(doc)
    after, plan = on_status(state, news, doc, NOW)
    assert (after, plan) == (state, Plan())


def test_a_program_without_won_messages_still_schedules_nurture_and_vice_versa() -> None:
    no_won = program(kinds=["NURTURE"], nurture_days=[3])
    state, plan = on_status(known_advocate(no_won), status("r1", S.WON), no_won, NOW)
    assert plan == Plan() and [e.kind for e in state.pending] == [K.NURTURE]

    no_nurture = program(kinds=["WON"], nurture_days=[3])
    state, plan = on_status(known_advocate(no_nurture), status("r1", S.WON), no_nurture, NOW)
    assert kinds(plan) == ["WON:0"] and state.pending == ()


def test_the_news_follows_opt_out_staleness_and_the_rate_limit() -> None:
    doc = program(rate_limit={"max_per_day": 1})
    _, opted_out = on_status(known_advocate(doc, opted_out=True), denied(), doc, NOW)
    _, stale = on_status(known_advocate(doc), denied(at=NOW - 8 * DAY), doc, NOW)
    state, _ = on_status(known_advocate(doc), status("r0", S.LEAD), doc, NOW)
    _, limited = on_status(state, clawed_back(), doc, NOW)

    assert reasons(opted_out) == [Reason.OPTED_OUT]
    assert reasons(stale) == [Reason.STALE]
    assert reasons(limited) == [Reason.RATE_LIMITED]


def test_a_denial_before_the_profile_waits_for_it_and_is_resent_until_delivered() -> None:
    doc = program()
    state, plan = on_status(new_state(ADVOCATE), denied(), doc, NOW)
    assert plan == Plan()
    state, plan = on_profile(state, profile(), doc, NOW)
    assert kinds(plan) == ["REWARD_DENIED:0"]
    assert [m.notification_id for m in unsent(state, doc, NOW)] == [only(plan).notification_id]
    assert unsent(on_delivered(state, only(plan).notification_id), doc, NOW) == ()


@pytest.mark.parametrize(
    ("news", "words"),
    [
        (denied(), ["not able to issue it", "of 50.00 USD", "not a judgement of you"]),
        (clawed_back(), ["reward of 50.00 USD (gift card)", "has been reversed", "nothing about"]),
    ],
)
def test_the_default_wording_is_courteous_and_says_what_happened(
    news: ReferralStatusChanged, words: list[str]
) -> None:
    doc = program()
    _, plan = on_status(known_advocate(doc), news, doc, NOW)
    rendered = render(
        only(plan),
        doc,
        unsubscribe_url="https://r.example/unsubscribe?t=1",
        refer_url="https://r.example/r/ALEX",
    )
    assert rendered.subject == "An update on your referral reward"
    text = " ".join(rendered.text.split())
    assert text.startswith("Hi Alex Doe,")
    for phrase in [*words, "reply to this email", "https://r.example/r/ALEX"]:
        assert phrase in text
    assert rendered.html is not None and "https://r.example/unsubscribe?t=1" in rendered.html
