"""Attribution end to end against the real broker: the service as a process, events published
and statuses read back with the operator CLI. Every channel, any arrival order, conflicts,
self-referral and the attribution window."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from referrals.contract.records import (
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    ShareEvent,
)
from referrals.contract.topics import ADVOCATES, CONVERSIONS, DEALS, SHARES, STATUS
from referrals.platform.settings import KafkaSettings

from .test_attribution_support import (
    ACME,
    DAY,
    T0,
    conversion,
    deal,
    eventually,
    profile,
    publish,
    put_program,
    run_cli,
    sha,
    share,
    spawn,
    statuses,
)

pytestmark = pytest.mark.broker
B2C_DOCUMENT = ACME.with_name("brightcell-b2c.yaml")


@dataclass(frozen=True)
class Case:
    """One channel: how the conversion claims, and what the LEAD must say it matched by."""

    channel: Channel
    matched_by: str
    code: str | None = None
    email: str | None = None
    declared: str | None = None

    @property
    def name(self) -> str:
        return self.channel.value.lower()

    @property
    def advocate(self) -> str:
        return f"adv-{self.name}"

    @property
    def prospect(self) -> str:
        return f"p-{self.name}"

    def shares(self) -> list[ShareEvent]:
        if self.channel is Channel.VERBAL:
            return []  # a verbal referral is declared on the conversion itself
        code = self.code or f"{self.channel.value}-CODE"
        return [share(f"sh-{self.name}", self.advocate, self.channel, code, email=self.email)]

    def conversion(self) -> ConversionEvent:
        claim = {"code": self.code, "email": self.email, "declared": self.declared}
        return conversion(f"cv-{self.name}", self.prospect, **claim)

    def deals(self) -> list[DealEvent]:
        stages = (DealStage.OPEN, DealStage.WON)
        return [
            deal(f"dl-{n}-{self.name}", self.prospect, stage, at=T0 + (n + 1) * DAY)
            for n, stage in enumerate(stages)
        ]


CASES = [
    Case(Channel.EMAIL, "EMAIL", email=sha("p-email@example.com")),
    Case(Channel.SOCIAL, "CODE", code="SOC-1"),
    Case(Channel.LEAD_FORM, "EMAIL", email=sha("p-lead_form@example.com")),
    Case(Channel.VERBAL, "DECLARED", declared="adv-verbal"),
    Case(Channel.SHARE_URL, "CODE", code="URL-1"),
    Case(Channel.PRINT_CARD, "CODE", code="CARD-1"),
]


def _tail(topics: KafkaSettings, count: int) -> list[dict[str, object]]:
    """The status topic through the operator CLI: `referrals tail`, one JSON per line."""
    done = run_cli(
        topics, "tail", STATUS, "--from-beginning", "--max", str(count), "--timeout", "20"
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _assert_story(case: Case, told: list[dict[str, object]]) -> None:
    assert [r["status"] for r in told] == ["LEAD", "IN_PROGRESS", "WON"], told
    assert {r["advocate_id"] for r in told} == {case.advocate}
    assert {r["channel"] for r in told} == {case.channel.value}
    assert {r["matched_by"] for r in told} == {case.matched_by}
    lead, _, won = told
    assert lead["owner_rep_id"] == f"rep-of-{case.advocate}"  # routed to the advocate's rep
    assert won["deal_id"] == f"deal-{case.prospect}"
    assert (won["amount_minor"], won["currency"]) == (1_250_000, "USD")


async def test_each_channel_resolves_to_lead_in_progress_and_won(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    put_program(topics)
    publish(topics, ADVOCATES, [profile(c.advocate) for c in CASES])
    publish(topics, SHARES, [s for c in CASES for s in c.shares()])
    service = spawn(topics, tmp_path)
    try:
        publish(topics, CONVERSIONS, [c.conversion() for c in CASES])
        # Deals after the LEADs, so every story is LEAD, IN_PROGRESS, WON (none skipped).
        await eventually(lambda: service.metric("attribution_statuses_total", status="LEAD") == 6)
        publish(topics, DEALS, [d for c in CASES for d in c.deals()])
        records = _tail(topics, 18)
    finally:
        assert service.stop() == 0
    by_prospect: dict[object, list[dict[str, object]]] = defaultdict(list)
    for record in records:
        by_prospect[record["prospect_id"]].append(record)
    for case in CASES:
        _assert_story(case, by_prospect[case.prospect])


async def test_a_referral_arriving_backwards_still_resolves_to_lead_then_its_state(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """Deal stages, then the conversion, then the share, then the advocate's profile: each
    published once the service has taken in the one before."""
    put_program(topics)
    service = spawn(topics, tmp_path)
    try:
        stages = [DealStage.OPEN, DealStage.QUALIFIED, DealStage.WON]
        publish(
            topics,
            DEALS,
            [deal(f"dl-{n}", "p-late", s, at=T0 + (n + 1) * DAY) for n, s in enumerate(stages)],
        )
        in_deals = ("attribution_records_in_total", "attribution.deals-by-prospect.v1")
        await eventually(lambda: service.metric(in_deals[0], topic=in_deals[1]) == 3)
        publish(topics, CONVERSIONS, [conversion("cv-late", "p-late", code="LATE-1")])
        await eventually(
            lambda: service.metric("attribution_unmatched_waiting", kind="conversion") == 1
        )
        publish(topics, SHARES, [share("sh-late", "adv-late", Channel.SOCIAL, "LATE-1")])
        await eventually(lambda: service.metric("attribution_wakeups_total") >= 1)
        assert await statuses(topics, within=1) == []  # the advocate's profile is missing
        publish(topics, ADVOCATES, [profile("adv-late")])
        found = await statuses(topics, expect=2)
        waiting = service.metric("attribution_unmatched_waiting", kind="deal")
    finally:
        assert service.stop() == 0
    assert [(s.status.value, s.advocate_id) for s in found] == [
        ("LEAD", "adv-late"),
        ("WON", "adv-late"),  # OPEN and QUALIFIED were never visibly held: skipped
    ]
    assert found[0].owner_rep_id == "rep-of-adv-late"
    assert (found[1].deal_id, found[1].amount_minor) == ("deal-p-late", 1_250_000)
    assert waiting == 0


B2C = "brightcell-b2c"  # LAST_TOUCH, a 30-day window
EMAIL_ONE, EMAIL_TWO = sha("p-conflict@example.com"), sha("p-b2c@example.com")
REJECTION_PROFILES = [profile(a) for a in ("adv-first", "adv-second", "adv-self", "adv-old")]
REJECTION_SHARES = [
    share("sh-1", "adv-first", Channel.EMAIL, "F-1", at=T0 - 20 * DAY, email=EMAIL_ONE),
    share("sh-2", "adv-second", Channel.EMAIL, "S-1", at=T0 - 5 * DAY, email=EMAIL_ONE),
    share("sh-3", "adv-self", Channel.SHARE_URL, "SELF-1"),
    share("sh-4", "adv-old", Channel.PRINT_CARD, "OLD-1", at=T0 - 91 * DAY),
    share(
        "sh-5", "b2c-early", Channel.EMAIL, "E-1", at=T0 - 20 * DAY, email=EMAIL_TWO, program_id=B2C
    ),
    share(
        "sh-6",
        "b2c-late",
        Channel.LEAD_FORM,
        "L-1",
        at=T0 - 5 * DAY,
        email=EMAIL_TWO,
        program_id=B2C,
    ),
    share("sh-7", "b2c-late", Channel.SOCIAL, "L-2", at=T0 - 31 * DAY, program_id=B2C),
]
REJECTION_CONVERSIONS = [
    conversion("cv-1", "p-conflict", email=EMAIL_ONE),
    conversion("cv-2", "p-self", code="SELF-1", email=sha("adv-self@example.com")),
    conversion("cv-3", "p-old", code="OLD-1"),  # 91 days: outside acme's 90
    conversion("cv-4", "p-b2c", email=EMAIL_TWO, program_id=B2C),
    conversion("cv-5", "p-b2c-old", code="L-2", program_id=B2C),  # 31 days: outside its 30
]


async def test_conflicts_self_referral_and_the_window_are_rejected_with_reasons(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    put_program(topics)
    put_program(topics, B2C_DOCUMENT)
    b2c = [profile(a, program_id=B2C) for a in ("b2c-early", "b2c-late")]
    publish(topics, ADVOCATES, REJECTION_PROFILES + b2c)
    publish(topics, SHARES, REJECTION_SHARES)
    service = spawn(topics, tmp_path)
    try:
        publish(topics, CONVERSIONS, REJECTION_CONVERSIONS)
        found = await statuses(topics, expect=7)
        rejections = {
            r: service.metric("attribution_rejections_total", reason=r)
            for r in ("ALREADY_REFERRED", "SELF_REFERRAL", "OUTSIDE_WINDOW")
        }
    finally:
        assert service.stop() == 0
    assert {(s.prospect_id, s.advocate_id, s.status.value, s.reason) for s in found} == {
        ("p-conflict", "adv-first", "LEAD", None),  # FIRST_TOUCH: the earlier share wins
        ("p-conflict", "adv-second", "REJECTED", "ALREADY_REFERRED"),
        ("p-self", "adv-self", "REJECTED", "SELF_REFERRAL"),
        ("p-old", "adv-old", "REJECTED", "OUTSIDE_WINDOW"),
        ("p-b2c", "b2c-late", "LEAD", None),  # LAST_TOUCH: the later share wins
        ("p-b2c", "b2c-early", "REJECTED", "ALREADY_REFERRED"),
        ("p-b2c-old", "b2c-late", "REJECTED", "OUTSIDE_WINDOW"),
    }
    assert rejections == {"ALREADY_REFERRED": 2, "SELF_REFERRAL": 1, "OUTSIDE_WINDOW": 2}
