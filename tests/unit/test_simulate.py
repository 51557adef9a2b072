"""The workload generator: deterministic, faithful to the published figures, and its ground truth
agrees with the attribution core replaying its records in arrival order."""

from __future__ import annotations

import functools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from referrals.contract.avro import AvroCodec
from referrals.contract.publish import prepare
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    PayoutCommand,
    PayoutKind,
    Recipient,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
    RewardCommand,
    RewardType,
    ShareEvent,
)
from referrals.contract.validation import check_values
from referrals.programs.catalog import Program
from referrals.programs.document import parse_document, validate
from referrals.programs.model import Attribution, AttributionPolicy, ProgramDocument
from referrals.tools.cli_benchmarks import simulate as simulate_command
from referrals.tools.report_compare import compare
from referrals.tools.report_figures import ReportInputs, compute
from referrals.tools.simulate import (
    DEMO_PROGRAM,
    INPUT_TOPICS,
    simulate,
)
from referrals.tools.simulate_model import Simulation
from services.attribution.domain.memory import InMemoryAttribution
from services.attribution.domain.model import DictDirectory, Policy, Rules
from services.rewards.adapters.program_rules import rules_for
from services.rewards.domain.decide import (
    new_ledger,
    on_command,
    on_profile,
    on_reversed,
    on_won,
)
from services.rewards.domain.ledger import Ledger

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DEMO: ProgramDocument = validate(parse_document(DEMO_PROGRAM.read_text(encoding="utf-8")))
LAST_TOUCH = replace(
    DEMO,
    program_id="demo-last-touch",
    attribution=Attribution(window_days=30, policy=AttributionPolicy.LAST_TOUCH),
)
SKEW = timedelta(hours=1)  # the core's clock skew allowance for a share after its conversion


def records(sim: Simulation, kind: type[Any]) -> list[Any]:
    return [a.record for a in sim.arrivals if isinstance(a.record, kind)]


# -- determinism -----------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_year_record_for_record() -> None:
    first, second = simulate(300, 7, NOW, DEMO), simulate(300, 7, NOW, DEMO)
    assert first.arrivals == second.arrivals
    assert first.truth_json() == second.truth_json()


def test_different_seeds_give_different_years() -> None:
    first, second = simulate(300, 7, NOW, DEMO), simulate(300, 8, NOW, DEMO)
    assert first.arrivals != second.arrivals
    assert first.truth["prospects"] != second.truth["prospects"]


# -- the published figures, measured from the events alone ---------------------------------
def attribute(sim: Simulation, window: timedelta) -> dict[str, tuple[str, Channel, bool]]:
    """prospect -> (advocate, channel, won), by the contract's rules written out plainly:
    declared > code > email (EMAIL/LEAD_FORM shares only); a share counts inside the window
    before the event (or up to the skew after it); self-referrals excluded; FIRST_TOUCH."""
    own_email = {p.email_sha256: p.advocate_id for p in records(sim, AdvocateProfile)}
    by_code: dict[str | None, list[ShareEvent]] = defaultdict(list)
    by_email: dict[str | None, list[ShareEvent]] = defaultdict(list)
    for share in {s.event_id: s for s in records(sim, ShareEvent)}.values():
        by_code[share.referral_code].append(share)
        if share.channel in (Channel.EMAIL, Channel.LEAD_FORM):
            by_email[share.prospect_email_sha256].append(share)
    events: dict[str, list[ConversionEvent | DealEvent]] = defaultdict(list)
    unique = {e.event_id: e for e in records(sim, ConversionEvent) + records(sim, DealEvent)}
    for event in unique.values():
        events[event.prospect_id].append(event)
    out = {}
    for prospect, mine in events.items():
        emails = {e.prospect_email_sha256 for e in mine if isinstance(e, ConversionEvent)}
        selfish = {own_email[h] for h in emails if h in own_email}
        claims = [
            claim
            for event in mine
            for claim in _claims(event, by_code, by_email, window)
            if claim[1] not in selfish
        ]
        if claims:
            _, advocate, channel = min(claims)
            won = any(isinstance(e, DealEvent) and e.stage is DealStage.WON for e in mine)
            out[prospect] = (advocate, channel, won)
    return out


def _claims(
    event: ConversionEvent | DealEvent,
    by_code: dict[str | None, list[ShareEvent]],
    by_email: dict[str | None, list[ShareEvent]],
    window: timedelta,
) -> list[tuple[datetime, str, Channel]]:
    if event.declared_advocate_id is not None:
        return [(event.occurred_at, event.declared_advocate_id, Channel.VERBAL)]
    if isinstance(event, DealEvent):
        return []
    at = event.occurred_at
    code = [
        s for s in by_code.get(event.referral_code, ()) if at - window <= s.occurred_at <= at + SKEW
    ]
    email = [
        s
        for s in by_email.get(event.prospect_email_sha256, ())
        if at - window <= s.occurred_at <= at + SKEW
    ]
    return [(s.occurred_at, s.advocate_id, s.channel) for s in (code or email)]


@functools.cache
def average_program() -> Simulation:
    """A year of the average program (5,850 advocates), generated once for the tests below."""
    return simulate(5850, 1, NOW, DEMO)


def test_the_average_program_shows_the_published_figures() -> None:
    sim = average_program()
    credited = attribute(sim, timedelta(days=DEMO.attribution.window_days))
    enrolled = len({p.advocate_id for p in records(sim, AdvocateProfile)})
    per_advocate = Counter(advocate for advocate, _, _ in credited.values())
    ranked = sorted(per_advocate.values(), reverse=True)
    total = len(credited)
    channel = Counter(ch for _, ch, _ in credited.values())
    won = Counter(ch for _, ch, w in credited.values() if w)
    # Quotas put activity, referrals per advocate, channel mix and conversion on the published
    # figures to within rounding: 1 percentage point.
    assert len(per_advocate) / enrolled == pytest.approx(0.36, abs=0.01)
    buckets = Counter("1" if n == 1 else "2-10" if n <= 10 else "11+" for n in ranked)
    for bucket, share in {"1": 0.61, "2-10": 0.34, "11+": 0.05}.items():
        assert buckets[bucket] / len(ranked) == pytest.approx(share, abs=0.01)
    mix = {"SOCIAL": 0.29, "EMAIL": 0.24, "LEAD_FORM": 0.23, "VERBAL": 0.13, "SHARE_URL": 0.12}
    for name, share in mix.items():
        assert channel[Channel(name)] / total == pytest.approx(share, abs=0.01)
    assert 0 < channel[Channel.PRINT_CARD] / total < 0.01  # "under 1%"
    rates = {"VERBAL": 0.32, "LEAD_FORM": 0.19, "EMAIL": 0.17, "SHARE_URL": 0.04, "SOCIAL": 0.01}
    for name, rate in rates.items():
        assert won[Channel(name)] / channel[Channel(name)] == pytest.approx(rate, abs=0.01)
    # ~33 print-card referrals: one won deal more or less moves the rate by 3 points.
    assert won[Channel.PRINT_CARD] / channel[Channel.PRINT_CARD] == pytest.approx(0.12, abs=0.03)
    assert sum(won.values()) / total == pytest.approx(0.13, abs=0.01)
    # The top 1% (~21 advocates) draw from a Pareto tail: +-3 points; the top 10%: +-2 points.
    assert sum(ranked[: -(-len(ranked) // 100)]) / total == pytest.approx(0.22, abs=0.03)
    assert sum(ranked[: -(-len(ranked) // 10)]) / total == pytest.approx(0.54, abs=0.02)
    # The ground truth counts the same referrals.
    figures = sim.truth["figures"]
    assert (figures["referrals_attributed"], figures["active"]) == (total, len(per_advocate))
    assert figures["referrals_won"] == sum(won.values())


def test_rejections_and_disorder_are_present_but_rare() -> None:
    sim = average_program()
    referrals = sim.truth["figures"]["referrals_attributed"]
    for reason in ("ALREADY_REFERRED", "SELF_REFERRAL"):  # "a few": about 1-2% of referrals
        assert 0.005 <= sim.truth["rejections"][reason] / referrals <= 0.02
    assert 0 < sim.truth["rejections"]["OUTSIDE_WINDOW"] / referrals <= 0.01
    statuses = sim.truth["statuses"]
    assert statuses["LOST"] > statuses["WON"] > statuses["REVERSED"] > 0
    seen: set[str] = set()
    duplicates, late = 0, 0
    converted: set[str] = set()
    for arrival in sim.arrivals:
        record = arrival.record
        if isinstance(record, AdvocateProfile):
            continue
        duplicates += record.event_id in seen
        seen.add(record.event_id)
        if isinstance(record, ConversionEvent):
            converted.add(record.prospect_id)
        if isinstance(record, DealEvent) and record.prospect_id not in converted:
            late += 1  # a deal before its conversion (or a verbal deal with none)
    assert 0 < duplicates <= 0.02 * len(seen)
    assert late > 0
    times = [
        a.record.occurred_at for a in sim.arrivals if not isinstance(a.record, AdvocateProfile)
    ]
    assert times != sorted(times)  # mostly chronological, not entirely
    assert NOW - timedelta(days=365) <= min(times) and max(times) <= NOW


# -- the ground truth agrees with the attribution core --------------------------------------
def replay(sim: Simulation, program: ProgramDocument) -> InMemoryAttribution:
    """The attribution core's reference loop over the records in arrival order."""
    rules = Rules(
        program.program_id,
        version=1,
        window_days=program.attribution.window_days,
        policy=Policy(program.attribution.policy.value),
    )
    engine = InMemoryAttribution(DictDirectory(rules=[rules]))
    for index, arrival in enumerate(sim.arrivals):
        record = arrival.record
        if isinstance(record, AdvocateProfile):
            engine.profile(record)
        elif isinstance(record, ShareEvent):
            engine.share(record)
        elif isinstance(record, ConversionEvent):
            engine.conversion(record)
        else:
            engine.deal(record)
        if index % 500 == 0:
            engine.expire()  # as the adapter does with its stream time
    engine.expire()
    return engine


def final_outcomes(outputs: Iterable[ReferralStatusChanged]) -> dict[str, dict[str, Any]]:
    """prospect -> what the world was last told: holder, its channel, match, status; and the
    claimants whose last word is REJECTED, with the reason."""
    last: dict[tuple[str, str], ReferralStatusChanged] = {}
    for status in outputs:
        last[(status.prospect_id, status.advocate_id)] = status
    found: dict[str, dict[str, Any]] = defaultdict(lambda: {"holders": [], "rejected": []})
    for (prospect, advocate), status in sorted(last.items()):
        if status.status is ReferralStatus.REJECTED:
            found[prospect]["rejected"].append({"advocate_id": advocate, "reason": status.reason})
        else:
            found[prospect]["holders"].append(status)
    return dict(found)


@pytest.mark.parametrize("program", [DEMO, LAST_TOUCH], ids=["first-touch", "last-touch"])
def test_the_ground_truth_is_what_the_attribution_core_decides(program: ProgramDocument) -> None:
    sim = simulate(600, 11, NOW, program)
    told = final_outcomes(replay(sim, program).outputs)
    assert set(told) == set(sim.truth["prospects"])
    for prospect, truth in sim.truth["prospects"].items():
        holders = told[prospect]["holders"]
        assert len(holders) <= 1, prospect
        got = holders[0] if holders else None
        assert (got.advocate_id if got else None) == truth["advocate_id"], prospect
        assert (got.channel.value if got else None) == truth["channel"], prospect
        assert (got.matched_by.value if got else None) == truth["matched_by"], prospect
        assert (got.status.value if got else "REJECTED") == truth["status"], prospect
        assert told[prospect]["rejected"] == truth["rejected"], prospect
    assert sum(1 for t in sim.truth["prospects"].values() if t["rejected"]) > 0


def test_the_report_of_the_cores_statuses_matches_the_ground_truth() -> None:
    """Without Kafka: the attribution core's statuses fed to the rewards core (the operator
    deciding each fraud hold per the plan), stamped with increasing log times and measured by
    the report, agree with the truth on every compared figure, money figures included."""
    sim = simulate(400, 5, NOW, DEMO)
    assert sim.truth["fraud_holds"] > 0 and sim.truth["denials"] > 0
    assert sim.truth["clawbacks"]["count"] > 0
    outputs = rewards_replay(sim, DEMO, replay(sim, DEMO).outputs)
    statuses = [(1_000 * i, o) for i, o in enumerate(outputs)]
    statuses = [(t, o) for t, o in statuses if isinstance(o, ReferralStatusChanged)]
    payouts_v2 = [(1_000 * i, o) for i, o in enumerate(outputs) if isinstance(o, PayoutCommand)]
    payouts = [
        (t, p)
        for t, p in payouts_v2
        if p.kind is PayoutKind.PAYOUT and p.recipient is Recipient.ADVOCATE
    ]
    inputs = ReportInputs(
        program_id=DEMO.program_id,
        currency="USD",
        profiles=records(sim, AdvocateProfile),
        shares=records(sim, ShareEvent),
        statuses=statuses,
        payouts=payouts,
        payouts_v2=payouts_v2,
    )
    report = compute(inputs)
    assert [c for c in compare(report, sim.truth) if not c.ok] == []
    assert report.money["friend_rewards"]["count"] == sim.truth["friend_rewards"]["count"] > 0
    assert report.latency["won_to_reward_issued"].samples > 0


def rewards_replay(
    sim: Simulation, program: ProgramDocument, statuses: Iterable[ReferralStatusChanged]
) -> list[ReferralStatusChanged | PayoutCommand]:
    """Attribution's statuses, each followed by what the rewards core decides for it; a fraud
    hold is decided at once by the truth's operator plan."""
    rules = rules_for(Program(program.program_id, 1, program))
    ledgers: dict[str, Ledger] = {}
    for profile in records(sim, AdvocateProfile):
        ledger = new_ledger(program.program_id, profile.advocate_id)
        ledgers[profile.advocate_id] = on_profile(ledger, profile, NOW).ledger
    deny = set(sim.truth["operator"]["deny"])
    out: list[ReferralStatusChanged | PayoutCommand] = []
    for s in statuses:
        out.append(s)
        ledger = ledgers[s.advocate_id]
        if s.status is ReferralStatus.WON:
            decision = on_won(ledger, rules, s, NOW)
        elif s.status is ReferralStatus.REVERSED:
            decision = on_reversed(ledger, s, NOW, clawback_on=program.rewards.clawback)
        else:
            continue
        out += decision.outputs
        ledger = decision.ledger
        for held in decision.outputs:
            if isinstance(held, ReferralStatusChanged) and held.reason == "FRAUD_REVIEW":
                assert held.payout_id is not None
                denied = s.advocate_id in deny
                action = RewardAction.DENY if denied else RewardAction.APPROVE
                command = RewardCommand(f"cmd-{held.payout_id}", held.payout_id, action, "op", NOW)
                decided = on_command(ledger, rules, command, NOW)
                out += decided.outputs
                ledger = decided.ledger
        ledgers[s.advocate_id] = ledger
    return out


def _payout(won: ReferralStatusChanged) -> PayoutCommand:
    return PayoutCommand(
        payout_id=f"po-{won.referral_id}",
        attempt=1,
        program_id=won.program_id,
        advocate_id=won.advocate_id,
        referral_id=won.referral_id,
        reward_type=RewardType.GIFT_CARD,
        amount_minor=7_500,
        currency="USD",
        rule_id="referral-reward",
        tier=1,
        config_version=1,
        issued_at=won.occurred_at,
    )


# -- what platform teams would publish ------------------------------------------------------
def test_every_record_is_sound_and_encodes_as_avro() -> None:
    sim = simulate(300, 3, NOW, DEMO)
    codec = AvroCodec()
    for arrival in sim.arrivals:
        check_values(arrival.record, NOW)
        assert codec.decode(codec.encode(arrival.record)) == arrival.record
    profiles = records(sim, AdvocateProfile)
    assert len(profiles) == 300
    assert 0.8 < sum(p.tax_form_on_file for p in profiles) / 300 < 1
    assert any(p.opted_out for p in profiles)


def test_the_command_writes_files_the_publish_command_accepts(tmp_path: Path) -> None:
    argv = [
        "--advocates",
        "120",
        "--seed",
        "4",
        "--out",
        str(tmp_path),
        "--now",
        "2026-05-01T12:00Z",
    ]
    result = CliRunner().invoke(simulate_command, argv)
    assert result.exit_code == 0, result.output
    sim = simulate(120, 4, NOW, DEMO)
    codec = AvroCodec()
    for topic in INPUT_TOPICS:
        lines = (tmp_path / f"{topic}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(prepare(topic, lines, codec, now=NOW)) == sim.truth["events"][topic]
    text = (tmp_path / "arrival.jsonl").read_text(encoding="utf-8")
    arrival = [json.loads(line) for line in text.splitlines()]
    assert [(a["topic"], a["key"]) for a in arrival] == [(a.topic, a.key) for a in sim.arrivals]
    assert json.loads((tmp_path / "truth.json").read_text(encoding="utf-8")) == sim.truth


def test_fewer_than_one_advocate_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        simulate(0, 1, NOW, DEMO)
