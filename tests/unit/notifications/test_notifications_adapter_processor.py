"""The notifications processor with in-memory stores and a recording sender: what it stages,
when it hands messages over (only after a commit), how it records outcomes, what it resends
after a restart, its timers and the records that wait for their program."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from notifications_builders import ADVOCATE, DAY, NOW, PROGRAM_ID, TIERS, profile, share, status

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    NotificationSent,
    ProgramConfig,
    Record,
    ReferralStatus,
    UnsubscribeRequest,
)
from referrals.contract.topics import ADVOCATES, SHARES, STATUS, UNSUBSCRIBES, spec_for
from referrals.platform.errors import PermanentError
from referrals.platform.metrics import RuntimeMetrics
from referrals.programs.document import canonical_json, validate
from referrals.programs.model import MessageKind, NotificationChannel
from referrals.streams.processor import DeadLetterOut, Inbound, Outbound
from referrals.streams.state import MemoryBackend, TaskStore
from referrals.streams.timers import parse_timer_key
from referrals.streams.topics import check_key
from services.notifications.adapters.config import NotificationsSettings
from services.notifications.adapters.delivery import Delivery, Outcome
from services.notifications.adapters.processor import NotificationsProcessor
from services.notifications.adapters.storage import Journaled
from services.notifications.domain.ids import notification_id

S, EMAIL, WEBHOOK = ReferralStatus, NotificationChannel.EMAIL, NotificationChannel.WEBHOOK
CODEC = AvroCodec()


@dataclass
class RecordingSender:
    submitted: list[Delivery] = field(default_factory=list)
    drained: list[frozenset[int]] = field(default_factory=list)

    def submit(self, delivery: Delivery) -> None:
        self.submitted.append(delivery)

    async def drain(self, tasks: frozenset[int], grace_s: float) -> None:
        self.drained.append(tasks)

    async def close(self) -> None:
        pass


@dataclass
class Harness:
    processor: NotificationsProcessor
    sender: RecordingSender
    clock: list[datetime]
    offsets: dict[str, int] = field(default_factory=dict)

    def feed(self, topic: str, record: Record, key: str | None = None) -> list[Any]:
        offset = self.offsets[topic] = self.offsets.get(topic, -1) + 1
        raw = CODEC.encode(record)
        key = key if key is not None else record.advocate_id  # type: ignore[union-attr]
        inbound = Inbound(topic, 0, offset, key, record, 0, key.encode(), raw)
        if topic in self.processor.keyed_inputs:  # as the runtime does before `process`
            check_key(spec_for(topic), key, record)
        return list(self.processor.process(inbound, self.clock[0]))

    def punctuate(self) -> list[Any]:
        return list(self.processor.punctuate(0, self.clock[0]))

    def commit(self) -> None:
        for store in self.processor.task_stores[0].values():
            store.commit()
        self.processor.committed(0)

    def abort(self) -> None:
        for store in self.processor.task_stores[0].values():
            store.abort()
        self.processor.aborted(0)

    async def restart(self) -> None:
        """A crash: in-memory state is lost, committed stores survive."""
        stores = self.processor.task_stores
        self.processor = _processor(self.clock, self.processor.settings)
        self.processor.task_stores = stores
        self.sender = self.processor.sender = RecordingSender()  # type: ignore[assignment]
        _program(self.processor)
        await self.processor.assign(frozenset({0}))

    def metric(self, name: str, **labels: str) -> float:
        value = self.processor.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


def _program(processor: NotificationsProcessor, **notifications: Any) -> None:
    doc = validate(
        {
            "program_id": PROGRAM_ID,
            "currency": "USD",
            "rewards": {"tiers": TIERS},
            "notifications": {"rate_limit": {"max_per_day": 20}, **notifications},
        }
    )
    text = canonical_json(doc)
    digest = hashlib.sha256(text.encode()).hexdigest()
    known = processor.programs.get(PROGRAM_ID)
    version = 1 if known is None else known.version + 1  # the newest version is in force
    config = ProgramConfig(PROGRAM_ID, version, text, digest, NOW)
    processor.on_global("programs.config.v1", PROGRAM_ID, config)


def _processor(clock: list[datetime], settings: NotificationsSettings) -> NotificationsProcessor:
    return NotificationsProcessor(RuntimeMetrics("notifications"), settings, lambda: clock[0])


@pytest.fixture
async def h(tmp_path: Path) -> Harness:
    clock = [NOW]
    settings = NotificationsSettings(state_dir=tmp_path, unknown_program_wait_s=60)
    processor = _processor(clock, settings)
    processor.task_stores = {0: {n: TaskStore(n, 0, MemoryBackend()) for n in processor.stores}}
    sender = RecordingSender()
    processor.sender = sender  # type: ignore[assignment]
    _program(processor)
    await processor.assign(frozenset({0}))
    return Harness(processor, sender, clock)


def _accepted(delivery: Delivery, channel: NotificationChannel, at: datetime) -> Outcome:
    return Outcome(delivery.task, delivery.message, channel, 1, at)


def _known(h: Harness) -> None:
    h.feed(ADVOCATES, profile())
    h.commit()


# == staging and hand-over =====================================================================
def test_a_message_is_handed_to_the_sender_only_once_its_transaction_commits(h: Harness) -> None:
    _known(h)
    assert h.feed(STATUS, status("r1", S.LEAD)) == []
    assert h.sender.submitted == []
    h.commit()
    [delivery] = h.sender.submitted
    assert delivery.message.notification_id == notification_id(ADVOCATE, "r1", MessageKind.LEAD, 0)
    assert delivery.channels == (EMAIL,)


def test_nothing_is_sent_for_an_aborted_transaction(h: Harness) -> None:
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.abort()
    h.commit()  # the next transaction has nothing of it
    assert h.sender.submitted == []


def test_an_accepted_delivery_is_recorded_once_at_the_next_punctuation(h: Harness) -> None:
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    [delivery] = h.sender.submitted
    accepted_at = NOW + timedelta(seconds=1)
    h.processor._reported(_accepted(delivery, EMAIL, accepted_at))
    h.processor._reported(_accepted(delivery, EMAIL, accepted_at))  # reported twice
    [out] = h.punctuate()
    h.commit()
    assert isinstance(out, Outbound) and isinstance(out.value, NotificationSent)
    assert (out.topic, out.key) == ("notifications.sent.v1", ADVOCATE)
    assert (out.value.notification_id, out.value.channel, out.value.kind) == (
        delivery.message.notification_id,
        "EMAIL",
        "LEAD",
    )
    assert out.value.sent_at == accepted_at
    assert h.punctuate() == []


def test_a_message_on_two_channels_is_settled_when_both_are(h: Harness) -> None:
    _program(h.processor, channels=["EMAIL", "WEBHOOK"], webhook={"url": "https://crm.example/h"})
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    [delivery] = h.sender.submitted
    h.processor._reported(_accepted(delivery, WEBHOOK, NOW))
    assert len(h.punctuate()) == 1
    h.commit()
    h.processor._reported(Outcome(0, delivery.message, EMAIL, 1, None, "SMTP_REJECTED", "554"))
    [dead] = h.punctuate()
    h.commit()
    assert isinstance(dead, DeadLetterOut)
    assert dead.error.reason == "SMTP_REJECTED"
    assert (dead.record.topic, dead.record.offset, dead.record.raw_key) == (
        "notifications.sent.v1",
        -1,
        ADVOCATE.encode(),
    )
    body = json.loads(dead.record.raw_value or b"")
    assert (body["channel"], body["attempts"], body["reason"]) == ("EMAIL", 1, "SMTP_REJECTED")
    assert (
        h.metric(
            "referrals_notifications_dead_lettered_total", channel="EMAIL", reason="SMTP_REJECTED"
        )
        == 1
    )


# == restarts ==================================================================================
async def test_after_a_crash_unrecorded_messages_are_resent_with_the_same_id(h: Harness) -> None:
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.feed(STATUS, status("r2", S.LEAD))
    h.commit()
    first, second = h.sender.submitted
    h.processor._reported(_accepted(first, EMAIL, NOW))
    h.punctuate()
    h.commit()  # r1 recorded; r2 accepted by nobody yet, then the crash
    await h.restart()
    assert h.sender.submitted == []  # tried at the next punctuation, once that commits
    h.punctuate()
    h.commit()
    [resent] = h.sender.submitted
    assert resent.message.notification_id == second.message.notification_id
    assert resent.channels == (EMAIL,)
    assert h.metric("referrals_notifications_resends_total", channel="EMAIL") == 1


async def test_a_clean_stop_journals_accepted_deliveries_which_are_recorded_not_resent(
    h: Harness,
) -> None:
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    [delivery] = h.sender.submitted
    h.processor._reported(_accepted(delivery, EMAIL, NOW))
    await h.processor.revoke(frozenset({0}))  # a clean stop before the next punctuation
    await h.restart()
    assert h.sender.submitted == []
    [out] = h.punctuate()
    assert (
        isinstance(out, Outbound) and out.value.notification_id == delivery.message.notification_id
    )  # type: ignore[union-attr]


async def test_a_stale_journal_records_nothing_twice(h: Harness, tmp_path: Path) -> None:
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    [delivery] = h.sender.submitted
    h.processor._reported(_accepted(delivery, EMAIL, NOW))
    h.punctuate()
    h.commit()
    nid = delivery.message.notification_id
    h.processor.journal.write(0, [Journaled(nid, EMAIL, 1, 0)])  # recorded already elsewhere
    await h.restart()
    assert h.sender.submitted == [] and h.punctuate() == []


async def test_after_a_crash_a_message_past_its_deadline_is_dead_lettered_not_resent(
    h: Harness,
) -> None:
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    h.clock[0] = NOW + 8 * DAY  # the service was down past the delivery deadline (a day)
    await h.restart()
    [dead] = h.punctuate()
    h.commit()
    assert h.sender.submitted == []
    assert isinstance(dead, DeadLetterOut) and dead.error.reason == "DEADLINE_EXCEEDED"
    assert list(h.processor.task_stores[0]["index"].items()) == []


async def test_a_message_to_an_advocate_who_opted_out_since_is_not_resent(h: Harness) -> None:
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    h.feed(UNSUBSCRIBES, UnsubscribeRequest("us-1", ADVOCATE, PROGRAM_ID, "LINK", NOW, NOW))
    h.commit()
    await h.restart()
    assert h.punctuate() == []
    h.commit()
    assert h.sender.submitted == []
    assert list(h.processor.task_stores[0]["index"].items()) == []


# == waiting for a relay that is down ===========================================================
def _failed(delivery: Delivery, reason: str = "CONNECTION") -> Outcome:
    return Outcome(delivery.task, delivery.message, EMAIL, 1, None, reason, "refused", True)


def _retry_keys(h: Harness) -> list[bytes]:
    """The retry timers' keys (the index's own id and count keys start at 0x80 and above)."""
    index = h.processor.task_stores[0]["index"].items()
    return [k for k, _ in index if k.startswith(b"r") and k[1] < 0x80]


def _short(tmp_path: Path, **settings: Any) -> NotificationsSettings:
    return NotificationsSettings(state_dir=tmp_path, unknown_program_wait_s=60, **settings)


async def test_a_failure_for_now_waits_in_the_store_and_is_retried_with_its_id_when_due(
    h: Harness,
) -> None:
    h.processor.rand = lambda: 0.0
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    [first] = h.sender.submitted
    h.processor._reported(_failed(first))
    assert h.punctuate() == []  # no record, no dead letter: it waits
    h.commit()
    assert len(_retry_keys(h)) == 1
    assert h.metric("referrals_notifications_waiting_messages") == 1
    assert h.metric("referrals_notifications_retries_total", channel="EMAIL") == 1
    # Durable: a crash loses nothing; the retry is not due before its backoff (0.25 s here).
    await h.restart()
    h.punctuate()
    h.commit()
    assert h.sender.submitted == []
    h.clock[0] = NOW + timedelta(seconds=1)
    h.punctuate()
    h.commit()
    [again] = h.sender.submitted
    assert again.message.notification_id == first.message.notification_id
    assert _retry_keys(h) == []
    h.processor._reported(_accepted(again, EMAIL, h.clock[0]))
    [out] = h.punctuate()
    h.commit()
    assert isinstance(out, Outbound) and out.value.notification_id == first.message.notification_id
    assert list(h.processor.task_stores[0]["index"].items()) == []


async def test_the_deadline_not_a_count_of_tries_ends_a_delivery(h: Harness) -> None:
    h.processor.rand = lambda: 0.999
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    tries, gaps = 0, []
    while True:
        [delivery] = h.sender.submitted
        h.sender.submitted.clear()
        h.processor._reported(_failed(delivery))
        tries += 1
        out = h.punctuate()
        h.commit()
        if out:
            break
        [due] = [parse_timer_key(key[1:]).due_ms for key in _retry_keys(h)]
        gaps.append(due - int(h.clock[0].timestamp() * 1000))
        h.clock[0] = datetime.fromtimestamp(due / 1000, h.clock[0].tzinfo)
        out = h.punctuate()  # hands the retry over; past the deadline, dead-letters it instead
        h.commit()
        if out:
            break
    [dead] = out
    assert isinstance(dead, DeadLetterOut) and dead.error.reason == "DEADLINE_EXCEEDED"
    assert tries > 1000  # a day of retries, at most 60 s apart
    assert max(gaps) <= 60_000
    assert h.clock[0] - NOW == timedelta(days=1)


async def test_past_the_deadline_a_waiting_message_goes_to_the_dlq(tmp_path: Path) -> None:
    clock = [NOW]
    processor = _processor(clock, _short(tmp_path, delivery_deadline_s=10))
    processor.task_stores = {0: {n: TaskStore(n, 0, MemoryBackend()) for n in processor.stores}}
    h = Harness(processor, RecordingSender(), clock)
    processor.sender = h.sender  # type: ignore[assignment]
    _program(processor)
    await processor.assign(frozenset({0}))
    processor.rand = lambda: 0.0
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    [delivery] = h.sender.submitted
    h.processor._reported(_failed(delivery))
    h.punctuate()
    h.commit()
    h.clock[0] = NOW + timedelta(seconds=10)
    [dead] = h.punctuate()
    h.commit()
    assert isinstance(dead, DeadLetterOut) and dead.error.reason == "DEADLINE_EXCEEDED"
    body = json.loads(dead.record.raw_value or b"")
    assert (body["reason"], body["attempts"]) == ("DEADLINE_EXCEEDED", 1)
    assert "within 10 s" in body["error"] and "refused" in body["error"]  # the last error
    assert list(processor.task_stores[0]["index"].items()) == []
    assert h.metric("referrals_notifications_waiting_messages") == 0


async def test_a_permanent_refusal_goes_to_the_dlq_at_once_even_after_failures_for_now(
    h: Harness,
) -> None:
    h.processor.rand = lambda: 0.0
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    [delivery] = h.sender.submitted
    h.processor._reported(_failed(delivery))
    h.punctuate()
    h.commit()
    h.clock[0] = NOW + timedelta(seconds=1)
    h.punctuate()
    h.commit()
    refused = Outcome(0, delivery.message, EMAIL, 1, None, "RECIPIENT_REFUSED", "550 no such user")
    h.processor._reported(refused)
    [dead] = h.punctuate()
    h.commit()
    assert isinstance(dead, DeadLetterOut) and dead.error.reason == "RECIPIENT_REFUSED"
    assert json.loads(dead.record.raw_value or b"")["attempts"] == 2


async def _in_memory(tmp_path: Path, **settings: Any) -> Harness:
    """A harness on in-memory stores with `settings`, the program known, task 0 assigned."""
    clock = [NOW]
    processor = _processor(clock, _short(tmp_path, **settings))
    processor.task_stores = {0: {n: TaskStore(n, 0, MemoryBackend()) for n in processor.stores}}
    h = Harness(processor, RecordingSender(), clock)
    processor.sender = h.sender  # type: ignore[assignment]
    _program(processor)
    await processor.assign(frozenset({0}))
    _known(h)
    return h


async def test_no_more_than_max_in_flight_deliveries_are_held_in_memory(tmp_path: Path) -> None:
    h = await _in_memory(tmp_path, max_in_flight=2)
    for referral in ("r1", "r2", "r3", "r4", "r5"):
        h.feed(STATUS, status(referral, S.LEAD))
    h.commit()
    assert [d.message.referral_id for d in h.sender.submitted] == ["r1", "r2"]
    assert len(_retry_keys(h)) == 3  # the rest wait in the store, due now
    h.punctuate()
    h.commit()
    assert len(h.sender.submitted) == 2  # still full
    for delivery in list(h.sender.submitted):
        h.processor._reported(_accepted(delivery, EMAIL, NOW))
    h.punctuate()  # records two, then hands over two more
    h.commit()
    handed = [d.message.referral_id for d in h.sender.submitted]
    assert len(handed) == 4 and len(set(handed)) == 4
    assert len(_retry_keys(h)) == 1


async def test_a_thank_you_skips_the_queue_of_messages_waiting_for_room(tmp_path: Path) -> None:
    # Finding: at 1,000 input events/s the sender was full and a WON's thank-you waited in the
    # store behind every message due before it: seconds, against the promise of one.
    h = await _in_memory(tmp_path, max_in_flight=2, urgent_in_flight=1)
    for referral in ("r1", "r2", "r3"):
        h.feed(STATUS, status(referral, S.LEAD))
    h.feed(STATUS, status("w1", S.WON))
    h.feed(STATUS, status("w2", S.WON))
    h.commit()
    handed = [(d.message.referral_id, d.message.kind) for d in h.sender.submitted]
    assert handed == [("r1", MessageKind.LEAD), ("r2", MessageKind.LEAD), ("w1", MessageKind.WON)]
    assert len(_retry_keys(h)) == 2  # r3's and w2's: the thank-yous' room is bounded too


# == timers ====================================================================================
def test_a_nurture_step_fires_when_due_and_not_before(h: Harness) -> None:
    _program(h.processor, nurture_days=[3])
    _known(h)
    h.feed(STATUS, status("r1", S.WON))
    h.commit()
    assert [d.message.kind for d in h.sender.submitted] == [MessageKind.WON]
    h.clock[0] = NOW + 3 * DAY - timedelta(seconds=1)
    h.punctuate()
    h.commit()
    assert len(h.sender.submitted) == 1
    h.clock[0] = NOW + 3 * DAY
    h.punctuate()
    h.commit()
    nurture = h.sender.submitted[-1].message
    assert (nurture.kind, nurture.step) == (MessageKind.NURTURE, 1)
    assert h.metric("referrals_notifications_timers") == 0


async def test_a_timer_failing_halfway_commits_nothing_and_runs_again_without_a_rebalance(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Finding: a catch-all around each advocate's timer let the punctuation commit the state
    # `_save` had written (the nurture step counted as sent) with the timer gone and nothing
    # sent. The failure now raises to the runtime, which aborts the transaction, reports the
    # task's timers not ready, rebuilds the task and runs its timers again with backoff.
    _program(h.processor, nurture_days=[3])
    _known(h)
    h.feed(STATUS, status("r1", S.WON))
    h.commit()
    h.clock[0] = NOW + 3 * DAY
    real = h.processor._carry_out

    def fails_after_saving(*args: Any) -> None:
        raise RuntimeError("a bug after the state was saved")

    monkeypatch.setattr(h.processor, "_carry_out", fails_after_saving)
    with pytest.raises(RuntimeError, match="a bug after the state was saved"):
        h.punctuate()
    h.abort()  # as the runtime does: nothing of the punctuation commits
    await h.processor.revoke(frozenset({0}))  # and the task is rebuilt from its stores
    await h.processor.assign(frozenset({0}))
    assert h.metric("referrals_notifications_timers") == 1
    monkeypatch.setattr(h.processor, "_carry_out", real)  # the fault is gone
    h.punctuate()
    h.commit()
    nurture = h.sender.submitted[-1].message
    assert (nurture.kind, nurture.step) == (MessageKind.NURTURE, 1)
    assert h.metric("referrals_notifications_timers") == 0


def test_a_share_cancels_the_nurture_and_its_timer(h: Harness) -> None:
    _program(h.processor, nurture_days=[3])
    _known(h)
    h.feed(STATUS, status("r1", S.WON))
    h.feed(SHARES, share(NOW + timedelta(hours=1)))
    h.commit()
    h.clock[0] = NOW + 4 * DAY
    h.punctuate()
    h.commit()
    assert [d.message.kind for d in h.sender.submitted] == [MessageKind.WON]
    assert h.metric("referrals_notifications_suppressed_total", reason="SUPERSEDED_BY_SHARE") == 1


# == inputs ====================================================================================
def test_an_unsubscribe_stops_every_later_message(h: Harness) -> None:
    _known(h)
    request = UnsubscribeRequest("us-1", ADVOCATE, PROGRAM_ID, "LINK", NOW, NOW)
    h.feed(UNSUBSCRIBES, request)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    assert h.sender.submitted == []
    assert h.metric("referrals_notifications_suppressed_total", reason="OPTED_OUT") == 1


def test_a_record_keyed_other_than_by_its_advocate_is_bad_input(h: Harness) -> None:
    with pytest.raises(PermanentError) as err:
        h.feed(STATUS, status("r1", S.LEAD), key="someone-else")
    assert err.value.reason == "KEY_MISMATCH"


def test_records_wait_for_their_program_then_go_on_in_order(h: Harness) -> None:
    h.processor.programs = type(h.processor.programs)()  # no program known yet
    h.feed(ADVOCATES, profile())
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    assert h.sender.submitted == [] and h.metric("referrals_notifications_parked") == 2
    _program(h.processor)
    h.punctuate()
    h.commit()
    assert [d.message.referral_id for d in h.sender.submitted] == ["r1"]
    assert h.metric("referrals_notifications_parked") == 0


def test_a_record_whose_program_never_arrives_goes_to_the_dlq(h: Harness) -> None:
    h.processor.programs = type(h.processor.programs)()
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    h.clock[0] = NOW + timedelta(seconds=59)
    assert h.punctuate() == []
    h.clock[0] = NOW + timedelta(seconds=60)
    [dead] = h.punctuate()
    assert isinstance(dead, DeadLetterOut)
    assert dead.error.reason == "UNKNOWN_PROGRAM"
    assert (dead.record.topic, dead.record.offset) == (STATUS, 0)


# == erasure ===================================================================================
def _erase(h: Harness, advocate_id: str = ADVOCATE) -> list[Any]:
    """A tombstone on the advocates topic, as the runtime hands it over (`deleted`)."""
    offset = h.offsets[ADVOCATES] = h.offsets.get(ADVOCATES, -1) + 1
    inbound = Inbound(ADVOCATES, 0, offset, advocate_id, None, 0, advocate_id.encode(), None)
    return list(h.processor.deleted(inbound, h.clock[0]))


def _personal(h: Harness) -> list[bytes]:
    """Every stored value that holds the advocate's address or name."""
    found = []
    for store in h.processor.task_stores[0].values():
        for _, value in store.items():
            if b"alex@example.com" in value or b"Alex Doe" in value:
                found.append(value)
    return found


async def test_an_erasure_cancels_waiting_messages_and_leaves_no_personal_data(
    h: Harness,
) -> None:
    h.processor.rand = lambda: 0.0
    _program(h.processor, nurture_days=[3])
    _known(h)
    h.feed(STATUS, status("r1", S.WON))
    h.commit()
    [first] = h.sender.submitted
    h.processor._reported(_failed(first))  # the relay is down: the message waits for a retry
    h.punctuate()
    h.commit()
    assert len(_retry_keys(h)) == 1 and _personal(h)
    _erase(h)
    h.commit()
    assert _personal(h) == [] and _retry_keys(h) == []
    assert [k for k, _ in h.processor.task_stores[0]["index"].items() if k[:1] == b"o"] == []
    assert h.metric("referrals_notifications_suppressed_total", reason="ADVOCATE_ERASED") == 2
    assert h.metric("referrals_notifications_erasures_total") == 1
    # Nothing goes out afterwards: not the retry, not the nurture step, not a new status.
    await h.restart()
    h.clock[0] = NOW + 4 * DAY
    h.feed(STATUS, status("r2", S.LEAD, at=h.clock[0]))
    h.punctuate()
    h.commit()
    assert h.sender.submitted == []
    assert h.metric("referrals_notifications_suppressed_total", reason="ADVOCATE_ERASED") == 1
    _erase(h)  # idempotent
    h.commit()
    assert _personal(h) == []


def test_an_erasure_drops_the_advocates_records_waiting_for_their_program(h: Harness) -> None:
    h.processor.programs = type(h.processor.programs)()  # no program known yet
    h.feed(ADVOCATES, profile())
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    assert _personal(h)  # the waiting profile's bytes
    _erase(h)
    h.commit()
    assert _personal(h) == [] and h.metric("referrals_notifications_parked") == 0
    _program(h.processor)
    assert h.punctuate() == []
    h.commit()
    assert h.sender.submitted == []


def test_a_profile_after_an_erasure_enrols_the_advocate_again(h: Harness) -> None:
    _known(h)
    _erase(h)
    h.commit()
    _known(h)
    h.feed(STATUS, status("r1", S.LEAD))
    h.commit()
    assert [d.message.referral_id for d in h.sender.submitted] == ["r1"]
