"""Attribution survives crashes and shares its work: a few hundred referrals through every kind
of match (code, email, declared, a share or profile arriving late, conflicts, self-referral,
outside the window, deals claiming by themselves) give exactly the statuses of the reference
loop (`InMemoryAttribution` over the same events), whether the service is SIGKILLed mid-stream
and restarted, or two instances split the work and one of them stops."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    ReferralStatusChanged,
    ShareEvent,
)
from referrals.contract.topics import ADVOCATES, CONVERSIONS, DEALS, SHARES
from referrals.platform.settings import KafkaSettings
from services.attribution.domain.memory import InMemoryAttribution
from services.attribution.domain.model import DictDirectory, Policy, Rules

from .test_attribution_support import (
    DAY,
    PROGRAM,
    T0,
    Service,
    conversion,
    deal,
    eventually,
    eventually_async,
    profile,
    publish,
    put_program,
    sha,
    share,
    spawn,
    statuses,
)

pytestmark = pytest.mark.broker
PROSPECTS = 240
KNOWN = [f"adv-{n:02d}" for n in range(30)]  # profiles known from the start
LATE = [f"adv-{n:02d}" for n in range(30, 35)]  # profiles published after the conversions
# Small batches: many transactions, so a kill lands inside the stream, not after it.
SLOW = {"ATTRIBUTION_MAX_BATCH": "5"}


@dataclass
class Scenario:
    """The events, in the order they are published, by phase."""

    known: list[AdvocateProfile | ShareEvent] = field(default_factory=list)
    conversions: list[ConversionEvent] = field(default_factory=list)
    late: list[AdvocateProfile | ShareEvent] = field(default_factory=list)
    deals: list[DealEvent] = field(default_factory=list)


def _code(advocate_id: str) -> str:
    return f"CODE-{advocate_id}"


def _touch(n: int) -> int:
    return 1 + (n * 7) % 50  # days before T0: distinct-ish touch times for the policy


def scenario() -> Scenario:
    s = Scenario()
    s.known += [profile(a) for a in KNOWN]
    s.known += [
        share(f"sh-{a}", a, Channel.SHARE_URL, _code(a), at=T0 - _touch(n) * DAY)
        for n, a in enumerate(KNOWN + LATE)
    ]
    s.known.append(share("sh-old", "adv-00", Channel.PRINT_CARD, "OLD", at=T0 - 120 * DAY))
    for i in range(PROSPECTS):
        _prospect(s, i)
    s.late += [profile(a) for a in LATE]
    for j in range(20):  # a deal naming its advocate creates the referral by itself
        declared = KNOWN[(j * 3) % 30]
        for n, stage in enumerate((DealStage.OPEN, DealStage.WON)):
            s.deals.append(deal(f"dq-{j}-{n}", f"q-{j:03d}", stage, declared=declared))
    return s


def _prospect(s: Scenario, i: int) -> None:
    prospect, advocate = f"p-{i:03d}", KNOWN[i % 30]
    email = sha(f"{prospect}@example.com")
    kind = i % 7
    if kind == 0:
        s.conversions.append(conversion(f"cv-{i}", prospect, code=_code(advocate)))
    elif kind == 1:
        s.known.append(share(f"se-{i}", advocate, Channel.EMAIL, f"E-{i}", email=email))
        s.conversions.append(conversion(f"cv-{i}", prospect, email=email))
    elif kind == 2:
        own = sha(f"{advocate}@example.com") if i % 3 == 0 else None  # some refer themselves
        s.conversions.append(conversion(f"cv-{i}", prospect, declared=advocate, email=own))
    elif kind == 3:  # the share arrives after the conversion
        s.conversions.append(conversion(f"cv-{i}", prospect, code=f"LATE-{i}"))
        s.late.append(share(f"sl-{i}", advocate, Channel.SOCIAL, f"LATE-{i}", at=T0 - 3 * DAY))
    elif kind == 4:  # the advocate's profile arrives after the conversion
        s.conversions.append(conversion(f"cv-{i}", prospect, code=_code(LATE[i % 5])))
    elif kind == 5:  # two advocates claim the prospect: FIRST_TOUCH decides
        rival = KNOWN[(i + 11) % 30]
        s.conversions.append(conversion(f"cv-{i}", prospect, code=_code(advocate)))
        s.conversions.append(conversion(f"cv-{i}-b", prospect, code=_code(rival), at=T0 + DAY))
    else:
        s.conversions.append(conversion(f"cv-{i}", prospect, code="OLD"))  # outside the window
    stages = [
        (DealStage.OPEN, DealStage.WON),
        (DealStage.OPEN, DealStage.QUALIFIED, DealStage.WON),
        (DealStage.OPEN, DealStage.LOST),
        (DealStage.WON, DealStage.REVERSED),
    ][i % 4]
    for n, stage in enumerate(stages):
        s.deals.append(deal(f"dl-{i}-{n}", prospect, stage, at=T0 + (n + 2) * DAY))


def oracle(s: Scenario) -> tuple[dict[str, ReferralStatusChanged], int]:
    """The reference statuses by status_id, and how many precede the deals."""
    rules = Rules(program_id=PROGRAM, version=1, window_days=90, policy=Policy.FIRST_TOUCH)
    engine = InMemoryAttribution(DictDirectory(rules=[rules]))
    for event in [*s.known, *s.conversions, *s.late, *s.deals]:
        if isinstance(event, AdvocateProfile):
            engine.profile(event)
        elif isinstance(event, ShareEvent):
            engine.share(event)
        elif isinstance(event, ConversionEvent):
            engine.conversion(event)
        else:
            engine.deal(event)
        if event is s.late[-1]:
            before_deals = len(engine.outputs)
    return {o.status_id: o for o in engine.outputs}, before_deals


def _publish_globals(topics: KafkaSettings, events: list[AdvocateProfile | ShareEvent]) -> None:
    publish(topics, ADVOCATES, [e for e in events if isinstance(e, AdvocateProfile)])
    publish(topics, SHARES, [e for e in events if isinstance(e, ShareEvent)])


async def _seen(topics: KafkaSettings) -> dict[str, list[ReferralStatusChanged]]:
    by_id: dict[str, list[ReferralStatusChanged]] = defaultdict(list)
    for record in await statuses(topics, within=3):
        by_id[record.status_id].append(record)
    return by_id


async def _until_distinct(topics: KafkaSettings, count: int) -> None:
    async def enough() -> bool:
        return len(await _seen(topics)) >= count

    await eventually_async(enough, within=120, what=f"{count} distinct statuses")


def _statuses_committed(service: Service) -> float:
    body = service.metrics()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("attribution_statuses_total{")
    )


async def _kill_after(service: Service, at_least: int) -> int:
    """SIGKILLs the service once it committed `at_least` statuses; returns what it had."""
    await eventually(lambda: _statuses_committed(service) >= at_least, within=90)
    progress = int(_statuses_committed(service))
    service.kill()
    return progress


async def _assert_exactly_the_oracle(topics: KafkaSettings, expected: dict[str, object]) -> None:
    await _until_distinct(topics, len(expected))
    seen = await _seen(topics)  # read again: a status produced twice would show now
    for status_id, copies in seen.items():
        assert all(c == copies[0] for c in copies), f"{status_id}: repeats differ: {copies}"
    assert set(seen) - set(expected) == set(), "statuses the reference never produced"
    assert set(expected) - set(seen) == set(), "statuses lost"
    assert {k: v[0] for k, v in seen.items()} == expected


async def test_sigkills_mid_stream_lose_and_add_no_status(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    s = scenario()
    expected, before_deals = oracle(s)
    put_program(topics)
    _publish_globals(topics, s.known)
    service = spawn(topics, tmp_path, **SLOW)
    progress = []
    try:
        publish(topics, CONVERSIONS, s.conversions)
        progress.append((await _kill_after(service, before_deals // 4), before_deals))
        service = spawn(topics, tmp_path, **SLOW)
        _publish_globals(topics, s.late)  # wakeups: noted in memory, then a kill
        progress.append((await _kill_after(service, 1), before_deals))
        service = spawn(topics, tmp_path, **SLOW)
        await _until_distinct(topics, before_deals)
        publish(topics, DEALS, s.deals)
        deal_statuses = len(expected) - before_deals
        progress.append((await _kill_after(service, deal_statuses // 3), deal_statuses))
        service = spawn(topics, tmp_path, **SLOW)
        await _assert_exactly_the_oracle(topics, dict(expected))
        # The directory resumed from its own positions: nothing of the globals was read again.
        assert service.metric("referrals_records_in_total", topic=SHARES) == 0
        assert service.metric("referrals_records_in_total", topic=ADVOCATES) == 0
    finally:
        if service.proc.poll() is None:
            assert service.stop() == 0
    assert any(0 < done < total for done, total in progress), f"no kill mid-stream: {progress}"


async def test_two_instances_give_the_oracle_result_and_one_takes_over(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    s = scenario()
    expected, before_deals = oracle(s)
    put_program(topics)
    _publish_globals(topics, s.known)
    a = spawn(topics, tmp_path / "a", **SLOW)
    b = spawn(topics, tmp_path / "b", **SLOW)
    try:
        owned = "referrals_assigned_partitions"
        await eventually(lambda: a.metric(owned) > 0 and b.metric(owned) > 0, within=60)
        publish(topics, CONVERSIONS, s.conversions)
        _publish_globals(topics, s.late)
        await _until_distinct(topics, before_deals)
        publish(topics, DEALS, s.deals)
        await eventually(lambda: _statuses_committed(a) + _statuses_committed(b) > before_deals)
        assert a.stop() == 0  # SIGTERM mid-stream: b takes over a's tasks
        await _assert_exactly_the_oracle(topics, dict(expected))
        assert b.metric(owned) == 3
    finally:
        for service in (a, b):
            if service.proc.poll() is None:
                assert service.stop() == 0
