"""The contract's topics: names, record types, keys, and creating them all.

Built on the runtime's generic `TopicSpec`/`Catalogue` (`referrals.streams.topics`). All topics
get the same partition count so that partition p of every input topic forms one processing
task (see `referrals.streams.runtime`).
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from referrals.contract.validation import check_values, checks
from referrals.platform.settings import AmountLimits
from referrals.streams.topics import ANY_RECORD as ANY_RECORD
from referrals.streams.topics import DLQ_SUFFIX as DLQ_SUFFIX
from referrals.streams.topics import Catalogue, create_named_topics
from referrals.streams.topics import Role as Role
from referrals.streams.topics import TopicNames as TopicNames
from referrals.streams.topics import TopicSpec as TopicSpec
from referrals.streams.topics import dlq_of as dlq_of

ADVOCATES = "referral.advocates.v1"
SHARES = "referral.shares.v1"
CONVERSIONS = "referral.conversions.v1"
DEALS = "referral.deals.v1"
PAYOUT_RESULTS = "rewards.payout-results.v1"
PROGRAMS = "programs.config.v1"
STATUS = "referral.status.v1"
PAYOUTS = "rewards.payouts.v1"
NOTIFICATIONS_SENT = "notifications.sent.v1"
PAYOUTS_V2 = "rewards.payouts.v2"
OPERATOR_COMMANDS = "operator.commands.v1"
COMMAND_RESULTS = "operator.command-results.v1"
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
    TopicSpec(PAYOUTS, "PayoutCommand", "advocate_id", Role.OUTPUT, schema_version=1),
    TopicSpec(NOTIFICATIONS_SENT, "NotificationSent", "advocate_id", Role.OUTPUT),
    TopicSpec(PAYOUTS_V2, "PayoutCommand", "advocate_id", Role.OUTPUT),
    TopicSpec(OPERATOR_COMMANDS, "OperatorCommand", "command_id", Role.INPUT),
    TopicSpec(COMMAND_RESULTS, "CommandResult", "command_id", Role.OUTPUT),
    TopicSpec(DEALS_BY_PROSPECT, "DealEvent", "prospect_id", Role.INTERNAL),
    # PayoutOwner and RewardCommand records, keyed by payout_id.
    TopicSpec(REWARDS_BY_PAYOUT, ANY_RECORD, "payout_id", Role.INTERNAL),
    # PayoutResult and RewardCommand records, keyed by advocate_id.
    TopicSpec(REWARDS_BY_ADVOCATE, ANY_RECORD, "advocate_id", Role.INTERNAL),
    # Signed unsubscribe links used by advocates (notifications), keyed by advocate_id.
    TopicSpec(UNSUBSCRIBES, "UnsubscribeRequest", "advocate_id", Role.INTERNAL),
)
# The catalogue the runtime is given: every contract topic, input records checked for the
# contract's impossible values (`validation`). Services register their internal topics in it.
TOPICS = Catalogue(CATALOGUE, validate=check_values)
spec_for = TOPICS.spec_for
register = TOPICS.register


def configured(limits: AmountLimits) -> Catalogue:
    """The catalogue, its input records checked against the configured amount ceilings
    (`REFERRALS_MAX_AMOUNT_MINOR`, `REFERRALS_AMOUNT_CEILINGS`); a service's `main` loads
    them and hands the result to the runtime."""
    TOPICS.validate = checks(limits)
    return TOPICS


_DAY_MS = 86_400_000
# Personal data (GDPR erasure): a profile replaced or erased must leave the advocates topic's
# log within 7 days. A compacted topic's records become eligible for compaction at most
# `max.compaction.lag.ms` after they were written, whatever the dirty ratio, and Kafka rolls
# the active segment (never compacted) at min(segment.ms, max.compaction.lag.ms) on the next
# append. Six days leaves a day for the log cleaner to reach the partition. The tombstone
# itself holds only the advocate_id; it is kept (`delete.retention.ms`) for ten years so that
# any consumer rebuilding from the topic (attribution's directory, a new consumer group) still
# learns that the advocate was erased and rejects later referrals naming them.
ADVOCATES_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "max.compaction.lag.ms": str(6 * _DAY_MS),
    "segment.ms": str(_DAY_MS),
    "delete.retention.ms": str(3650 * _DAY_MS),
}


# Dead letters hold the bytes of bad input (a malformed profile's email with them) and the
# notifications service's undeliverable messages: personal data, kept only as long as an
# operator needs to look at them (`referrals topics create --dlq-retention-days`).
DEFAULT_DLQ_RETENTION_DAYS = 30


def physical_topics(
    names: TopicNames, *, dlq_retention_days: int = DEFAULT_DLQ_RETENTION_DAYS
) -> dict[str, dict[str, str]]:
    """Every topic to create, physical name -> topic configs. Each consumed topic has a .dlq."""
    if dlq_retention_days < 1:
        raise ValueError(f"dlq_retention_days must be at least 1, got {dlq_retention_days}")
    # Referral history, payouts and their results are the system of record: keep them forever.
    keep = {"retention.ms": "-1"}
    dead_letters = {"retention.ms": str(dlq_retention_days * _DAY_MS)}
    out: dict[str, dict[str, str]] = {}
    for spec in CATALOGUE:
        configs = {"cleanup.policy": "compact"} if spec.compacted else dict(keep)
        if spec.name == ADVOCATES:
            configs = dict(ADVOCATES_TOPIC_CONFIG)
        out[names(spec.name)] = configs
        out[names(dlq_of(spec.name))] = dict(dead_letters)
    return out


async def create_topics(
    admin: AIOKafkaAdminClient,
    names: TopicNames,
    *,
    partitions: int = 6,
    replication_factor: int | None = None,
    extra: dict[str, dict[str, str]] | None = None,
    visible_within_s: float = 30.0,
    dlq_retention_days: int = DEFAULT_DLQ_RETENTION_DAYS,
) -> list[str]:
    """Creates the topics that do not exist yet; returns the ones it created. Idempotent.

    It asks the broker to create every topic rather than trusting a listing: in KRaft a broker's
    metadata cache trails the controller, so a topic created a moment ago can be missing from a
    listing. It returns once every topic is visible to clients, so the caller can use them.
    Without a `replication_factor` the cluster decides: min(3, brokers), `min.insync.replicas`
    2 with three or more (`referrals.streams.topics.create_named_topics`). Dead-letter topics
    keep records `dlq_retention_days`. A topic that exists keeps its configs.
    """
    wanted = physical_topics(names, dlq_retention_days=dlq_retention_days) | (extra or {})
    return await create_named_topics(
        admin,
        wanted,
        partitions=partitions,
        replication_factor=replication_factor,
        visible_within_s=visible_within_s,
    )
