"""The contract's topics: names, record types, keys, and idempotent creation.

All topics get the same partition count so that partition p of every input topic forms one
processing task (one transactional id per task; see `referrals.streams.runtime`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

DLQ_SUFFIX = ".dlq"
ANY_RECORD = "*"  # an internal topic carrying several record types (decoded by fingerprint)


class Role(StrEnum):
    INPUT = "input"  # platform teams produce
    OUTPUT = "output"  # the system produces
    INTERNAL = "internal"  # between services; not part of the public contract


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    record: str
    key_field: str
    role: Role
    compacted: bool = False


ADVOCATES = "referral.advocates.v1"
SHARES = "referral.shares.v1"
CONVERSIONS = "referral.conversions.v1"
DEALS = "referral.deals.v1"
PAYOUT_RESULTS = "rewards.payout-results.v1"
PROGRAMS = "programs.config.v1"
STATUS = "referral.status.v1"
PAYOUTS = "rewards.payouts.v1"
NOTIFICATIONS_SENT = "notifications.sent.v1"
# Internal topics (not part of the public contract).
DEALS_BY_PROSPECT = "attribution.deals-by-prospect.v1"
REWARDS_BY_PAYOUT = "rewards.by-payout.v1"
REWARDS_BY_ADVOCATE = "rewards.by-advocate.v1"
UNSUBSCRIBES = "notifications.unsubscribes.v1"

CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec(ADVOCATES, "AdvocateProfile", "advocate_id", Role.INPUT, compacted=True),
    TopicSpec(SHARES, "ShareEvent", "advocate_id", Role.INPUT),
    TopicSpec(CONVERSIONS, "ConversionEvent", "prospect_id", Role.INPUT),
    TopicSpec(DEALS, "DealEvent", "deal_id", Role.INPUT),
    TopicSpec(PAYOUT_RESULTS, "PayoutResult", "payout_id", Role.INPUT),
    TopicSpec(PROGRAMS, "ProgramConfig", "program_id", Role.INPUT, compacted=True),
    TopicSpec(STATUS, "ReferralStatusChanged", "advocate_id", Role.OUTPUT),
    TopicSpec(PAYOUTS, "PayoutCommand", "advocate_id", Role.OUTPUT),
    TopicSpec(NOTIFICATIONS_SENT, "NotificationSent", "advocate_id", Role.OUTPUT),
    TopicSpec(DEALS_BY_PROSPECT, "DealEvent", "prospect_id", Role.INTERNAL),
    # PayoutOwner and RewardCommand records, keyed by payout_id.
    TopicSpec(REWARDS_BY_PAYOUT, ANY_RECORD, "payout_id", Role.INTERNAL),
    # PayoutResult and RewardCommand records, keyed by advocate_id.
    TopicSpec(REWARDS_BY_ADVOCATE, ANY_RECORD, "advocate_id", Role.INTERNAL),
    # Signed unsubscribe links used by advocates (notifications), keyed by advocate_id.
    TopicSpec(UNSUBSCRIBES, "UnsubscribeRequest", "advocate_id", Role.INTERNAL),
)
BY_NAME = {spec.name: spec for spec in CATALOGUE}


def register(spec: TopicSpec) -> None:
    """Adds a service's internal topic (e.g. a re-keyed input) so the runtime can decode it."""
    BY_NAME.setdefault(spec.name, spec)


def spec_for(topic: str) -> TopicSpec:
    """The spec of a logical topic name; raises KeyError naming the known topics."""
    try:
        return BY_NAME[topic]
    except KeyError:
        known = ", ".join(sorted(BY_NAME))
        raise KeyError(f"unknown topic {topic!r}; the contract's topics are: {known}") from None


def dlq_of(topic: str) -> str:
    return topic + DLQ_SUFFIX


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Maps logical topic names to physical ones (a prefix isolates test runs and tenants)."""

    prefix: str = ""

    def __call__(self, logical: str) -> str:
        return self.prefix + logical

    def logical(self, physical: str) -> str:
        if self.prefix and physical.startswith(self.prefix):
            return physical[len(self.prefix) :]
        return physical


def physical_topics(names: TopicNames) -> dict[str, dict[str, str]]:
    """Every topic to create, physical name -> topic configs. Each consumed topic has a .dlq."""
    # Referral history, payouts and their results are the system of record: keep them forever.
    keep = {"retention.ms": "-1"}
    out: dict[str, dict[str, str]] = {}
    for spec in CATALOGUE:
        configs = {"cleanup.policy": "compact"} if spec.compacted else dict(keep)
        out[names(spec.name)] = configs
        out[names(dlq_of(spec.name))] = dict(keep)
    return out


async def create_topics(
    admin: AIOKafkaAdminClient,
    names: TopicNames,
    *,
    partitions: int = 6,
    replication_factor: int = 1,
    extra: dict[str, dict[str, str]] | None = None,
    visible_within_s: float = 30.0,
) -> list[str]:
    """Creates the topics that do not exist yet; returns the ones it created. Idempotent.

    It asks the broker to create every topic rather than trusting a listing: in KRaft a broker's
    metadata cache trails the controller, so a topic created a moment ago can be missing from a
    listing. It returns once every topic is visible to clients, so the caller can use them.
    """
    wanted = physical_topics(names) | (extra or {})
    return await create_named_topics(
        admin,
        wanted,
        partitions=partitions,
        replication_factor=replication_factor,
        visible_within_s=visible_within_s,
    )


async def create_named_topics(
    admin: AIOKafkaAdminClient,
    wanted: dict[str, dict[str, str]],
    *,
    partitions: int,
    replication_factor: int = 1,
    visible_within_s: float = 30.0,
) -> list[str]:
    """Creates physical topics (name -> configs) that do not exist; returns those it created."""
    min_isr = "2" if replication_factor >= 3 else "1"
    new = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            topic_configs={**configs, "min.insync.replicas": min_isr},
        )
        for name, configs in wanted.items()
    ]
    response = await admin.create_topics(new)
    results = _topic_errors(response)
    failed = [(n, code, msg) for n, code, msg in results if code not in (0, TOPIC_ALREADY_EXISTS)]
    if failed:
        raise RuntimeError(f"creating topics failed: {failed}")
    await _await_visible(admin, set(wanted), visible_within_s)
    return [n for n, code, _ in results if code == 0]


TOPIC_ALREADY_EXISTS = 36


async def _await_visible(admin: AIOKafkaAdminClient, topics: set[str], within_s: float) -> None:
    """Waits until every topic is listed and each of its partitions has a leader."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        missing = topics - set(await admin.list_topics())
        if not missing:
            described = await admin.describe_topics(sorted(topics))
            missing = {
                t["topic"]
                for t in described
                if t["error_code"] != 0 or any(p["leader"] < 0 for p in t["partitions"])
            }
        if not missing:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"topics not visible after {within_s:.0f} s: {sorted(missing)}")
        await asyncio.sleep(0.1)


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    out = []
    for item in getattr(response, "topic_errors", []):
        name, code = item[0], item[1]
        msg = item[2] if len(item) > 2 else None
        out.append((name, code, msg))
    return out
