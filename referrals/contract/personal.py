"""Personal data: erasing an advocate, and everything the system holds about one (access).

`erase` publishes the tombstone (a null value keyed by the advocate_id) on the compacted
`referral.advocates.v1`, in its own transaction, as `referrals publish` does records. The
services then erase the person (see the README's "Personal data"). Idempotent: when the
topic's latest record for the id is already a tombstone nothing more is published.

`export` reads, read_committed, what the topics hold about one advocate: the latest profile
(or that they were erased), their referrals with every status in order, their money movements
(`rewards.payouts.v2`) each with finance's results, and the messages sent to them. Topics keyed
by advocate_id are read on the one partition the id hashes to; payout results (keyed by
payout_id) on the partitions of the advocate's payout ids. Records delivered twice (statuses
and messages are at least once with stable ids) appear once.

Both take typed values and return typed results; they print nothing, so the CLI and a future
API call the same functions and each words the answer its way (`to_document` is the JSON the
CLI prints).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from referrals.contract.avro import AvroCodec
from referrals.contract.jsonio import to_json
from referrals.contract.records import (
    AdvocateProfile,
    NotificationSent,
    PayoutCommand,
    PayoutResult,
    Record,
    ReferralStatusChanged,
)
from referrals.contract.topics import (
    ADVOCATES,
    NOTIFICATIONS_SENT,
    PAYOUT_RESULTS,
    PAYOUTS_V2,
    STATUS,
    TopicNames,
)
from referrals.platform.errors import DecodeError, ReferralsError
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_producer, transactional_id
from referrals.streams.reading import read_records

MAX_ID_LENGTH = 256  # the contract's longest id
_CLIENT = "referrals-cli-personal"
T = TypeVar("T")
R = TypeVar("R", bound=Record)


class BadAdvocateId(ReferralsError):
    reason = "BAD_ID"


class ProfileState(StrEnum):
    """What the advocates topic says of the person now."""

    KNOWN = "KNOWN"  # the latest record is a profile
    ERASED = "ERASED"  # the latest record is a tombstone
    UNKNOWN = "UNKNOWN"  # no record at all


@dataclass(frozen=True, slots=True)
class Erasure:
    advocate_id: str
    before: ProfileState  # what the topic said before
    published: bool  # False: already erased, nothing published


@dataclass(frozen=True, slots=True)
class ReferralHistory:
    referral_id: str
    program_id: str
    prospect_id: str
    history: tuple[ReferralStatusChanged, ...]  # in the order they were produced


@dataclass(frozen=True, slots=True)
class Reward:
    payout: PayoutCommand  # PayoutCommand v2: a payout or a clawback, to the advocate or friend
    results: tuple[PayoutResult, ...]  # finance's reports for this payout_id, oldest first


@dataclass(frozen=True, slots=True)
class PersonalData:
    advocate_id: str
    profile_state: ProfileState
    profile: AdvocateProfile | None
    referrals: tuple[ReferralHistory, ...]
    rewards: tuple[Reward, ...]
    messages: tuple[NotificationSent, ...]


def check_id(advocate_id: str) -> str:
    if not advocate_id.strip() or len(advocate_id) > MAX_ID_LENGTH:
        raise BadAdvocateId(
            f"advocate_id must be 1 to {MAX_ID_LENGTH} characters, got {advocate_id!r}"
        )
    return advocate_id


async def profile_of(
    settings: KafkaSettings, advocate_id: str
) -> tuple[ProfileState, AdvocateProfile | None]:
    """The advocates topic's latest record for the id (read_committed)."""
    messages = await read_records(settings, ADVOCATES, key=advocate_id, client_id=_CLIENT)
    if not messages:
        return ProfileState.UNKNOWN, None
    latest = messages[-1]
    if latest.value is None:
        return ProfileState.ERASED, None
    profile = AvroCodec().decode(latest.value, "AdvocateProfile")
    assert isinstance(profile, AdvocateProfile)
    return ProfileState.KNOWN, profile


async def erase(settings: KafkaSettings, advocate_id: str) -> Erasure:
    """Publishes the advocate's tombstone unless the topic's latest record already is one."""
    check_id(advocate_id)
    before, _ = await profile_of(settings, advocate_id)
    if before is ProfileState.ERASED:
        return Erasure(advocate_id, before, published=False)
    producer = make_producer(
        settings,
        client_id="referrals-cli",
        transactional_id=transactional_id(settings, "referrals-cli"),
    )
    await producer.start()
    try:
        async with producer.transaction():
            topic = TopicNames(settings.topic_prefix)(ADVOCATES)
            delivery = await producer.send(topic, None, key=advocate_id.encode("utf-8"))
            await delivery
    finally:
        await producer.stop()
    return Erasure(advocate_id, before, published=True)


async def export(settings: KafkaSettings, advocate_id: str) -> PersonalData:
    """Everything the topics hold about the advocate (see the module's notes)."""
    check_id(advocate_id)
    state, profile = await profile_of(settings, advocate_id)
    statuses = await _decoded(settings, STATUS, [advocate_id], ReferralStatusChanged)
    payouts = await _decoded(settings, PAYOUTS_V2, [advocate_id], PayoutCommand)
    payout_ids = sorted({p.payout_id for p in payouts})
    results = await _decoded(settings, PAYOUT_RESULTS, payout_ids, PayoutResult)
    sent = await _decoded(settings, NOTIFICATIONS_SENT, [advocate_id], NotificationSent)
    return PersonalData(
        advocate_id=advocate_id,
        profile_state=state,
        profile=profile,
        referrals=_referrals(s for s in statuses if s.advocate_id == advocate_id),
        rewards=_rewards((p for p in payouts if p.advocate_id == advocate_id), results),
        messages=tuple(_unique(sent, lambda m: m.notification_id)),
    )


async def _decoded(settings: KafkaSettings, topic: str, keys: list[str], kind: type[R]) -> list[R]:
    """The records of `kind` under `keys`, in topic order; others (bad input) are skipped."""
    codec = AvroCodec()
    out: list[R] = []
    for msg in await read_records(settings, topic, keys=keys, client_id=_CLIENT):
        try:
            record = codec.decode(msg.value or b"")
        except DecodeError:
            continue
        if isinstance(record, kind):
            out.append(record)
    return out


def _unique(items: Iterable[T], key: Callable[[T], object]) -> list[T]:
    seen: set[object] = set()
    out: list[T] = []
    for item in items:
        if (k := key(item)) not in seen:
            seen.add(k)
            out.append(item)
    return out


def _referrals(statuses: Iterable[ReferralStatusChanged]) -> tuple[ReferralHistory, ...]:
    by_referral: dict[str, list[ReferralStatusChanged]] = {}
    for status in _unique(statuses, lambda s: s.status_id):
        by_referral.setdefault(status.referral_id, []).append(status)
    return tuple(
        ReferralHistory(rid, history[0].program_id, history[0].prospect_id, tuple(history))
        for rid, history in sorted(by_referral.items())
    )


def _rewards(payouts: Iterable[PayoutCommand], results: list[PayoutResult]) -> tuple[Reward, ...]:
    unique = _unique(payouts, lambda p: (p.payout_id, p.attempt))
    reported = _unique(results, lambda r: (r.payout_id, r.attempt, r.status, r.occurred_at))
    ordered = sorted(unique, key=lambda p: (p.issued_at, p.payout_id, p.attempt))
    return tuple(
        Reward(
            payout,
            tuple(
                r
                for r in reported
                if r.payout_id == payout.payout_id and r.attempt == payout.attempt
            ),
        )
        for payout in ordered
    )


def to_document(data: PersonalData) -> dict[str, Any]:
    """The JSON document `referrals export` prints: field names are the Avro field names,
    timestamps ISO 8601 UTC; `profile` is the profile, "erased", or null when never known."""
    profile: object = None
    if data.profile is not None:
        profile = _json(data.profile)
    elif data.profile_state is ProfileState.ERASED:
        profile = "erased"
    return {
        "advocate_id": data.advocate_id,
        "profile": profile,
        "referrals": [
            {
                "referral_id": r.referral_id,
                "program_id": r.program_id,
                "prospect_id": r.prospect_id,
                "status": r.history[-1].status.value,
                "history": [_json(s) for s in r.history],
            }
            for r in data.referrals
        ],
        "rewards": [
            {**_json(w.payout), "results": [_json(r) for r in w.results]} for w in data.rewards
        ],
        "messages": [_json(m) for m in data.messages],
    }


def _json(record: Record) -> dict[str, Any]:
    value = to_json(dataclasses.asdict(record))
    assert isinstance(value, dict)
    return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in value.items()}
