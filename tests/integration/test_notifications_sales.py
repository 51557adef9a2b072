"""The notifications service as a process, against the real broker, a real SMTP server and a
real HTTP receiver for the sales webhook (contract: "Leads to sales"; "Messages": a denied or
clawed-back reward is told courteously)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from referrals.contract.records import ReferralStatus
from referrals.platform.settings import KafkaSettings
from referrals.programs.model import MessageKind
from services.notifications.adapters import webhook

from .test_notifications_support import (
    Service,
    WebhookSink,
    message_id,
    profile,
    publish,
    put_program,
    running,
    servers,
    status,
)

pytestmark = pytest.mark.broker
S, K = ReferralStatus, MessageKind
SALES_SECRET = "whsec-sales-test-9876543210"
REWARD = {"payout_id": "po-9", "amount_minor": 5000, "currency": "USD", "reward_type": "GIFT_CARD"}


async def test_a_lead_is_posted_to_sales_once_signed_and_retried_with_its_key_and_a_denied_or_clawed_back_reward_is_told_by_mail(  # noqa: E501
    topics: KafkaSettings, tmp_path: Path
) -> None:
    sales = WebhookSink().start()
    sales.answers = [500]  # the CRM fails once: the retry must carry the same key
    try:
        with servers() as (smtp, _):
            put_program(
                topics,
                tmp_path,
                None,
                sales_webhook={"url": sales.url, "secret_env": "WEBHOOK_SECRET_SALES"},
            )
            service = Service(topics, tmp_path, smtp.port, WEBHOOK_SECRET_SALES=SALES_SECRET)
            with running(service):
                await service.start()
                old = datetime.now(UTC) - timedelta(days=8)  # past the 7-day staleness limit
                await publish(
                    topics,
                    profile("adv-s", "sam@example.com", opted_out=True),
                    status("adv-s", "r-old", S.LEAD, at=old, owner_rep_id="rep-1"),
                    status("adv-s", "r1", S.LEAD, owner_rep_id="rep-1"),
                )
                await sales.wait_for(2)
                await publish(
                    topics,
                    profile("adv-t", "tess@example.com"),
                    status("adv-t", "r2", S.REJECTED, reason="DENIED", **REWARD),
                    status("adv-t", "r3", S.REVERSED, reason="CLAWED_BACK", **REWARD),
                    status("adv-t", "r3", S.REVERSED, reason="CLAWED_BACK", **REWARD),
                )
                await smtp.wait_for(2)
                await asyncio.sleep(2)  # time enough for a third post or mail that must not come

                hooks = sales.received()
                assert len(hooks) == 2, [h.body for h in hooks]
                assert {h.headers["Idempotency-Key"] for h in hooks} == {"st-adv-s-r1-LEAD"}
                assert hooks[0].body == hooks[1].body
                for hook in hooks:
                    stamp, signed = hook.headers[webhook.TIMESTAMP], hook.headers[webhook.SIGNATURE]
                    assert signed.startswith("sha256=")
                    assert webhook.verify(SALES_SECRET, stamp, hook.body, signed)
                    assert not webhook.verify("another secret", stamp, hook.body, signed)
                    assert hook.headers["Content-Type"] == "application/json"
                document = hooks[1].json()
                occurred_at = document.pop("occurred_at")
                assert document == {
                    "type": "lead.created",
                    "program_id": "acme-b2b",
                    "referral_id": "r1",
                    "prospect_id": "prospect-r1",
                    "advocate_id": "adv-s",  # opted out: the lead goes to sales all the same
                    "owner_rep_id": "rep-1",
                    "channel": "SHARE_URL",
                    "matched_by": "CODE",
                }
                assert occurred_at.endswith("Z")
                assert abs(datetime.fromisoformat(occurred_at) - datetime.now(UTC)) < timedelta(
                    minutes=5
                )

                mails = smtp.received()
                assert len(mails) == 2  # the opted-out advocate got no LEAD thank-you
                by_kind = {m.message["X-Referrals-Kind"]: m for m in mails}
                denied, clawed = by_kind["REWARD_DENIED"], by_kind["REWARD_CLAWED_BACK"]
                assert denied.message_id == message_id("adv-t", "r2", K.REWARD_DENIED)
                assert clawed.message_id == message_id("adv-t", "r3", K.REWARD_CLAWED_BACK)
                for mail in (denied, clawed):
                    assert mail.recipients == ["tess@example.com"]
                    assert mail.message["Subject"] == "An update on your referral reward"
                    assert "reply to this email" in " ".join(mail.part("plain").split())
                assert "not a judgement of you" in " ".join(denied.part("plain").split())
                assert "50.00 USD (gift card)" in " ".join(clawed.part("plain").split())
    finally:
        sales.stop()
