"""Every metric the alert rules and the Grafana dashboards use is exported by the running
services, so a renamed metric breaks the build rather than the pager.

The four services run as processes against the project's broker (as `make demo` runs them),
with a little traffic so that labelled series exist: an advocate's share, three referrals won
(one paid at once, two held for approval, one of them approved), a friend's reward, finance's
PAID and FAILED, a thank-you accepted by a real SMTP server, a portal call, a malformed share.
Then each service's /metrics is scraped and checked against the names the rules and the
dashboards use (histograms by their _bucket/_sum/_count series, counters by _total). For the
alert rules, stricter: the series exist, carry the labels the rules match on, and have the
values matched exactly (a histogram's `le` bucket, a message kind); a dashboard panel that
names a service (`job="rewards"`) must query a metric that service exports.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    OperatorCommand,
    PayoutCommand,
    PayoutResult,
    PayoutStatus,
    Recipient,
    Record,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
    ShareEvent,
)
from referrals.contract.topics import (
    ADVOCATES,
    CONVERSIONS,
    DEALS,
    OPERATOR_COMMANDS,
    PAYOUT_RESULTS,
    PAYOUTS_V2,
    SHARES,
    STATUS,
)
from referrals.platform.settings import KafkaSettings
from referrals.programs.document import validate
from referrals.programs.model import ProgramDocument
from referrals.programs.put import put
from referrals.tools.program_year import SERVICES, MailCatcher, ServiceProcesses, YearPlan
from services.api.proto import referrals_pb2 as pb
from services.api.proto import referrals_pb2_grpc as pb_grpc
from tests.metric_names import (
    PROMETHEUS_MADE,
    Selector,
    dashboard_expressions,
    recorded_names,
    rule_expressions,
    selectors,
    used_by_rules_and_dashboards,
)

from .helpers import produce, read_topic
from .test_service_skeletons import _free_port

pytestmark = pytest.mark.broker
CODEC = AvroCodec()
PROGRAM = "obs"
ADVOCATE = "adv-obs"
ADDED_BY_PROMETHEUS = frozenset({"job", "instance"})
# What the traffic must have produced before the scrape (service, metric, labels).
AWAITED = (
    ("rewards", "rewards_payouts_paid_total", {}),
    ("rewards", "rewards_payouts_failed_total", {}),
    ("rewards", "rewards_hold_duration_seconds_count", {}),
    ("rewards", "rewards_on_hold", {}),
    ("notifications", "referrals_notifications_sent_total", {"kind": "WON"}),
    ("attribution", "referrals_dead_letters_total", {}),
    ("api", "referrals_portal_status_latency_seconds_count", {}),
)

Samples = dict[str, list[dict[str, str]]]  # sample name -> the label sets exported


def _program() -> ProgramDocument:
    return validate(
        {
            "program_id": PROGRAM,
            "currency": "USD",
            "rewards": {
                # the first win is paid at once; the next ones wait for an approval
                "tiers": [
                    {"from_referral": 1, "amount": "50.00", "reward_type": "GIFT_CARD"},
                    {"from_referral": 2, "amount": "150.00", "reward_type": "CHECK"},
                ],
                "approval_threshold": "100.00",
                "friend_reward": {"amount": "25.00", "reward_type": "BILL_CREDIT"},
            },
            "notifications": {"rate_limit": {"max_per_day": 100}},
        }
    )


def _events(now: datetime) -> list[tuple[str, str, Record]]:
    ago = now - timedelta(minutes=5)
    out: list[tuple[str, str, Record]] = [
        (
            ADVOCATES,
            ADVOCATE,
            AdvocateProfile(
                PROGRAM, ADVOCATE, "obs@example.com", "Obs", "a" * 64, False, True, ago
            ),
        ),
        (SHARES, ADVOCATE, ShareEvent("sh-1", PROGRAM, ADVOCATE, Channel.EMAIL, "OBS-1", ago)),
    ]
    for n in (1, 2, 3):
        prospect = f"pr-{n}"
        at = ago + timedelta(seconds=n)
        out.append(
            (CONVERSIONS, prospect, ConversionEvent(f"cv-{n}", PROGRAM, prospect, at, "OBS-1"))
        )
        won = DealEvent(
            f"dl-{n}", PROGRAM, f"deal-{n}", prospect, DealStage.WON, now, 1_000_000, "USD"
        )
        out.append((DEALS, f"deal-{n}", won))
    return out


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _parse(text: str) -> tuple[set[str], Samples]:
    """The names a scrape declares (each family's sample names, also for a labelled family
    with no child yet) and its samples' label sets."""
    declared: set[str] = set()
    samples: Samples = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes.get(family.type, ("",)):
            declared.add(family.name + suffix)
        for sample in family.samples:
            declared.add(sample.name)
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return declared, samples


def _value(text: str, name: str, labels: dict[str, str]) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


async def _until(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.5)
    return check()


async def _portal_call(port: int, token: str) -> None:
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.AdvocatesStub(channel)  # type: ignore[no-untyped-call]
        await stub.GetAdvocate(
            pb.GetAdvocateRequest(advocate_id=ADVOCATE), metadata=metadata, timeout=10
        )


def _problems_with_rule_selector(where: str, found: Selector, samples: Samples) -> list[str]:
    series = samples.get(found.metric)
    if not series:
        return [f"{where}: {found.metric} has no series"]
    labels = set().union(*series)
    problems = [
        f"{where}: {found.metric} has no label {m.label!r} (it has {sorted(labels)})"
        for m in found.matchers
        if m.label not in ADDED_BY_PROMETHEUS and m.label not in labels
    ]
    exact = [m for m in found.matchers if m.op == "=" and m.label not in ADDED_BY_PROMETHEUS]
    if (
        not problems
        and exact
        and not any(all(m.matches(s.get(m.label)) for m in exact) for s in series)
    ):
        wanted = ", ".join(f'{m.label}="{m.value}"' for m in exact)
        problems.append(f"{where}: no {found.metric} series has {wanted}")
    return problems


async def test_every_metric_the_rules_and_dashboards_use_is_exported(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    ports = {name: _free_port() for name in SERVICES}
    plan = YearPlan(
        work=tmp_path,
        metrics_ports=ports,
        api_port=_free_port(),
        smtp_port=_free_port(),
        unsubscribe_port=_free_port(),
        show=lambda _: None,
    )
    await put(topics, _program(), "tests")
    services = ServiceProcesses(plan, topics)
    with MailCatcher(plan.smtp_port) as mail:
        try:
            services.start()
            now = datetime.now(UTC)
            for topic, key, record in _events(now):
                await produce(topics, topic, [(key.encode(), CODEC.encode(record))])
            await produce(topics, SHARES, [(b"adv-typo", b"not Avro")])
            await _traffic(topics, services, plan, now)
            scrapes = {name: _scrape(port) for name, port in ports.items()}
        finally:
            codes = services.stop()
    assert mail.count > 0
    assert codes == {name: 0 for name in SERVICES}, codes
    _check(scrapes)


async def _traffic(
    topics: KafkaSettings, services: ServiceProcesses, plan: YearPlan, now: datetime
) -> None:
    """Approves one held reward, reports finance's results, calls the portal; waits until
    every series AWAITED exists (the checks run anyway: what is missing is named there)."""
    held: list[str | None] = []
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        statuses = [CODEC.decode(m.value) for m in await read_topic(topics, STATUS, quiet=0.5)]
        held = [
            s.payout_id
            for s in statuses
            if isinstance(s, ReferralStatusChanged) and s.status is ReferralStatus.REWARD_HELD
        ]
    assert held and held[0], "no reward was held for approval"
    command = OperatorCommand(
        f"cmd-{uuid.uuid4().hex[:8]}", RewardAction.APPROVE, held[0], "sre", now
    )
    await produce(topics, OPERATOR_COMMANDS, [(command.command_id.encode(), CODEC.encode(command))])

    def issued() -> list[PayoutCommand]:
        return [p for p in payouts if isinstance(p, PayoutCommand)]

    payouts: list[Record] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        payouts = [CODEC.decode(m.value) for m in await read_topic(topics, PAYOUTS_V2, quiet=0.5)]
        if len([p for p in issued() if p.recipient is Recipient.ADVOCATE]) >= 2:
            break
    advocate = [p for p in issued() if p.recipient is Recipient.ADVOCATE]
    friend = [p for p in issued() if p.recipient is Recipient.FRIEND]
    assert len(advocate) >= 2 and friend, payouts
    results = [
        PayoutResult(advocate[0].payout_id, 1, PayoutStatus.PAID, now),
        PayoutResult(advocate[1].payout_id, 1, PayoutStatus.FAILED, now, "ACCOUNT_CLOSED"),
        PayoutResult(friend[0].payout_id, 1, PayoutStatus.PAID, now),
    ]
    await produce(
        topics, PAYOUT_RESULTS, [(r.payout_id.encode(), CODEC.encode(r)) for r in results]
    )
    await _portal_call(plan.api_port, services.token)

    def arrived() -> bool:
        return all(
            _value(_scrape(plan.metrics_ports[svc]), name, labels) > 0
            for svc, name, labels in AWAITED
        )

    await _until(arrived, within=40)


def _check(scrapes: dict[str, str]) -> None:
    parsed = {name: _parse(text) for name, text in scrapes.items()}
    declared = set().union(*(d for d, _ in parsed.values()))
    samples: Samples = {}
    for _, found in parsed.values():
        for name, series in found.items():
            samples.setdefault(name, []).extend(series)

    used = used_by_rules_and_dashboards()
    missing = {name: sorted(where) for name, where in used.items() if name not in declared}
    assert not missing, "used by rules or dashboards but exported by no service:\n" + "\n".join(
        f"  {name} (in {', '.join(where)})" for name, where in sorted(missing.items())
    )

    made = recorded_names() | PROMETHEUS_MADE
    problems: list[str] = []
    for rule, expr, _ in rule_expressions():
        for found in selectors(expr):
            if found.metric not in made:
                problems += _problems_with_rule_selector(f"rule {rule}", found, samples)
    for where, expr in dashboard_expressions():
        for found in selectors(expr):
            job = next((m.value for m in found.matchers if m.label == "job" and m.op == "="), None)
            if job in parsed and found.metric not in parsed[job][0]:
                problems.append(f"{where}: {found.metric} is not exported by {job}")
    assert not problems, "\n".join(problems)
