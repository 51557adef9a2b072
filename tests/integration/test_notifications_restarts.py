"""Delivery is effectively once across crashes and restarts (contract: "Messages"): the service
killed with SIGKILL resends only what it had not recorded, always with the same Message-ID; a
clean restart sends nothing twice; a nurture scheduled before a restart is sent after it."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from referrals.contract.records import ReferralStatus
from referrals.platform.settings import KafkaSettings
from referrals.programs.model import MessageKind

from .test_notifications_support import (
    Mail,
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
N_KILLED, N_STOPPED = 30, 20  # advocates whose thank-yous a SIGKILL, then a SIGTERM, interrupt


def _advocates(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:02d}" for i in range(n)]


async def _leads(topics: KafkaSettings, advocates: list[str]) -> None:
    profiles = [profile(a, f"{a}@example.com") for a in advocates]
    await publish(topics, *profiles, *(status(a, "r1", S.LEAD) for a in advocates))


def _ids(mails: list[Mail]) -> Counter[str]:
    return Counter(m.message_id for m in mails)


async def test_sigkill_resends_only_unrecorded_messages_with_their_message_id_and_sigterm_none(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    # One SMTP connection at a time and a slow server: stops land while messages are in flight.
    behaviour = SmtpBehaviour(hold={"held@example.com"}, delay_s=0.15)
    with servers(SmtpSink(behaviour=behaviour)) as (smtp, _):
        put_program(topics, tmp_path, None)
        service = Service(topics, tmp_path, smtp.port, NOTIFICATIONS_SMTP_MAX_CONNECTIONS="1")
        with running(service):
            # 1. The server stores the message but its "250" never reaches the service, which
            #    is killed before it could record the delivery.
            await service.start()
            await publish(topics, profile("held", "held@example.com"), status("held", "r1", S.LEAD))
            await smtp.wait_for(1, address="held@example.com")
            service.kill()
            behaviour.released.set()

            # 2. After the restart the held message is resent, with the same Message-ID; then a
            #    SIGKILL lands in the middle of a stream of thank-yous.
            killed = _advocates("k", N_KILLED)
            await service.start()
            await smtp.wait_for(2, address="held@example.com")
            await service.wait_metric("referrals_notifications_resends_total", 1, channel="EMAIL")
            await _leads(topics, killed)  # after the resend: the stream starts now
            await smtp.wait_for_ids(1 + 10, within=60)
            service.kill()
            assert len(_ids(smtp.received())) < 1 + N_KILLED, "the kill landed after the stream"

            # 3. A clean stop (SIGTERM) in the middle of another stream: nothing is sent twice.
            stopped = _advocates("t", N_STOPPED)
            await _leads(topics, stopped)
            await service.start()
            # The stop lands once the new stream has begun (the killed stream's unrecorded
            # messages are retried on their own schedule, before or after it).
            await smtp.wait_until(
                lambda mails: sum(m.recipients[0].startswith("t-") for m in mails) >= 3, 60
            )
            service.stop()
            at_stop = len([m for m in smtp.received() if m.recipients[0].startswith("t-")])
            await service.start()
            await smtp.wait_for_ids(1 + N_KILLED + N_STOPPED, within=60)
            sent = await sent_records(topics, expect=1 + N_KILLED + N_STOPPED, within=30)
            service.stop()

    mails = smtp.received()
    ids = _ids(mails)
    every = ["held", *killed, *stopped]
    assert set(ids) == {message_id(a, "r1", K.LEAD) for a in every}
    held = smtp.to("held@example.com")
    assert len(held) >= 2 and {m.message_id for m in held} == {message_id("held", "r1", K.LEAD)}
    # A second delivery only ever repeats an id already delivered, so the receiver can drop it;
    # and only a crash causes one: the clean stop landed mid-stream, yet all arrived once.
    duplicated = {i for i, n in ids.items() if n > 1}
    assert duplicated <= {message_id(a, "r1", K.LEAD) for a in ["held", *killed]}
    assert 0 < at_stop < N_STOPPED, f"the clean stop did not land mid-stream ({at_stop})"
    # notifications.sent.v1 records each delivery once, whatever happened.
    assert Counter(r.notification_id for r in sent) == {nid(a, "r1", K.LEAD): 1 for a in every}


async def test_a_nurture_scheduled_before_a_restart_is_sent_after_it_when_due(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    with servers() as (smtp, _):
        put_program(topics, tmp_path, None, nurture_days=[3])
        service = Service(topics, tmp_path, smtp.port)
        with running(service):
            await service.start()
            won_at = datetime.now(UTC) - timedelta(minutes=1)
            await publish(
                topics, profile("nina", "nina@example.com"), status("nina", "r1", S.WON, at=won_at)
            )
            await smtp.wait_for(1)
            await sent_records(topics, expect=1)  # recorded: a restart has nothing to resend
            await service.wait_metric("referrals_notifications_timers", 1)
            service.stop()
            # No local state survives: the timer must come back from the changelog.
            shutil.rmtree(tmp_path / "state")

            # Four days later by the service's clock: the nurture step (WON + 3 days) is due.
            await service.start(NOTIFICATIONS_CLOCK_OFFSET_S=str(4 * 86400))
            await smtp.wait_for(2)
            sent = await sent_records(topics, expect=2)
            service.stop()

    kinds = [m.message["X-Referrals-Kind"] for m in smtp.received()]
    assert kinds == ["WON", "NURTURE"]
    nurture = smtp.received()[1]
    assert nurture.message_id == message_id("nina", "r1", K.NURTURE, 1)
    assert nurture.message["Subject"] == "Know someone else who would like us?"
    assert "https://referrals.example.com/r/nina" in nurture.part("plain")
    assert sorted(r.kind for r in sent) == ["NURTURE", "WON"]
