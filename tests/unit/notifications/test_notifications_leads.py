"""Leads to sales: each referral that becomes LEAD is POSTed once to the program's sales webhook,
whatever the advocate's opt-out, within the staleness limit, keyed by the LEAD's status_id."""

from __future__ import annotations

import json
from datetime import datetime

from notifications_builders import (
    ADVOCATE,
    DAY,
    NOW,
    known_advocate,
    program,
    reasons,
    status,
    stored,
)

from referrals.contract.records import ReferralStatus, ReferralStatusChanged
from referrals.programs.model import MessageKind, NotificationChannel
from services.notifications.adapters import sales, webhook
from services.notifications.domain.messages import Message, Plan, Reason
from services.notifications.domain.plan import (
    on_dead_lettered,
    on_delivered,
    on_status,
    on_unsubscribe,
    unsent,
)
from services.notifications.domain.state import new_state

S = ReferralStatus
SALES = NotificationChannel.SALES_WEBHOOK
HOOK = {"url": "https://crm.example/hooks/referrals", "secret_env": "WEBHOOK_SECRET_SALES"}
WITH_SALES = program(sales_webhook=HOOK, rate_limit={"max_per_day": 20})


def lead(referral: str = "r1", at: datetime = NOW) -> ReferralStatusChanged:
    return status(referral, S.LEAD, at, status_id=f"st-lead-{referral}", owner_rep_id="rep-7")


def to_sales(plan: Plan) -> list[Message]:
    return [m for m in plan.messages if m.channels == (SALES,)]


def test_a_lead_goes_to_sales_keyed_by_its_status_id_beside_the_advocates_thank_you() -> None:
    _, plan = on_status(known_advocate(WITH_SALES), lead(), WITH_SALES, NOW)

    [message] = to_sales(plan)
    assert message.notification_id == "st-lead-r1"
    assert (message.advocate_id, message.referral_id, message.kind) == (ADVOCATE, "r1", "LEAD")
    assert message.context["owner_rep_id"] == "rep-7"
    assert [m.channels for m in plan.messages] == [(SALES,), (NotificationChannel.EMAIL,)]


def test_without_a_sales_webhook_or_for_another_status_nothing_goes_to_sales() -> None:
    _, plan = on_status(known_advocate(), lead(), program(), NOW)
    assert to_sales(plan) == []
    for kind in (S.WON, S.REWARDED, S.IN_PROGRESS):
        _, plan = on_status(known_advocate(WITH_SALES), status("r1", kind), WITH_SALES, NOW)
        assert to_sales(plan) == []


def test_the_lead_goes_whatever_the_opt_out_the_profile_or_the_kinds_chosen() -> None:
    opted_out = known_advocate(WITH_SALES, opted_out=True)
    _, plan = on_status(opted_out, lead(), WITH_SALES, NOW)
    assert [m.notification_id for m in plan.messages] == ["st-lead-r1"]
    assert reasons(plan) == [Reason.OPTED_OUT]  # the advocate's thank-you

    _, plan = on_status(new_state(ADVOCATE), lead(), WITH_SALES, NOW)  # no profile yet
    assert [m.notification_id for m in plan.messages] == ["st-lead-r1"]

    no_messages = program(sales_webhook=HOOK, kinds=[])
    _, plan = on_status(known_advocate(no_messages), lead(), no_messages, NOW)
    assert [m.notification_id for m in plan.messages] == ["st-lead-r1"]


def test_a_stale_lead_is_not_sent() -> None:
    state = known_advocate(WITH_SALES)
    _, plan = on_status(state, lead(at=NOW - 8 * DAY), WITH_SALES, NOW)
    assert plan.messages == ()
    assert reasons(plan) == [Reason.STALE, Reason.STALE]  # to sales, and the thank-you


def test_a_repeated_lead_is_sent_once_before_and_after_delivery_and_a_restart() -> None:
    state, first = on_status(known_advocate(WITH_SALES), lead(), WITH_SALES, NOW)
    state, again = on_status(stored(state), lead(), WITH_SALES, NOW)
    assert len(to_sales(first)) == 1 and again.messages == ()
    assert reasons(again) == [Reason.DUPLICATE, Reason.DUPLICATE]

    state = on_delivered(state, "st-lead-r1")
    state, after = on_status(stored(state), lead(), WITH_SALES, NOW + DAY)
    assert to_sales(after) == [] and Reason.DUPLICATE in reasons(after)


def test_an_unsent_lead_is_resent_with_the_same_key_until_delivered_or_dead_lettered() -> None:
    state, plan = on_status(known_advocate(WITH_SALES), lead(), WITH_SALES, NOW)
    [message] = to_sales(plan)

    assert message in unsent(stored(state), WITH_SALES, NOW + 2 * DAY)
    for settle in (on_delivered, on_dead_lettered):
        settled = settle(state, "st-lead-r1")
        assert "st-lead-r1" not in [m.notification_id for m in unsent(settled, WITH_SALES, NOW)]


def test_an_opt_out_after_the_lead_does_not_stop_its_delivery() -> None:
    state, _ = on_status(known_advocate(WITH_SALES), lead(), WITH_SALES, NOW)
    state, _ = on_unsubscribe(state, NOW)
    assert [m.notification_id for m in unsent(state, WITH_SALES, NOW)] == ["st-lead-r1"]


def test_posted_leads_are_forgotten_once_stale_so_the_state_stays_small() -> None:
    state = known_advocate(WITH_SALES)
    for day in range(30):
        at = NOW + day * DAY
        state, _ = on_status(state, lead(f"r{day}", at), WITH_SALES, at)
        state = on_delivered(state, f"st-lead-r{day}")
    assert len(state.leads) <= 8  # a week's worth (staleness_days: 7), and today's


def test_the_body_names_the_lead_for_its_account_owner_and_is_signed_like_the_webhook() -> None:
    _, plan = on_status(known_advocate(WITH_SALES), lead(), WITH_SALES, NOW)
    [message] = to_sales(plan)

    payload = sales.body(message)
    assert json.loads(payload) == {
        "type": "lead.created",
        "program_id": "acme-b2b",
        "referral_id": "r1",
        "prospect_id": "prospect-r1",
        "advocate_id": ADVOCATE,
        "owner_rep_id": "rep-7",
        "channel": "EMAIL",
        "matched_by": "CODE",
        "occurred_at": "2026-03-10T12:00:00.000Z",
    }
    signed = webhook.headers(message, payload, "s3cret", NOW)
    assert signed["Idempotency-Key"] == "st-lead-r1"
    stamp = signed[webhook.TIMESTAMP]
    assert webhook.verify("s3cret", stamp, payload, signed[webhook.SIGNATURE], now=NOW.timestamp())
    assert message.kind is MessageKind.LEAD
