"""Which messages a sequence of one advocate's status changes produces, and which it does not."""

from __future__ import annotations

import hashlib

import pytest
from notifications_builders import (
    ADVOCATE,
    DAY,
    HOUR,
    NOW,
    kinds,
    known_advocate,
    only,
    profile,
    program,
    reasons,
    rewarded,
    status,
)

from referrals.contract.records import ReferralStatus
from referrals.programs.model import MessageKind, NotificationChannel
from services.notifications.domain.ids import notification_id
from services.notifications.domain.messages import Plan, Reason
from services.notifications.domain.plan import on_profile, on_status
from services.notifications.domain.state import new_state

S = ReferralStatus
ROOMY = program(rate_limit={"max_per_day": 20})


def test_lead_thanks_the_advocate_on_the_programs_channels() -> None:
    _, plan = on_status(known_advocate(), status("r1", S.LEAD), program(), NOW)

    message = only(plan)
    assert (message.kind, message.step, message.referral_id) == (MessageKind.LEAD, 0, "r1")
    assert (message.advocate_id, message.email, message.display_name) == (
        ADVOCATE,
        "alex@example.com",
        "Alex Doe",
    )
    assert message.channels == (NotificationChannel.EMAIL,)
    assert message.locale == "en-US"
    assert message.trigger_time == NOW
    assert message.context["advocate_name"] == "Alex Doe"
    assert message.context["program_id"] == "acme-b2b"
    assert "unsubscribe_url" not in message.context


def test_a_referrals_life_produces_one_message_per_status_the_advocate_cares_about() -> None:
    state, produced = known_advocate(ROOMY), []
    for kind in (S.LEAD, S.IN_PROGRESS, S.WON, S.REWARD_PENDING, S.REWARDED, S.PAID):
        state, plan = on_status(state, status("r1", kind), ROOMY, NOW)
        produced += kinds(plan)
    state, plan = on_status(
        state, status("r2", S.PAYOUT_FAILED, reason="ACCOUNT_CLOSED"), ROOMY, NOW
    )

    assert produced == ["LEAD:0", "WON:0", "REWARDED:0", "PAID:0"]
    assert kinds(plan) == ["PAYOUT_FAILED:0"]
    assert only(plan).context["reason"] == "ACCOUNT_CLOSED"


@pytest.mark.parametrize(
    "kind", [S.IN_PROGRESS, S.REWARD_PENDING, S.REWARD_HELD, S.LOST, S.REVERSED, S.REJECTED]
)
def test_statuses_the_advocate_does_not_care_about_produce_nothing(kind: ReferralStatus) -> None:
    state = known_advocate()
    after, plan = on_status(state, status("r1", kind), program(), NOW)
    assert plan == Plan()
    assert after == state


def test_rewarded_tells_amount_type_and_how_many_referrals_reach_the_next_tier() -> None:
    _, plan = on_status(known_advocate(), rewarded("r1", n=1), program(), NOW)

    context = only(plan).context
    assert context["reward_amount"] == "50.00 USD"
    assert context["reward_type"] == "GIFT_CARD"
    assert context["referrals_to_next_tier"] == 2  # the tier from the 3rd referral
    assert context["next_tier_amount"] == "75.00 USD"


def test_next_tier_paid_as_a_percentage_is_shown_as_a_percentage() -> None:
    _, plan = on_status(known_advocate(), rewarded("r1", n=4), program(), NOW)
    context = only(plan).context
    assert (context["referrals_to_next_tier"], context["next_tier_amount"]) == (2, "5% of the deal")


@pytest.mark.parametrize("n", [6, 40, None])
def test_rewarded_on_the_last_tier_or_without_a_count_names_no_next_tier(n: int | None) -> None:
    _, plan = on_status(known_advocate(), rewarded("r1", n=n), program(), NOW)
    context = only(plan).context
    assert context["referrals_to_next_tier"] is None
    assert context["next_tier_amount"] is None


def test_same_status_delivered_twice_is_planned_once() -> None:
    state, first = on_status(known_advocate(), status("r1", S.LEAD), program(), NOW)
    _, again = on_status(state, status("r1", S.LEAD), program(), NOW + HOUR)

    assert kinds(first) == ["LEAD:0"]
    assert again.messages == ()
    assert reasons(again) == [Reason.DUPLICATE]


def test_another_status_of_the_same_kind_for_the_referral_is_a_duplicate() -> None:
    failed = status("r1", S.PAYOUT_FAILED, status_id="attempt-1", reason="BAD_ADDRESS")
    retried = status("r1", S.PAYOUT_FAILED, NOW + HOUR, status_id="attempt-2", reason="TIMEOUT")
    state, first = on_status(known_advocate(), failed, program(), NOW)
    _, second = on_status(state, retried, program(), NOW + HOUR)

    assert kinds(first) == ["PAYOUT_FAILED:0"]
    assert reasons(second) == [Reason.DUPLICATE]


def test_notification_id_is_deterministic_per_advocate_referral_kind_and_step() -> None:
    digest = hashlib.sha256(b"5:adv-1|r1|NURTURE|2").hexdigest()[:32]
    assert notification_id("adv-1", "r1", MessageKind.NURTURE, 2) == "nt-" + digest
    _, plan = on_status(known_advocate(), status("r1", S.WON), program(), NOW)
    assert only(plan).notification_id == notification_id(ADVOCATE, "r1", MessageKind.WON, 0)


def test_two_advocates_lead_messages_for_one_referral_have_different_ids() -> None:
    # Under LAST_TOUCH a later claimant takes the referral over: both advocates are thanked.
    first = notification_id("adv-1", "r1", MessageKind.LEAD, 0)
    second = notification_id("adv-2", "r1", MessageKind.LEAD, 0)
    assert first != second
    # Field boundaries cannot be shifted to forge another advocate's id.
    assert notification_id("a|b", "c", MessageKind.LEAD, 0) != notification_id(
        "a", "b|c", MessageKind.LEAD, 0
    )


def test_status_older_than_the_staleness_limit_is_not_sent() -> None:
    doc = program(staleness_days=7)
    fresh = status("r1", S.LEAD, NOW - 7 * DAY + HOUR)
    old = status("r2", S.LEAD, NOW - 7 * DAY - HOUR)

    state, plan = on_status(known_advocate(doc), fresh, doc, NOW)
    _, stale = on_status(state, old, doc, NOW)

    assert kinds(plan) == ["LEAD:0"]
    assert stale.messages == ()
    assert reasons(stale) == [Reason.STALE]


def test_replaying_last_years_history_mails_nobody() -> None:
    state, plans = known_advocate(ROOMY), []
    for day, kind in enumerate((S.LEAD, S.WON, S.REWARDED, S.PAID)):
        state, plan = on_status(state, status("r1", kind, NOW - 365 * DAY + day * DAY), ROOMY, NOW)
        plans.append(plan)
    assert all(plan.messages == () for plan in plans)
    assert all(set(reasons(plan)) == {Reason.STALE} for plan in plans)


def test_the_same_kind_for_a_referral_weeks_later_still_sends_nothing_twice() -> None:
    failed = status("r1", S.PAYOUT_FAILED, status_id="attempt-1", reason="BAD_ADDRESS")
    later = NOW + 30 * DAY  # an operator retried the payout a month later; it failed again
    again = status("r1", S.PAYOUT_FAILED, later, status_id="attempt-2", reason="BAD_ADDRESS")

    state, first = on_status(known_advocate(), failed, program(), NOW)
    _, second = on_status(state, again, program(), later)

    assert kinds(first) == ["PAYOUT_FAILED:0"]
    assert reasons(second) == [Reason.DUPLICATE]


def test_a_status_may_arrive_slightly_ahead_of_the_wall_clock() -> None:
    _, plan = on_status(known_advocate(), status("r1", S.LEAD, NOW + HOUR), program(), NOW)
    assert kinds(plan) == ["LEAD:0"]


def test_locale_is_the_profiles_else_the_programs_default() -> None:
    doc = program(default_locale="de-DE")
    _, own = on_status(known_advocate(doc, locale="fr-FR"), status("r1", S.LEAD), doc, NOW)
    _, default = on_status(known_advocate(doc), status("r1", S.LEAD), doc, NOW)
    assert (only(own).locale, only(default).locale) == ("fr-FR", "de-DE")


def test_program_without_channels_suppresses_with_no_channel() -> None:
    doc = program(channels=[])
    _, plan = on_status(known_advocate(doc), status("r1", S.LEAD), doc, NOW)
    assert plan.messages == ()
    assert reasons(plan) == [Reason.NO_CHANNEL]


def test_email_needs_an_address_but_a_webhook_does_not() -> None:
    both = program(channels=["EMAIL", "WEBHOOK"], webhook={"url": "https://hooks.example.com/r"})
    email_only = program()
    lead = status("r1", S.LEAD)

    _, webhook = on_status(known_advocate(both, email=""), lead, both, NOW)
    _, nothing = on_status(known_advocate(email_only, email=" "), lead, email_only, NOW)

    assert only(webhook).channels == (NotificationChannel.WEBHOOK,)
    assert reasons(nothing) == [Reason.NO_CHANNEL]


def test_input_for_another_advocate_is_refused() -> None:
    with pytest.raises(ValueError, match="adv-1"):
        on_status(new_state("adv-2"), status("r1", S.LEAD), program(), NOW)


def test_status_before_profile_is_held_and_sent_when_the_profile_arrives() -> None:
    state, held = on_status(new_state(ADVOCATE), status("r1", S.LEAD), program(), NOW)
    state, plan = on_profile(state, profile(), program(), NOW + HOUR)

    assert held == Plan()
    message = only(plan)
    assert (message.kind, message.trigger_time, message.email) == (
        MessageKind.LEAD,
        NOW,
        "alex@example.com",
    )
    _, again = on_profile(state, profile(), program(), NOW + 2 * HOUR)
    assert again == Plan()


def test_held_message_is_dropped_when_it_goes_stale_before_the_profile_arrives() -> None:
    state, _ = on_status(new_state(ADVOCATE), status("r1", S.LEAD), program(), NOW)
    state, plan = on_profile(state, profile(), program(), NOW + 8 * DAY)
    assert plan.messages == ()
    assert reasons(plan) == [Reason.NO_PROFILE]
    assert state.pending == ()


def test_held_messages_of_an_advocate_whose_profile_says_opted_out_are_dropped() -> None:
    state, _ = on_status(new_state(ADVOCATE), status("r1", S.WON), program(), NOW)
    _, plan = on_profile(state, profile(opted_out=True), program(), NOW + HOUR)
    assert plan.messages == ()
    assert set(reasons(plan)) == {Reason.OPTED_OUT}
    assert len(plan.suppressed) == 3  # the WON thank-you and its two nurture steps
