"""`referrals report`: a program's benchmarks, measured from its topics (never from the generator).

Definitions (the simulator's ground truth uses the same `benchmarks`, so both count alike):
- enrolled: advocates with a profile in the program (latest profile per advocate_id).
- attributed referral: a referral whose holder is known from `referral.status.v1`: an advocate
  that was told LEAD and whose last attribution status (in log order) is not REJECTED. Its
  channel is the holder's claim channel; it is won if the holder was told WON (a later
  REVERSED still counts: the deal was won). active: advocates holding >= 1 attributed referral.
- referrals per advocate: active advocates by attributed referrals, 1 / 2-10 / 11+.
- channel mix and conversion: attributed referrals per channel over all attributed; WON over
  attributed per channel and overall (0.0 for a channel without referrals).
- top 1% / 10%: the ceil(1% / 10% of active) advocates ranked by attributed referrals (then
  won referrals, then id): their share of attributed referrals and of won referrals (deals).
- rejections: claimants whose last attribution status is REJECTED, by its reason (one per
  referral and advocate).
- rewards: one per payout_id (attempts are retries of the same reward), by type, by amount band
  (< 41, 41-100, > 100 in major units of the program currency) and their average.
- payouts: issued (distinct payout_id, and attempts), paid (a PAID result for any attempt),
  failed (the latest attempt's result is FAILED and none PAID).
- latency: from the Kafka timestamp of the holder's first WON record to that of the referral's
  first PayoutCommand, and to the `sent_at` of its WON thank-you (kind WON); median and p95 by
  the nearest-rank method, in ms.
Statuses are de-duplicated by status_id, payouts by (payout_id, attempt), notifications by
notification_id, payout results by (payout_id, attempt); each keeps its first occurrence.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import TopicPartition

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    NotificationSent,
    PayoutCommand,
    PayoutResult,
    PayoutStatus,
    ReferralStatus,
    ReferralStatusChanged,
    ShareEvent,
)
from referrals.contract.topics import (
    ADVOCATES,
    NOTIFICATIONS_SENT,
    PAYOUT_RESULTS,
    PAYOUTS,
    PROGRAMS,
    SHARES,
    STATUS,
    TopicNames,
    spec_for,
)
from referrals.platform.errors import DecodeError
from referrals.platform.money import to_minor
from referrals.platform.settings import KafkaSettings
from referrals.platform.timestamps import to_ms as to_ms
from referrals.programs.document import from_canonical
from referrals.streams.kafka import make_consumer
from referrals.tools import report_html

T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# In the order of the published channel mix (most used first), for tables and charts.
CHANNELS = (
    Channel.SOCIAL,
    Channel.EMAIL,
    Channel.LEAD_FORM,
    Channel.VERBAL,
    Channel.SHARE_URL,
    Channel.PRINT_CARD,
)
BUCKETS = ("1", "2-10", "11+")
BANDS = ("below_41", "41_to_100", "above_100")
TOPS = {"1%": 100, "10%": 10}  # label -> divisor of the active advocates
THANK_YOU_KIND = "WON"  # the message that thanks an advocate for a won deal
TOLERANCE = 0.01  # ratios vs ground truth: 1 percentage point (see `compare`)
_ATTRIBUTION = frozenset(
    {ReferralStatus.LEAD, ReferralStatus.IN_PROGRESS, ReferralStatus.WON, ReferralStatus.LOST}
    | {ReferralStatus.REVERSED, ReferralStatus.REJECTED}
)


@dataclass(frozen=True)
class ReportInputs:
    """Decoded records of every program; `compute` keeps `program_id`'s. Pairs carry the Kafka
    record timestamp (ms); lists keep log order within each partition."""

    program_id: str
    currency: str | None = None
    profiles: Sequence[AdvocateProfile] = ()
    shares: Sequence[ShareEvent] = ()
    statuses: Sequence[tuple[int, ReferralStatusChanged]] = ()
    payouts: Sequence[tuple[int, PayoutCommand]] = ()
    payout_results: Sequence[PayoutResult] = ()
    notifications: Sequence[NotificationSent] = ()
    undecodable: Mapping[str, int] = field(default_factory=dict)  # topic -> skipped bad records


@dataclass(frozen=True, slots=True)
class AttributedReferral:
    advocate_id: str
    channel: str
    won: bool


@dataclass(frozen=True)
class Figures:
    """The benchmarks of attributed referrals; `to_dict` adds the derived ratios."""

    enrolled: int
    active: int
    referrals: int
    won: int
    per_advocate: dict[str, int]
    channel_referrals: dict[str, int]
    channel_won: dict[str, int]
    top: dict[str, dict[str, int]]  # "1%" -> advocates, referrals, won

    def to_dict(self) -> dict[str, Any]:
        return {
            "enrolled": self.enrolled,
            "active": self.active,
            "active_share": _ratio(self.active, self.enrolled),
            "referrals_attributed": self.referrals,
            "referrals_won": self.won,
            "conversion_overall": _ratio(self.won, self.referrals),
            "referrals_per_advocate": dict(self.per_advocate),
            "referrals_per_advocate_share": {
                b: _ratio(n, self.active) for b, n in self.per_advocate.items()
            },
            "channels": {
                ch: {
                    "referrals": n,
                    "won": self.channel_won[ch],
                    "share": _ratio(n, self.referrals),
                    "conversion": _ratio(self.channel_won[ch], n),
                }
                for ch, n in self.channel_referrals.items()
            },
            "top_advocates": {
                label: top
                | {
                    "referrals_share": _ratio(top["referrals"], self.referrals),
                    "deals_share": _ratio(top["won"], self.won),
                }
                for label, top in self.top.items()
            },
        }


def benchmarks(enrolled: int, referrals: Iterable[AttributedReferral]) -> Figures:
    """The figures of one program's attributed referrals (see the module docstring)."""
    per: dict[str, list[int]] = {}
    by_channel: Counter[str] = Counter()
    won_by_channel: Counter[str] = Counter()
    for referral in referrals:
        counts = per.setdefault(referral.advocate_id, [0, 0])
        counts[0] += 1
        counts[1] += referral.won
        by_channel[referral.channel] += 1
        won_by_channel[referral.channel] += referral.won
    ranked = sorted(per.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))
    top = {}
    for label, divisor in TOPS.items():
        chosen = [c for _, c in ranked[: -(-len(ranked) // divisor)]]
        top[label] = {
            "advocates": len(chosen),
            "referrals": sum(c[0] for c in chosen),
            "won": sum(c[1] for c in chosen),
        }
    buckets = Counter(_bucket(c[0]) for c in per.values())
    return Figures(
        enrolled=enrolled,
        active=len(per),
        referrals=sum(by_channel.values()),
        won=sum(won_by_channel.values()),
        per_advocate={b: buckets[b] for b in BUCKETS},
        channel_referrals={ch.value: by_channel[ch.value] for ch in CHANNELS},
        channel_won={ch.value: won_by_channel[ch.value] for ch in CHANNELS},
        top=top,
    )


def _bucket(referrals: int) -> str:
    return "1" if referrals == 1 else "2-10" if referrals <= 10 else "11+"


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True)
class Latency:
    samples: int
    median_ms: int | None
    p95_ms: int | None

    @classmethod
    def of(cls, values: Iterable[int]) -> Latency:
        ordered = sorted(values)
        if not ordered:
            return cls(0, None, None)
        return cls(len(ordered), _nearest_rank(ordered, 50), _nearest_rank(ordered, 95))


def _nearest_rank(ordered: Sequence[int], percent: int) -> int:
    return ordered[max(1, math.ceil(percent * len(ordered) / 100)) - 1]


@dataclass(frozen=True)
class Report:
    program_id: str
    currency: str
    figures: Figures
    rejections: dict[str, int]
    holds: dict[str, int]  # REWARD_HELD referrals by reason
    sharing: dict[str, int]  # shares and advocates who shared
    rewards: dict[str, Any]
    payouts: dict[str, int]
    latency: dict[str, Latency] = field(default_factory=dict)
    # Records skipped because they do not decode (bad input; each is in its topic's .dlq).
    undecodable: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "program_id": self.program_id,
            "currency": self.currency,
            "figures": self.figures.to_dict(),
            "rejections": dict(self.rejections),
            "holds": dict(self.holds),
            "sharing": dict(self.sharing),
            "rewards": self.rewards,
            "payouts": dict(self.payouts),
            "latency": {name: asdict(value) for name, value in self.latency.items()},
            "undecodable": dict(self.undecodable),
        }


@dataclass(slots=True)
class _Thread:
    """What one advocate was told about one referral, in log order."""

    last: ReferralStatus | None = None
    reason: str | None = None
    channel: str = ""
    lead_ms: int | None = None
    won_ms: int | None = None


def compute(inputs: ReportInputs) -> Report:
    """The program's report from decoded records (see the module docstring for definitions)."""
    program = inputs.program_id
    profiles = {p.advocate_id: p for p in inputs.profiles if p.program_id == program}
    statuses = [
        pair
        for pair in _first_by(inputs.statuses, lambda pair: pair[1].status_id)
        if pair[1].program_id == program
    ]
    threads = _threads(statuses)
    holders = _holders(threads)
    attributed = [
        AttributedReferral(adv, t.channel, t.won_ms is not None) for adv, t in holders.values()
    ]
    payouts = [
        pair
        for pair in _first_by(inputs.payouts, lambda pair: (pair[1].payout_id, pair[1].attempt))
        if pair[1].program_id == program
    ]
    currency = inputs.currency or next((p.currency for _, p in payouts), "USD")
    won_ms = {ref: t.won_ms for ref, (_, t) in holders.items() if t.won_ms is not None}
    return Report(
        program_id=program,
        currency=currency,
        figures=benchmarks(len(profiles), attributed),
        rejections=_rejections(threads),
        holds=_holds(statuses),
        sharing=_sharing(inputs.shares, program),
        rewards=_rewards([p for _, p in payouts], currency),
        payouts=_payouts([p for _, p in payouts], inputs.payout_results),
        latency=_latency(won_ms, payouts, inputs.notifications),
        undecodable=dict(inputs.undecodable),
    )


def _first_by(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """Each item whose key was not seen before (a redelivered record is dropped)."""
    seen: set[Hashable] = set()
    kept = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            kept.append(item)
    return kept


def _threads(
    statuses: Iterable[tuple[int, ReferralStatusChanged]],
) -> dict[tuple[str, str], _Thread]:
    threads: dict[tuple[str, str], _Thread] = {}
    for timestamp, s in statuses:
        if s.status not in _ATTRIBUTION or (s.status is ReferralStatus.REVERSED and s.reason):
            continue  # rewards' statuses (its REVERSED, with a reason, is a cancellation)
        thread = threads.setdefault((s.referral_id, s.advocate_id), _Thread())
        thread.last, thread.reason = s.status, s.reason
        if s.status is ReferralStatus.LEAD:
            thread.lead_ms, thread.channel = timestamp, s.channel.value
        elif s.status is ReferralStatus.WON and thread.won_ms is None:
            thread.won_ms = timestamp
    return threads


def _holders(threads: Mapping[tuple[str, str], _Thread]) -> dict[str, tuple[str, _Thread]]:
    """referral -> (advocate, thread) of the advocate holding it (the latest LEAD, if several)."""
    holders: dict[str, tuple[str, _Thread]] = {}
    for (referral, advocate), t in sorted(threads.items()):
        if t.lead_ms is None or t.last is ReferralStatus.REJECTED:
            continue
        held = holders.get(referral)
        if held is None or (held[1].lead_ms or 0) < t.lead_ms:
            holders[referral] = (advocate, t)
    return holders


def _rejections(threads: Mapping[tuple[str, str], _Thread]) -> dict[str, int]:
    found = Counter(
        t.reason or "UNSPECIFIED" for t in threads.values() if t.last is ReferralStatus.REJECTED
    )
    return dict(sorted(found.items()))


def _holds(statuses: Iterable[tuple[int, ReferralStatusChanged]]) -> dict[str, int]:
    held = {
        (s.referral_id, s.reason or "UNSPECIFIED")
        for _, s in statuses
        if s.status is ReferralStatus.REWARD_HELD
    }
    return dict(sorted(Counter(reason for _, reason in held).items()))


def _sharing(shares: Iterable[ShareEvent], program: str) -> dict[str, int]:
    unique = {s.event_id: s for s in shares if s.program_id == program}
    return {"shares": len(unique), "advocates": len({s.advocate_id for s in unique.values()})}


def _band(amount_minor: int, currency: str) -> str:
    if amount_minor < to_minor("41", currency):
        return BANDS[0]
    return BANDS[1] if amount_minor <= to_minor("100", currency) else BANDS[2]


def _rewards(payouts: Iterable[PayoutCommand], currency: str) -> dict[str, Any]:
    """One reward per payout_id (a retry is another attempt at the same reward)."""
    rewards: dict[str, PayoutCommand] = {}
    for p in sorted(payouts, key=lambda p: p.attempt):
        rewards.setdefault(p.payout_id, p)
    by_type: dict[str, dict[str, int]] = {}
    bands: Counter[str] = Counter()
    for p in rewards.values():
        entry = by_type.setdefault(p.reward_type.value, {"count": 0, "amount_minor": 0})
        entry["count"] += 1
        entry["amount_minor"] += p.amount_minor
        bands[_band(p.amount_minor, currency)] += 1
    count, total = len(rewards), sum(p.amount_minor for p in rewards.values())
    return {
        "count": count,
        "amount_minor": total,
        "average_minor": (2 * total + count) // (2 * count) if count else 0,  # rounded half-up
        "by_type": dict(sorted(by_type.items())),
        "by_band": {band: bands[band] for band in BANDS},
    }


def _payouts(payouts: Sequence[PayoutCommand], results: Iterable[PayoutResult]) -> dict[str, int]:
    amount = {p.payout_id: p.amount_minor for p in sorted(payouts, key=lambda p: -p.attempt)}
    mine = [
        r for r in _first_by(results, lambda r: (r.payout_id, r.attempt)) if r.payout_id in amount
    ]
    paid = {r.payout_id for r in mine if r.status is PayoutStatus.PAID}
    latest: dict[str, PayoutResult] = {}
    for r in sorted(mine, key=lambda r: r.attempt):
        latest[r.payout_id] = r
    failed = {
        pid for pid, r in latest.items() if r.status is PayoutStatus.FAILED and pid not in paid
    }
    return {
        "issued": len(amount),
        "issued_amount_minor": sum(amount.values()),
        "attempts": len(payouts),
        "paid": len(paid),
        "paid_amount_minor": sum(amount[pid] for pid in paid),
        "failed": len(failed),
    }


def _latency(
    won_ms: Mapping[str, int],
    payouts: Iterable[tuple[int, PayoutCommand]],
    notifications: Iterable[NotificationSent],
) -> dict[str, Latency]:
    issued: dict[str, int] = {}
    for timestamp, p in payouts:
        if p.referral_id in won_ms:
            issued[p.referral_id] = min(timestamp, issued.get(p.referral_id, timestamp))
    thanked: dict[str, int] = {}
    for n in _first_by(notifications, lambda n: n.notification_id):
        referral = n.referral_id
        if n.kind == THANK_YOU_KIND and referral is not None and referral in won_ms:
            sent = to_ms(n.sent_at)
            thanked[referral] = min(sent, thanked.get(referral, sent))
    return {
        "won_to_reward_issued": Latency.of(t - won_ms[ref] for ref, t in issued.items()),
        "won_to_thank_you": Latency.of(t - won_ms[ref] for ref, t in thanked.items()),
    }


@dataclass(frozen=True, slots=True)
class Comparison:
    """A measured figure beside the generator's ground truth; `ok` if equal (exact) or within
    `tolerance` (absolute)."""

    name: str
    measured: float
    truth: float
    exact: bool
    ok: bool
    tolerance: float = 0.0
    published: float | None = None  # the published figure the generator reproduces


def compare(report: Report, truth: Mapping[str, Any]) -> list[Comparison]:
    """Each figure the generator knows, measured vs its ground truth (`Simulation.truth`).

    Counts the system must get exactly right: advocates enrolled and active, referrals
    attributed and won, rejections by reason, rewards owed (won referrals) vs payouts issued.
    Ratios are compared within TOLERANCE (1 percentage point): they derive from those exact
    counts, so in a correct run they are equal too; the margin absorbs a conflicting claim
    that a live multi-partition run happens to decide after the deal was won. Ratios also
    carry the published figure the generator aims at (`truth["targets"]`), for the reader.
    """
    mine, theirs = report.figures.to_dict(), truth["figures"]
    out = [
        _exact(label, mine[key], theirs[key])
        for label, key in (
            ("advocates enrolled", "enrolled"),
            ("advocates active", "active"),
            ("referrals attributed", "referrals_attributed"),
            ("referrals won", "referrals_won"),
        )
    ]
    for reason in sorted(set(report.rejections) | set(truth["rejections"])):
        found, expected = report.rejections.get(reason, 0), truth["rejections"].get(reason, 0)
        out.append(_exact(f"rejected {reason}", found, expected))
    out.append(_exact("rewards owed vs issued", report.payouts["issued"], truth["rewards_owed"]))
    targets = truth.get("targets", {})
    for name, path, target_path in _RATIOS:
        published = _dig(targets, target_path) if target_path else None
        out.append(_near(name, _dig(mine, path), _dig(theirs, path), published))
    return out


# (name, path in Figures.to_dict(), path in the generator's published targets)
_RATIOS: list[tuple[str, tuple[str, ...], tuple[str, ...] | None]] = [
    ("share of advocates active", ("active_share",), ("active_share",)),
    *(
        (
            f"active advocates making {b} referral{'' if b == '1' else 's'}",
            ("referrals_per_advocate_share", b),
            ("referrals_per_advocate_share", b),
        )
        for b in BUCKETS
    ),
    *(
        row
        for ch in CHANNELS
        for row in (
            (f"channel mix {ch.value}", ("channels", ch.value, "share"), ("channel_mix", ch.value)),
            (
                f"conversion {ch.value}",
                ("channels", ch.value, "conversion"),
                ("conversion", ch.value),
            ),
        )
    ),
    ("conversion overall", ("conversion_overall",), ("conversion_overall",)),
    *(
        row
        for label in TOPS
        for row in (
            (
                f"top {label} share of referrals",
                ("top_advocates", label, "referrals_share"),
                ("top_advocates_referrals_share", label),
            ),
            (f"top {label} share of deals", ("top_advocates", label, "deals_share"), None),
        )
    ),
]


def _dig(data: Mapping[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        data = data.get(key, {}) if isinstance(data, Mapping) else {}
    return None if isinstance(data, Mapping) else data


def _exact(name: str, measured: int, truth: int) -> Comparison:
    return Comparison(name, measured, truth, exact=True, ok=measured == truth)


def _near(name: str, measured: float, truth: float, published: float | None) -> Comparison:
    ok = abs(measured - truth) <= TOLERANCE + 1e-12
    return Comparison(name, measured, truth, False, ok, TOLERANCE, published)


def write(report: Report, out_dir: Path, truth: Mapping[str, Any] | None = None) -> Path:
    """Writes report.json and report.html into `out_dir`; returns the HTML's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    comparisons = compare(report, truth) if truth is not None else None
    data = report.to_dict()
    if comparisons is not None:
        data["comparisons"] = [asdict(c) for c in comparisons]
    (out_dir / "report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(report_html.render(report, comparisons), encoding="utf-8")
    return page


_READ = (ADVOCATES, SHARES, STATUS, PAYOUTS, PAYOUT_RESULTS, NOTIFICATIONS_SENT, PROGRAMS)
_IDLE_POLLS = 20  # 20 empty polls of 0.5 s: the log's end is not coming (a stuck partition)


async def read_topics(settings: KafkaSettings, program_id: str) -> ReportInputs:
    """Reads the report's topics from the beginning to their end offsets, read_committed."""
    names = TopicNames(settings.topic_prefix)
    consumer = make_consumer(settings, client_id="referrals-report")
    await consumer.start()
    try:
        logs = await _read_to_end(consumer, [names(topic) for topic in _READ])
    finally:
        await consumer.stop()
    codec = AvroCodec()
    undecodable: dict[str, int] = {}

    def records(topic: str) -> list[tuple[int, Any]]:
        """Decoded records; bad input (already in the topic's .dlq) is counted, not fatal."""
        expected, out = spec_for(topic).record, []
        for ts, value in logs[names(topic)]:
            try:
                out.append((ts, codec.decode(value, expected)))
            except DecodeError:
                undecodable[topic] = undecodable.get(topic, 0) + 1
        return out

    configs = [c for _, c in records(PROGRAMS) if c.program_id == program_id]
    latest = max(configs, key=lambda c: c.version, default=None)
    return ReportInputs(
        program_id=program_id,
        currency=from_canonical(latest.document).currency if latest is not None else None,
        profiles=[r for _, r in records(ADVOCATES)],
        shares=[r for _, r in records(SHARES)],
        statuses=records(STATUS),
        payouts=records(PAYOUTS),
        payout_results=[r for _, r in records(PAYOUT_RESULTS)],
        notifications=[r for _, r in records(NOTIFICATIONS_SENT)],
        undecodable=undecodable,
    )


async def _read_to_end(consumer: Any, topics: list[str]) -> dict[str, list[tuple[int, bytes]]]:
    """topic -> (timestamp, value) of every committed record, in offset order per partition."""
    await consumer._client.force_metadata_update()  # tracking no topic yet: learns them all
    parts = []
    for topic in topics:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise FileNotFoundError(f"topic {topic} does not exist; run `referrals topics create`")
        parts += [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    end = await consumer.end_offsets(parts)
    found: list[tuple[str, int, int, int, bytes]] = []
    idle = 0
    while idle < _IDLE_POLLS and any([await consumer.position(tp) < end[tp] for tp in parts]):
        batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
        idle = 0 if batch else idle + 1
        for tp, messages in batch.items():
            found += [(tp.topic, tp.partition, m.offset, m.timestamp, m.value) for m in messages]
    logs: dict[str, list[tuple[int, bytes]]] = {topic: [] for topic in topics}
    for topic, _, _, timestamp, value in sorted(found):
        if value:  # a tombstone on a compacted topic carries nothing to report
            logs[topic].append((timestamp, value))
    return logs


def run_report(*, program_id: str, out: Path, truth_file: Path | None) -> int:
    """Reads the topics, writes the report; 1 if a figure that must be exact disagrees."""
    truth = json.loads(truth_file.read_text(encoding="utf-8")) if truth_file else None
    inputs = asyncio.run(read_topics(KafkaSettings.from_env(), program_id))
    report = compute(inputs)
    page = write(report, out, truth)
    figures = report.figures.to_dict()
    print(
        f"{report.program_id}: {figures['enrolled']} advocates enrolled, {figures['active']} active"
        f" ({figures['active_share']:.1%}); {figures['referrals_attributed']} referrals attributed,"
        f" {figures['referrals_won']} won ({figures['conversion_overall']:.1%});"
        f" {report.payouts['issued']} payouts issued, {report.payouts['paid']} paid"
    )
    failed = [c for c in compare(report, truth) if not c.ok] if truth is not None else []
    for c in failed:
        kind = "must be exact" if c.exact else f"tolerance {c.tolerance:g}"
        print(f"  MISMATCH {c.name}: measured {c.measured:g}, truth {c.truth:g} ({kind})")
    print(f"report: {page}")
    return 1 if any(c.exact for c in failed) else 0
