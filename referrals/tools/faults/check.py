"""The checker: reads the topics back (read_committed, to their end) and counts.

- payouts on `rewards.payouts.v1` (the advocates') and `.v2` (those and the friends'), per
  (payout_id, attempt) and topic: missing (expected, never seen), doubled (seen more than
  once), unexpected (never expected there), wrong amount;
- referrals seen: distinct referral ids on `referral.status.v1` that belong to the workload;
- dead letters on every input topic's `.dlq`, by topic and reason, matched to the bad-input
  corpus by their original coordinates (`dlq.original.topic/partition/offset`): each corpus
  record expected to be dead-lettered is, or is listed; a dead letter of a workload record (a
  valid record dead-lettered) is listed too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from referrals.contract.avro import AvroCodec
from referrals.contract.records import PayoutCommand, ReferralStatusChanged
from referrals.contract.topics import PAYOUTS, PAYOUTS_V2, STATUS, TopicNames, dlq_of
from referrals.platform.settings import KafkaSettings
from referrals.streams.dlq import header_dict
from referrals.tools.faults.corpus import INPUT_TOPICS
from referrals.tools.faults.workload import Workload
from services.rewards.adapters.operator import TopicReadError, read_records


@dataclass(frozen=True)
class Sent:
    """A corpus record as produced: where it landed."""

    cls: str
    topic: str
    partition: int
    offset: int
    expect: str
    reason: str


@dataclass
class Checked:
    payout_topics: list[str] = field(default_factory=list)
    expected: int = 0
    seen: int = 0  # distinct (payout_id, attempt)
    missing: list[str] = field(default_factory=list)
    doubled: dict[str, int] = field(default_factory=dict)  # "payout_id#attempt@topic" -> copies
    unexpected: list[str] = field(default_factory=list)
    wrong_amount: list[str] = field(default_factory=list)
    referrals_expected: int = 0
    referrals_seen: int = 0
    dead_letters: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> reason -> n
    bad_input: dict[str, dict[str, Any]] = field(default_factory=dict)  # class -> summary
    bad_not_dead_lettered: list[str] = field(default_factory=list)
    accepted_but_dead_lettered: list[str] = field(default_factory=list)
    valid_dead_lettered: dict[str, int] = field(default_factory=dict)  # "topic reason" -> n


async def payouts_seen(kafka: KafkaSettings) -> set[str]:
    """Distinct payout ids committed on v1 so far (the suite polls this while waiting)."""
    codec = AvroCodec()
    out = set()
    for msg in await read_records(kafka, PAYOUTS):
        record = codec.decode(msg.value or b"", "PayoutCommand")
        out.add(getattr(record, "payout_id", ""))
    return out


async def check(kafka: KafkaSettings, workload: Workload, sent: list[Sent]) -> Checked:
    codec, out = AvroCodec(), Checked()
    out.expected = len(workload.expected)
    for topic in (PAYOUTS, PAYOUTS_V2):
        wanted = workload.expected if topic == PAYOUTS else workload.expected | workload.friends
        try:
            messages = await read_records(kafka, topic)
        except TopicReadError:
            continue  # no v2 topic on this deployment
        out.payout_topics.append(topic)
        copies: Counter[tuple[str, int]] = Counter()
        for msg in messages:
            record = codec.decode(msg.value or b"")
            if not isinstance(record, PayoutCommand):
                continue
            copies[(record.payout_id, record.attempt)] += 1
            want = wanted.get(record.payout_id)
            if want is None:
                out.unexpected.append(f"{record.payout_id}#{record.attempt}@{topic}")
            elif want != record.amount_minor:
                out.wrong_amount.append(f"{record.payout_id}: {record.amount_minor} != {want}")
        for (pid, attempt), n in copies.items():
            if n > 1:
                out.doubled[f"{pid}#{attempt}@{topic}"] = n
        if topic == PAYOUTS:
            out.seen = len(copies)
        on_topic = {pid for pid, _ in copies}
        out.missing += [f"{pid}@{topic}" for pid in sorted(set(wanted) - on_topic)]
    ours = {r.referral_id for r in workload.referrals}
    out.referrals_expected = len(ours)
    statuses = set()
    for msg in await read_records(kafka, STATUS):
        record = codec.decode(msg.value or b"")
        if isinstance(record, ReferralStatusChanged) and record.referral_id in ours:
            statuses.add(record.referral_id)
    out.referrals_seen = len(statuses)
    await _dead_letters(kafka, sent, out)
    return out


async def _dead_letters(kafka: KafkaSettings, sent: list[Sent], out: Checked) -> None:
    names = TopicNames(kafka.topic_prefix)
    by_place = {(names(s.topic), s.partition, s.offset): s for s in sent}
    got: dict[Sent, list[tuple[str, str]]] = defaultdict(list)  # -> [(service, reason)]
    for topic in INPUT_TOPICS:
        reasons: Counter[str] = Counter()
        for msg in await read_records(kafka, dlq_of(topic)):
            h = header_dict(msg.headers)
            reason = h.get("dlq.error.reason", "?")
            reasons[reason] += 1
            place = (
                h.get("dlq.original.topic", ""),
                int(h.get("dlq.original.partition", "-1")),
                int(h.get("dlq.original.offset", "-1")),
            )
            found = by_place.get(place)
            if found is None:
                key = f"{topic} {reason} ({h.get('dlq.service', '?')})"
                out.valid_dead_lettered[key] = out.valid_dead_lettered.get(key, 0) + 1
            else:
                got[found].append((h.get("dlq.service", "?"), reason))
        if reasons:
            out.dead_letters[topic] = dict(sorted(reasons.items()))
    for s in sent:
        summary = out.bad_input.setdefault(
            s.cls,
            {"expect": s.expect, "sent": 0, "dead_lettered": 0, "reasons": {}, "missed": []},
        )
        summary["sent"] += 1
        if s.expect == "refused":
            summary["refused_by_broker"] = summary.get("refused_by_broker", 0) + 1
            continue
        letters = got.get(s, [])
        if letters:
            summary["dead_lettered"] += 1
            for service, reason in letters:
                label = f"{reason} ({service})"
                summary["reasons"][label] = summary["reasons"].get(label, 0) + 1
        where = f"{s.cls} on {s.topic} (partition {s.partition} offset {s.offset})"
        if s.expect == "dlq" and not letters:
            summary["missed"].append(s.topic)
            out.bad_not_dead_lettered.append(where)
        if s.expect == "accepted" and letters:
            out.accepted_but_dead_lettered.append(f"{where}: {letters}")
