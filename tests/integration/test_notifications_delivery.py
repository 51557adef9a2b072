"""The notifications service as a process, against the real broker, a real SMTP server and a
webhook receiver: what advocates receive, what they do not, and what happens to bad input and
bad addresses (contract: "Messages", "Bad input")."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from referrals.contract.records import ReferralStatus
from referrals.contract.topics import NOTIFICATIONS_SENT, STATUS, dlq_of
from referrals.platform.settings import KafkaSettings
from referrals.programs.model import MessageKind
from referrals.streams.dlq import header_dict
from services.notifications.adapters import webhook
from services.notifications.domain.ids import notification_id

from .helpers import produce, read_topic
from .test_notifications_support import (
    CODEC,
    WEBHOOK_SECRET,
    Service,
    SmtpBehaviour,
    SmtpSink,
    message_id,
    nid,
    profile,
    publish,
    put_program,
    running,
    sent_records,
    servers,
    status,
)

pytestmark = pytest.mark.broker
S, K = ReferralStatus, MessageKind

EXPECTED_SUBJECTS = {
    # the program's own wording (deploy/programs/acme-b2b.yaml) for LEAD and REWARDED, the
    # built-in one for the other kinds
    "LEAD": "Thank you for introducing Your friend to Acme",
    "WON": "Great news: Your friend became a customer",
    "REWARDED": "Your Acme referral reward: 50.00 USD",
    "PAID": "Your 50.00 USD reward has been sent",
    "PAYOUT_FAILED": "About your 50.00 USD reward",
}


def _journey(advocate: str) -> list[object]:
    reward = {"amount_minor": 5000, "currency": "USD", "reward_type": "GIFT_CARD"}
    return [
        status(advocate, "r1", S.LEAD),
        status(advocate, "r1", S.WON),
        status(advocate, "r1", S.REWARDED, payout_id="po-1", tier=1, period_referrals=1, **reward),
        status(advocate, "r1", S.PAID, payout_id="po-1", **reward),
        status(advocate, "r2", S.PAYOUT_FAILED, payout_id="po-2", reason="CLOSED", **reward),
    ]


async def test_messages_arrive_with_the_programs_content_signed_headers_and_a_working_unsubscribe_link(  # noqa: E501
    topics: KafkaSettings, tmp_path: Path
) -> None:
    with servers() as (smtp, hooks):
        put_program(topics, tmp_path, hooks.url, nurture_days=[3])
        service = Service(topics, tmp_path, smtp.port)
        with running(service):
            await service.start()
            await publish(topics, profile("adv-a", "ada@example.com"), *_journey("adv-a"))
            await smtp.wait_for(5)
            await hooks.wait_for(5)
            sent = await sent_records(topics, expect=10)

            mails = {m.message["X-Referrals-Kind"]: m for m in smtp.received()}
            assert len(smtp.received()) == 5 and set(mails) == set(EXPECTED_SUBJECTS)
            for kind, mail in mails.items():
                referral = "r2" if kind == "PAYOUT_FAILED" else "r1"
                assert mail.message["Subject"] == EXPECTED_SUBJECTS[kind]
                assert mail.message_id == message_id("adv-a", referral, K(kind))
                assert mail.message["From"] == "referrals@acme.example"
                assert mail.recipients == ["ada@example.com"]
                assert "Hi Alex adv-a," in mail.part("plain")
                if kind == "REWARDED":  # the program's template has no HTML part: plain text
                    assert mail.message.get_content_type() == "text/plain"
                else:
                    assert mail.message.get_content_type() == "multipart/alternative"
                    assert "<p>Hi Alex adv-a,</p>" in mail.part("html")
                assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                link = str(mail.message["List-Unsubscribe"]).strip("<>")
                assert link.startswith(f"http://127.0.0.1:{service.unsubscribe_port}/unsubscribe?")
                assert link in mail.part("plain")
            rewarded = mails["REWARDED"].part("plain")
            assert "you earned 50.00 USD\n(gift card)" in rewarded
            assert "2 more successful referrals this year" in rewarded
            assert "grows to 75.00 USD" in rewarded

            for hook in hooks.received():
                signed = hook.headers[webhook.SIGNATURE]
                stamp = hook.headers[webhook.TIMESTAMP]
                assert webhook.verify(WEBHOOK_SECRET, stamp, hook.body, signed)
                assert not webhook.verify("another secret", stamp, hook.body, signed)
                document = hook.json()
                assert hook.headers["Idempotency-Key"] == document["notification_id"]
                assert (document["advocate_id"], document["program_id"]) == ("adv-a", "acme-b2b")
                assert document["subject"] == EXPECTED_SUBJECTS[document["kind"]]
            assert {h.json()["kind"] for h in hooks.received()} == set(EXPECTED_SUBJECTS)

            assert Counter((r.notification_id, r.channel) for r in sent) == {
                (nid("adv-a", "r2" if k == "PAYOUT_FAILED" else "r1", K(k)), c): 1
                for k in EXPECTED_SUBJECTS
                for c in ("EMAIL", "WEBHOOK")
            }
            assert {r.advocate_id for r in sent} == {"adv-a"}
            await service.wait_metric("referrals_notifications_sent_total", 5, channel="EMAIL")
            latency = "referrals_notifications_delivery_latency_seconds_count"
            assert await service.metric(latency, channel="WEBHOOK") == 5
            assert await service.metric(latency, channel="EMAIL", kind="WON") == 1  # thank-you

            # Opening the link asks (a mail scanner following it unsubscribes nobody); the mail
            # client's one-click POST (RFC 8058) unsubscribes; afterwards a new status mails the
            # advocate nothing.
            code, page = await service.http("GET", link, 0)
            assert code == 200 and '<form method="post"' in page
            one_click = b"List-Unsubscribe=One-Click"
            code, page = await service.http("POST", link, 0, one_click)
            assert code == 200 and "unsubscribed" in page
            bad = link.replace("token=", "token=x")
            assert (await service.http("GET", bad, 0))[0] == 400
            await service.wait_metric(
                "referrals_records_in_total", 1, topic="notifications.unsubscribes.v1"
            )
            await publish(topics, status("adv-a", "r3", S.LEAD))
            await service.wait_metric(
                "referrals_notifications_suppressed_total", 1, reason="OPTED_OUT"
            )
            assert len(smtp.received()) == 5 and len(hooks.received()) == 5
            # The opt-out sticks: a profile saying opted_out=false does not undo it.
            await publish(topics, profile("adv-a", "ada@example.com"))
            await publish(topics, status("adv-a", "r4", S.LEAD))
            await service.wait_metric(
                "referrals_notifications_suppressed_total", 2, reason="OPTED_OUT"
            )
            assert len(smtp.received()) == 5
            service.stop()


async def test_opt_outs_duplicates_bad_input_and_a_bad_address_stop_nobody_elses_messages(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    behaviour = SmtpBehaviour(reject={"bounce@example.com"})
    with servers(SmtpSink(behaviour=behaviour)) as (smtp, _):
        put_program(topics, tmp_path, None)
        service = Service(topics, tmp_path, smtp.port, NOTIFICATIONS_UNKNOWN_PROGRAM_WAIT_S="1")
        with running(service):
            await service.start()
            lead = status("adv-dup", "r1", S.LEAD)
            await publish(
                topics,
                profile("adv-out", "out@example.com", opted_out=True),
                profile("adv-dup", "dup@example.com"),
                profile("adv-bad", "bounce@example.com"),
                profile("adv-ok", "ok@example.com"),
                status("adv-out", "r1", S.LEAD),
                lead,
                lead,  # the same status_id twice: one message
                status("adv-dup", "r1", S.LEAD, at=lead.occurred_at),
                status("adv-bad", "r1", S.LEAD),
                status("adv-ghost", "r1", S.LEAD, program_id="no-such-program"),
            )
            await produce(topics, STATUS, [(b"adv-x", b"{not avro}")])
            await publish(topics, status("adv-ok", "r1", S.LEAD))

            await smtp.wait_for(1, address="ok@example.com")
            await smtp.wait_for(1, address="dup@example.com")
            dead = await read_topic(topics, dlq_of(NOTIFICATIONS_SENT), expect=1, within=30)
            input_dlq = await read_topic(topics, dlq_of(STATUS), expect=2, within=30)
            await service.wait_metric(
                "referrals_notifications_suppressed_total", 2, reason="DUPLICATE"
            )
            await service.wait_metric(
                "referrals_notifications_suppressed_total", 1, reason="OPTED_OUT"
            )
            sent = await sent_records(topics, expect=2)

            assert smtp.to("out@example.com") == []
            assert len(smtp.to("dup@example.com")) == 1
            assert smtp.to("bounce@example.com") == []  # refused at RCPT: nothing stored
            assert sorted(r.advocate_id for r in sent) == ["adv-dup", "adv-ok"]

            assert len(dead) == 1
            headers = header_dict(dead[0].headers)
            assert headers["dlq.error.reason"] == "RECIPIENT_REFUSED"  # at once, not retried
            assert headers["dlq.error.class"] == "DeliveryFailed"
            assert headers["dlq.service"] == "notifications"
            assert dead[0].key == b"adv-bad"
            body = json.loads(dead[0].value)
            assert body["notification_id"] == notification_id("adv-bad", "r1", K.LEAD, 0)
            assert (body["channel"], body["attempts"]) == ("EMAIL", 1)
            # The relay's answer quoted the address: the dead letter, its headers and the logs
            # keep the code, not the address.
            assert "550 5.1.1 <<address>>: mailbox unavailable" in body["error"]
            kept = [dead[0].value, *(value for _, value in dead[0].headers)]
            assert not any(b"bounce@example.com" in part for part in kept)
            reasons = {header_dict(m.headers)["dlq.error.reason"] for m in input_dlq}
            assert reasons == {"BAD_MAGIC", "UNKNOWN_PROGRAM"}
            ghost = next(m for m in input_dlq if m.key == b"adv-ghost")
            assert CODEC.decode(ghost.value).advocate_id == "adv-ghost"  # type: ignore[union-attr]
            failures = "referrals_notifications_dead_lettered_total"
            assert await service.metric(failures, channel="EMAIL", reason="RECIPIENT_REFUSED") == 1
            assert smtp.rcpt_attempts == 3  # dup, ok and bounce once each: never retried
            service.stop()
            log = service.logs(tail=10**9)
            assert "delivery failed for good" in log and "@example.com" not in log


async def test_an_smtp_server_that_is_down_then_refuses_for_a_while_gets_the_message_once(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    # The server is not there at first (connection refused), then answers 451 twice.
    smtp = SmtpSink(behaviour=SmtpBehaviour(refuse_first=2))
    put_program(topics, tmp_path, None)
    service = Service(topics, tmp_path, smtp.port)
    with running(service):
        await service.start()
        await publish(topics, profile("adv-r", "retry@example.com"), status("adv-r", "r1", S.LEAD))
        failures = "referrals_notifications_delivery_failures_total"
        await service.wait_metric(failures, 2, channel="EMAIL", reason="CONNECTION")
        smtp.start()
        try:
            await smtp.wait_for(1)
            sent = await sent_records(topics, expect=1)
            assert await service.metric(failures, channel="EMAIL", reason="SMTP_4XX") == 2
            assert len(smtp.received()) == 1
            assert smtp.received()[0].message_id == message_id("adv-r", "r1", K.LEAD)
            assert [r.notification_id for r in sent] == [nid("adv-r", "r1", K.LEAD)]
            assert await service.metric("referrals_notifications_retries_total") >= 4
            service.stop()
        finally:
            smtp.stop()
