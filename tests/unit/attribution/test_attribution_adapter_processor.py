"""The attribution adapter without Kafka: the processor driven the way the runtime drives it
(process, punctuate, commit or abort, assign after a crash) over in-memory task stores and a
RocksDB directory. Routing, late shares, recovery of lost wakeups, unknown programs, stream
time and metrics, each checked on its own."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from attribution_builders import DAY, PROGRAM, T0, code_of, conversion, deal, profile, share
from prometheus_client import CollectorRegistry

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    DealStage,
    ProgramConfig,
    Record,
    ReferralStatusChanged,
)
from referrals.contract.topics import (
    ADVOCATES,
    CONVERSIONS,
    DEALS,
    DEALS_BY_PROSPECT,
    PROGRAMS,
    SHARES,
)
from referrals.platform.errors import UnknownProgram
from referrals.platform.metrics import RuntimeMetrics
from referrals.programs.document import canonical_json, parse_document, validate
from referrals.streams.processor import DeadLetterOut, Inbound, Outbound, Output
from referrals.streams.state import MemoryBackend, TaskStore
from services.attribution.adapters import processor as adapter
from services.attribution.adapters.processor import AttributionProcessor

CODEC = AvroCodec()
HOUR = timedelta(hours=1)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # the wall clock; events are in March
Backends = dict[tuple[int, str], MemoryBackend]


def program_config(
    program_id: str = PROGRAM, version: int = 1, status: str = "ACTIVE"
) -> ProgramConfig:
    text = (
        f"program_id: {program_id}\ncurrency: USD\nstatus: {status}\nrewards:\n  tiers:\n"
        '    - {from_referral: 1, amount: "50.00", reward_type: GIFT_CARD}\n'
    )
    document = canonical_json(validate(parse_document(text)))
    digest = hashlib.sha256(document.encode()).hexdigest()
    return ProgramConfig(program_id, version, document, digest, NOW - 400 * DAY)


class Harness:
    """Plays the runtime: one partition per task; commits stores, then calls `committed`."""

    def __init__(self, root: Path, backends: Backends | None = None, wait_s: float = 3600) -> None:
        self.registry = CollectorRegistry()
        self.processor = AttributionProcessor(
            RuntimeMetrics("attribution", self.registry),
            root / "directory",
            codec=CODEC,
            unknown_program_wait_s=wait_s,
            wall=NOW.timestamp,
        )
        self.backends: Backends = {} if backends is None else backends
        self.offsets: dict[tuple[str, int], int] = {}
        self.processor.task_stores = {}

    async def own(self, *tasks: int) -> None:
        for task in tasks:
            self.processor.task_stores[task] = {
                name: TaskStore(name, task, self.backends.setdefault((task, name), MemoryBackend()))
                for name in self.processor.stores
            }
        await self.processor.assign(frozenset(tasks))

    def global_record(self, topic: str, record: Record, partition: int = 0) -> None:
        self.processor.on_global(topic, None, record)
        self.processor.global_position(topic, partition, self._next_offset(topic, partition))

    def send(self, topic: str, record: Record, task: int = 0, now: datetime = NOW) -> list[Output]:
        """Processes one input record (and a forwarded deal) and commits the task."""
        inbound = Inbound(
            topic, task, self._next_offset(topic, task), "k", record, 1, b"k", CODEC.encode(record)
        )
        out = list(self.processor.process(inbound, now))
        self.commit(task)
        return out

    def punctuate(self, task: int = 0, now: datetime = NOW) -> list[Output]:
        out = list(self.processor.punctuate(task, now))
        self.commit(task)
        return out

    def pending_writes(self, task: int = 0) -> int:
        return sum(len(s.changes()) for s in self.processor.task_stores[task].values())

    def commit(self, task: int) -> None:
        for store in self.processor.task_stores[task].values():
            store.commit()
        self.processor.committed(task)

    def crash(self) -> Backends:
        """The process dies: RocksDB keeps what was written, task stores what was committed."""
        self.processor.close()
        return self.backends

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def _next_offset(self, topic: str, partition: int) -> int:
        offset = self.offsets.get((topic, partition), 0)
        self.offsets[topic, partition] = offset + 1
        return offset + 1


async def harness(root: Path, *, known: bool = True, wait_s: float = 3600) -> Harness:
    h = Harness(root, wait_s=wait_s)
    if known:
        h.global_record(PROGRAMS, program_config())
    await h.own(0)
    return h


def statuses(outputs: Iterable[Output]) -> list[tuple[str, str]]:
    found = []
    for o in outputs:
        if isinstance(o, Outbound) and isinstance(o.value, ReferralStatusChanged):
            assert o.key == o.value.advocate_id
            found.append((o.value.advocate_id, o.value.status.value))
    return found


async def test_a_deal_is_forwarded_unchanged_keyed_by_its_prospect(tmp_path: Path) -> None:
    """Unchanged: the record and the bytes it was consumed as (written as they are)."""
    h = await harness(tmp_path)
    event = deal("dl-1", DealStage.OPEN)
    consumed = CODEC.encode(event)
    forwarded = Outbound(DEALS_BY_PROSPECT, event.prospect_id, event, raw=consumed)
    assert h.send(DEALS, event) == [forwarded]
    assert h.metric("attribution_unmatched_waiting", kind="deal") == 0  # not decided here


async def test_a_conversion_with_a_known_share_is_a_lead_routed_to_the_owner(
    tmp_path: Path,
) -> None:
    h = await harness(tmp_path)
    h.global_record(ADVOCATES, profile("adv-a"))
    h.global_record(SHARES, share("sh-1", "adv-a"))
    out = h.send(CONVERSIONS, conversion(code=code_of("adv-a")))
    assert statuses(out) == [("adv-a", "LEAD")]
    lead = out[0].value
    assert isinstance(lead, ReferralStatusChanged) and lead.owner_rep_id == "rep-of-adv-a"
    assert lead.config_version == 1
    assert h.metric("attribution_matches_total", matched_by="CODE") == 1
    assert h.metric("attribution_statuses_total", status="LEAD") == 1
    assert h.metric("attribution_status_latency_seconds_count") == 1


@pytest.mark.parametrize(("status", "told"), [("ENDED", "REJECTED"), ("PAUSED", "LEAD")])
async def test_an_ended_program_rejects_a_new_referral_and_a_paused_one_still_attributes(
    tmp_path: Path, status: str, told: str
) -> None:
    h = await harness(tmp_path)
    h.global_record(PROGRAMS, program_config(version=2, status=status))
    h.global_record(ADVOCATES, profile("adv-a"))
    h.global_record(SHARES, share("sh-1", "adv-a"))
    out = h.send(CONVERSIONS, conversion(code=code_of("adv-a")))
    assert statuses(out) == [("adv-a", told)]
    record = out[0].value
    assert isinstance(record, ReferralStatusChanged) and record.config_version == 2
    ended = status == "ENDED"
    assert record.reason == ("PROGRAM_ENDED" if ended else None)
    assert h.metric("attribution_rejections_total", reason="PROGRAM_ENDED") == int(ended)


async def test_a_late_share_and_profile_wake_the_waiting_referral(tmp_path: Path) -> None:
    h = await harness(tmp_path)
    h.send(DEALS_BY_PROSPECT, deal("dl-1", DealStage.WON))
    assert h.send(CONVERSIONS, conversion(code=code_of("adv-a"))) == []
    assert h.metric("attribution_unmatched_waiting", kind="conversion") == 1
    assert h.metric("attribution_unmatched_waiting", kind="deal") == 1
    h.global_record(SHARES, share("sh-1", "adv-a"))
    assert h.punctuate() == []  # the advocate's profile is still missing
    h.global_record(ADVOCATES, profile("adv-a"))
    assert statuses(h.punctuate()) == [("adv-a", "LEAD"), ("adv-a", "WON")]
    assert h.metric("attribution_unmatched_waiting", kind="conversion") == 0
    assert h.metric("attribution_unmatched_waiting", kind="deal") == 0
    assert h.metric("attribution_wakeups_total") == 2


async def test_a_redelivered_conversion_has_no_second_effect(tmp_path: Path) -> None:
    h = await harness(tmp_path)
    h.global_record(ADVOCATES, profile("adv-a"))
    h.global_record(SHARES, share("sh-1", "adv-a"))
    assert statuses(h.send(CONVERSIONS, conversion(code=code_of("adv-a")))) == [("adv-a", "LEAD")]
    inbound = Inbound(CONVERSIONS, 0, 9, "k", conversion(code=code_of("adv-a")), 1)
    assert list(h.processor.process(inbound, NOW)) == []
    assert h.pending_writes() == 0
    assert h.metric("attribution_core_events_total", event="duplicates_ignored") == 0  # staged
    h.commit(0)
    assert h.metric("attribution_core_events_total", event="duplicates_ignored") == 1


async def test_an_idle_punctuation_emits_and_writes_nothing(tmp_path: Path) -> None:
    h = await harness(tmp_path)
    h.punctuate()  # the first one records the task's watermark
    h.send(CONVERSIONS, conversion(code=code_of("adv-a")))
    h.global_record(SHARES, share("sh-9", "adv-z", code="SOMEONE-ELSE"))
    assert list(h.processor.punctuate(0, NOW)) == []
    assert h.pending_writes() == 0  # so the runtime commits no transaction


async def test_a_redelivered_share_wakes_nothing_and_is_counted(tmp_path: Path) -> None:
    h = await harness(tmp_path)
    h.global_record(SHARES, share("sh-1", "adv-a"))
    h.global_record(SHARES, share("sh-1", "adv-a"))
    assert h.metric("attribution_duplicate_shares_total") == 1
    assert h.metric("attribution_records_in_total", topic=SHARES, channel="SHARE_URL") == 2


async def test_wakeups_lost_in_a_crash_are_recovered_from_the_change_log(tmp_path: Path) -> None:
    h = await harness(tmp_path)
    h.global_record(ADVOCATES, profile("adv-a"))
    h.send(CONVERSIONS, conversion(code=code_of("adv-a")))
    h.punctuate()
    h.global_record(SHARES, share("sh-1", "adv-a"))  # noted in memory, then the process dies
    backends = h.crash()
    again = Harness(tmp_path, backends)
    again.global_record(PROGRAMS, program_config())
    await again.own(0)
    assert statuses(again.punctuate()) == [("adv-a", "LEAD")]


async def test_after_too_many_arrivals_every_waiting_referral_is_decided_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await harness(tmp_path)
    h.global_record(ADVOCATES, profile("adv-a"))
    h.send(CONVERSIONS, conversion(code=code_of("adv-a")))
    h.punctuate()
    for n in range(3):
        h.global_record(SHARES, share(f"sh-other-{n}", "adv-z", code=f"OTHER-{n}"))
    h.global_record(SHARES, share("sh-1", "adv-a"))
    monkeypatch.setattr(adapter, "MAX_CATCH_UP", 2)
    again = Harness(tmp_path, h.crash())
    again.global_record(PROGRAMS, program_config())
    await again.own(0)
    assert again.processor.tasks[0].rescan_all
    assert statuses(again.punctuate()) == [("adv-a", "LEAD")]


async def test_a_moved_task_catches_up_on_shares_read_before_it_arrived(tmp_path: Path) -> None:
    a = await harness(tmp_path / "a")
    a.global_record(ADVOCATES, profile("adv-a"))
    a.send(CONVERSIONS, conversion(code=code_of("adv-a")))
    a.punctuate()
    b = Harness(tmp_path / "b", a.backends)  # another instance: its own directory
    b.global_record(PROGRAMS, program_config())
    b.global_record(ADVOCATES, profile("adv-a"))
    b.global_record(SHARES, share("sh-1", "adv-a"))  # read while task 0 was a's
    await b.own(0)  # a's committed stores, restored from the changelog
    assert statuses(b.punctuate()) == [("adv-a", "LEAD")]


async def test_an_event_of_an_unknown_program_waits_for_its_config(tmp_path: Path) -> None:
    h = await harness(tmp_path, known=False)
    h.global_record(ADVOCATES, profile("adv-a"))
    h.global_record(SHARES, share("sh-1", "adv-a"))
    assert h.send(CONVERSIONS, conversion(code=code_of("adv-a"))) == []
    assert h.metric("attribution_parked_events") == 1
    assert h.punctuate(now=NOW + timedelta(minutes=5)) == []
    h.global_record(PROGRAMS, program_config())
    assert statuses(h.punctuate(now=NOW + timedelta(minutes=6))) == [("adv-a", "LEAD")]
    assert h.metric("attribution_parked_events") == 0


async def test_parked_events_run_before_the_next_event_of_their_program(tmp_path: Path) -> None:
    h = await harness(tmp_path, known=False)
    h.global_record(ADVOCATES, profile("adv-a"))
    h.global_record(SHARES, share("sh-1", "adv-a"))
    h.send(CONVERSIONS, conversion(code=code_of("adv-a")))
    h.global_record(PROGRAMS, program_config())
    out = h.send(DEALS_BY_PROSPECT, deal("dl-1", DealStage.OPEN))  # before any punctuation
    assert statuses(out) == [("adv-a", "LEAD"), ("adv-a", "IN_PROGRESS")]


async def test_an_event_whose_program_never_arrives_is_dead_lettered(tmp_path: Path) -> None:
    h = await harness(tmp_path, known=False, wait_s=60)
    event = conversion(code="ANY")
    h.send(CONVERSIONS, event)
    assert h.punctuate(now=NOW + timedelta(seconds=59)) == []
    out = h.punctuate(now=NOW + timedelta(seconds=60))
    assert len(out) == 1 and isinstance(out[0], DeadLetterOut)
    letter = out[0]
    assert isinstance(letter.error, UnknownProgram) and letter.error.reason == "UNKNOWN_PROGRAM"
    assert letter.record.topic == CONVERSIONS and letter.record.offset == 1
    assert letter.record.raw_value == CODEC.encode(event)
    assert h.metric("attribution_parked_events") == 0


async def test_parked_events_survive_a_crash(tmp_path: Path) -> None:
    h = await harness(tmp_path, known=False, wait_s=60)
    h.send(CONVERSIONS, conversion(code="ANY"))
    again = Harness(tmp_path, h.crash(), wait_s=60)
    await again.own(0)
    out = again.punctuate(now=NOW + timedelta(seconds=61))
    assert [type(o) for o in out] == [DeadLetterOut]


async def test_stream_time_drops_a_deal_nobody_claimed(tmp_path: Path) -> None:
    h = await harness(tmp_path)
    h.send(DEALS_BY_PROSPECT, deal("dl-1", DealStage.OPEN, at=T0))  # waits until T0 + 90 days
    assert h.metric("attribution_unmatched_waiting", kind="deal") == 1
    h.send(CONVERSIONS, conversion("cv-8", prospect="prospect-8", at=T0 + 90 * DAY))
    assert h.metric("attribution_unmatched_dropped_total", kind="deal") == 0  # still in time
    h.send(CONVERSIONS, conversion("cv-9", prospect="prospect-9", at=T0 + 90 * DAY + HOUR))
    assert h.metric("attribution_unmatched_dropped_total", kind="deal") == 1
    assert h.metric("attribution_unmatched_waiting", kind="deal") == 0


async def test_an_aborted_transaction_counts_nothing(tmp_path: Path) -> None:
    h = await harness(tmp_path)
    h.global_record(ADVOCATES, profile("adv-a"))
    h.global_record(SHARES, share("sh-1", "adv-a"))
    inbound = Inbound(CONVERSIONS, 0, 1, "k", conversion(code=code_of("adv-a")), 1)
    assert statuses(h.processor.process(inbound, NOW)) == [("adv-a", "LEAD")]
    h.processor.aborted(0)
    assert h.metric("attribution_matches_total", matched_by="CODE") == 0
    assert h.metric("attribution_status_latency_seconds_count") == 0


async def test_a_share_that_arrived_before_the_deadline_hour_attributes_though_no_timer_ran(
    tmp_path: Path,
) -> None:
    """Found in `make demo DEMO_SECONDS=1` (a year in a second: 200 ms between punctuations is
    73 days of event time): a conversion waiting for its share, the share read into the
    directory, and the next input moving stream time past the conversion's window before any
    punctuation woke it. It was dropped unmatched (23 of 907 referrals lost in one run); how
    many depended on how the timers fell. What arrived is decided before anything expires."""
    h = await harness(tmp_path)
    h.global_record(ADVOCATES, profile("adv-a"))
    assert h.send(CONVERSIONS, conversion(code=code_of("adv-a"), at=T0)) == []
    h.global_record(SHARES, share("sh-1", "adv-a"))  # read now; no punctuation yet
    late = conversion("cv-9", prospect="prospect-9", at=T0 + 91 * DAY)
    assert statuses(h.send(CONVERSIONS, late)) == [("adv-a", "LEAD")]
    assert h.metric("attribution_unmatched_dropped_total", kind="conversion") == 0
    assert h.metric("attribution_statuses_total", status="LEAD") == 1
    assert h.punctuate() == []  # decided once, not again at the next timer


async def test_nothing_expires_while_the_shares_follower_is_behind_the_inputs(
    tmp_path: Path,
) -> None:
    """A backlog replayed at speed: the conversions run a window of event time ahead of the
    shares follower, whose share for the waiting conversion is published but not yet read.
    Expiring then would drop a referral that has its share; it waits for the follower."""
    h = await harness(tmp_path)
    h.global_record(ADVOCATES, profile("adv-a"))
    assert h.send(CONVERSIONS, conversion(code=code_of("adv-a"), at=T0)) == []
    h.processor.global_behind(SHARES, 0, 40)  # the follower knows it is 40 offsets short
    late = conversion("cv-9", prospect="prospect-9", at=T0 + 91 * DAY)
    assert h.send(CONVERSIONS, late) == []
    assert h.punctuate() == []
    assert h.metric("attribution_unmatched_dropped_total", kind="conversion") == 0
    h.global_record(SHARES, share("sh-1", "adv-a"))
    h.processor.global_behind(SHARES, 0, 0)  # caught up
    assert statuses(h.punctuate()) == [("adv-a", "LEAD")]
    assert h.metric("attribution_unmatched_dropped_total", kind="conversion") == 0


async def test_an_expiry_held_while_the_follower_lagged_is_applied_once_it_caught_up(
    tmp_path: Path,
) -> None:
    h = await harness(tmp_path)
    h.send(DEALS_BY_PROSPECT, deal("dl-1", DealStage.OPEN, at=T0))  # waits until T0 + 90 days
    h.processor.global_behind(ADVOCATES, 3, 1)
    h.processor.global_behind(PROGRAMS, 0, 5)  # not the directory: no reason to wait
    h.send(CONVERSIONS, conversion("cv-9", prospect="prospect-9", at=T0 + 91 * DAY))
    h.processor.global_behind(ADVOCATES, 3, 0)
    assert h.metric("attribution_unmatched_dropped_total", kind="deal") == 0
    h.punctuate()  # no input needed: the timers apply the held horizon
    assert h.metric("attribution_unmatched_dropped_total", kind="deal") == 1
    assert h.metric("attribution_unmatched_waiting", kind="deal") == 0
