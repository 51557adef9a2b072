"""The contract's principal x topic table (CONTRACT.md, Security) as ACL bindings: who may write
and read each topic, nothing beyond, and every topic each service really consumes, owns and
dead-letters covered. Pure: no broker (tests/integration/test_secure_boundary.py checks that a
secured broker enforces these bindings)."""

from __future__ import annotations

import pytest

from referrals.contract import acls
from referrals.contract.records import RewardAction
from referrals.contract.topics import (
    ADVOCATES,
    CATALOGUE,
    COMMAND_RESULTS,
    CONVERSIONS,
    DEALS,
    NOTIFICATIONS_SENT,
    OPERATOR_COMMANDS,
    PAYOUT_RESULTS,
    PAYOUTS,
    PAYOUTS_V2,
    PROGRAMS,
    SHARES,
    STATUS,
    Role,
    dlq_of,
)
from referrals.platform.acls import (
    AclBinding,
    AclOperation,
    PatternType,
    Permission,
    ResourceType,
    allows,
    user,
)
from referrals.platform.settings import KafkaSettings
from referrals.streams.acls import plan
from referrals.streams.kafka import transactional_id
from referrals.streams.stores import changelog_topic
from services.attribution.adapters.processor import AttributionProcessor
from services.notifications.adapters.processor import NotificationsProcessor
from services.rewards.adapters.operator import kafka_principal, new_command
from services.rewards.adapters.processor import RewardsProcessor

BINDINGS = acls.bindings()
PUBLIC = [spec.name for spec in CATALOGUE if spec.role is not Role.INTERNAL]
READ, WRITE, CREATE = AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE


def can(principal: str, operation: AclOperation, topic: str, bindings: list[AclBinding]) -> bool:
    return allows(bindings, user(principal), ResourceType.TOPIC, topic, operation)


def writers(topic: str, bindings: list[AclBinding] = BINDINGS) -> set[str]:
    return {p for p in acls.PRINCIPALS if can(p, WRITE, topic, bindings)}


def readers(topic: str, bindings: list[AclBinding] = BINDINGS) -> set[str]:
    return {p for p in acls.PRINCIPALS if can(p, READ, topic, bindings)}


# -- the contract's table, topic by topic -------------------------------------------------------
def test_only_the_rewards_service_may_write_a_payout() -> None:
    assert writers(PAYOUTS) == {"rewards"}
    assert writers(PAYOUTS_V2) == {"rewards"}


def test_only_finance_and_the_api_for_finance_may_write_payout_results() -> None:
    assert writers(PAYOUT_RESULTS) == {"finance", "api"}


def test_only_operators_and_the_api_may_write_programs_and_operator_commands() -> None:
    assert writers(PROGRAMS) == {"operator", "api"}
    assert writers(OPERATOR_COMMANDS) == {"operator", "api"}


def test_statuses_come_from_attribution_and_rewards_only() -> None:
    assert writers(STATUS) == {"attribution", "rewards"}
    assert writers(COMMAND_RESULTS) == {"rewards"}
    assert writers(NOTIFICATIONS_SENT) == {"notifications"}


def test_platform_teams_write_their_four_topics_and_the_operator_erases_advocates() -> None:
    for topic in (SHARES, CONVERSIONS, DEALS):
        assert writers(topic) == {"platform", "api"}
    assert writers(ADVOCATES) == {"platform", "api", "operator"}


def test_the_platform_principal_reads_nothing_at_all() -> None:
    mine = [b for b in BINDINGS if b.principal == user("platform")]
    assert mine and all(b.operation is WRITE for b in mine)
    assert not any(can("platform", READ, t, BINDINGS) for t in PUBLIC)


def test_finance_reads_the_payouts_and_nothing_else() -> None:
    assert {t for t in PUBLIC if can("finance", READ, t, BINDINGS)} == {PAYOUTS, PAYOUTS_V2}
    assert {t for t in PUBLIC if can("finance", WRITE, t, BINDINGS)} == {PAYOUT_RESULTS}


def test_the_payouts_are_read_by_finance_operators_the_api_and_no_other_service() -> None:
    assert readers(PAYOUTS) == {"finance", "operator", "api"}
    assert readers(PAYOUTS_V2) == {"finance", "operator", "api"}


def test_notifications_dead_letters_the_deliveries_it_gives_up_on() -> None:
    # services/notifications/adapters/outcomes.py: a DeadLetterOut for notifications.sent.v1.
    assert writers(dlq_of(NOTIFICATIONS_SENT)) == {"notifications"}


def test_the_operator_reads_every_dead_letter_and_no_service_reads_one() -> None:
    for spec in CATALOGUE:
        assert "operator" in readers(dlq_of(spec.name))
        assert not readers(dlq_of(spec.name)) & set(acls.SERVICES)


# -- what each service really does --------------------------------------------------------------
SERVICES = {
    "attribution": AttributionProcessor,
    "rewards": RewardsProcessor,
    "notifications": NotificationsProcessor,
}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_may_read_and_dead_letter_every_topic_it_consumes(service: str) -> None:
    processor = SERVICES[service]
    consumed = {*processor.inputs, *processor.globals}
    for topic in consumed:
        assert can(service, READ, topic, BINDINGS), topic
        assert can(service, WRITE, dlq_of(topic), BINDINGS), dlq_of(topic)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_owns_exactly_its_internal_topics_and_changelogs(service: str) -> None:
    processor = SERVICES[service]
    mine = {spec.name for spec in processor.internal_topics} | {
        changelog_topic(processor.name, store) for store in processor.stores
    }
    if service == "notifications":  # its unsubscribe endpoint's topic, read as an input
        mine |= {t for t in processor.inputs if t.startswith("notifications.")}
    assert set(acls.entry(service).owns) == mine
    created = {b.name for b in BINDINGS if b.principal == user(service) and b.operation is CREATE}
    assert created == mine
    for topic in mine:
        assert can(service, READ, topic, BINDINGS) and can(service, WRITE, topic, BINDINGS)


def test_no_service_may_read_another_services_state() -> None:
    for service in acls.SERVICES:
        for other in acls.SERVICES:
            if other == service:
                continue
            for topic in acls.entry(other).owns:
                assert not can(service, READ, topic, BINDINGS), (service, topic)
                assert not can(service, WRITE, topic, BINDINGS), (service, topic)


# -- what a binding can be ----------------------------------------------------------------------
def test_bindings_allow_only_read_write_and_create_on_named_topics_groups_and_ids() -> None:
    assert {b.operation for b in BINDINGS} == {READ, WRITE, CREATE}
    assert {b.resource_type for b in BINDINGS} == {
        ResourceType.TOPIC,
        ResourceType.GROUP,
        ResourceType.TRANSACTIONAL_ID,
    }
    assert all(b.permission is Permission.ALLOW and b.host == "*" for b in BINDINGS)
    topics = [b for b in BINDINGS if b.resource_type is ResourceType.TOPIC]
    # Literal names only: a prefix such as "rewards." would also cover rewards.payout-results.v1.
    assert all(b.pattern is PatternType.LITERAL and "*" not in b.name for b in topics)
    assert len(BINDINGS) == len(set(BINDINGS)) and sorted(BINDINGS) == BINDINGS


def test_the_topic_prefix_is_part_of_every_topic_name() -> None:
    prefixed = acls.bindings("tenant-a.")
    topics = [b for b in prefixed if b.resource_type is ResourceType.TOPIC]
    assert all(b.name.startswith("tenant-a.") for b in topics)
    assert writers("tenant-a." + PAYOUTS, prefixed) == {"rewards"}
    assert writers(PAYOUTS, prefixed) == set()


def test_each_service_owns_its_consumer_group_and_transactional_ids() -> None:
    custom = acls.bindings(groups={"rewards": "acme-rewards"})
    rewards = user("rewards")
    assert allows(custom, rewards, ResourceType.GROUP, "acme-rewards", READ)
    assert not allows(custom, rewards, ResourceType.GROUP, "referrals-rewards", READ)
    assert allows(custom, rewards, ResourceType.TRANSACTIONAL_ID, "acme-rewards-3", WRITE)
    assert not allows(custom, rewards, ResourceType.TRANSACTIONAL_ID, "acme-rewardsX", WRITE)
    # Another service's transactional ids would let it fence rewards' tasks: refused.
    attribution = user("attribution")
    assert allows(
        custom, attribution, ResourceType.TRANSACTIONAL_ID, "referrals-attribution-0", WRITE
    )
    assert not allows(custom, attribution, ResourceType.TRANSACTIONAL_ID, "acme-rewards-0", WRITE)
    with pytest.raises(KeyError, match="not services"):
        acls.bindings(groups={"finance": "x"})


def test_a_users_cli_transactions_are_under_its_own_prefix() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="platform"
    )
    txn = transactional_id(settings, "referrals-cli")
    assert txn.startswith("platform-referrals-cli-")
    assert allows(BINDINGS, user("platform"), ResourceType.TRANSACTIONAL_ID, txn, WRITE)
    assert not allows(BINDINGS, user("finance"), ResourceType.TRANSACTIONAL_ID, txn, WRITE)
    plain = transactional_id(KafkaSettings(), "referrals-cli")
    assert plain.startswith("referrals-cli-") and plain != transactional_id(
        KafkaSettings(), "referrals-cli"
    )


def test_allows_follows_kafkas_rules_for_prefixes_implied_describe_and_deny() -> None:
    who = user("x")
    prefixed = AclBinding(who, ResourceType.TOPIC, "a.", PatternType.PREFIXED, READ)
    assert allows([prefixed], who, ResourceType.TOPIC, "a.b", READ)
    assert allows([prefixed], who, ResourceType.TOPIC, "a.b", AclOperation.DESCRIBE)
    assert not allows([prefixed], who, ResourceType.TOPIC, "a.b", WRITE)
    assert not allows([prefixed], who, ResourceType.TOPIC, "b.a.", READ)
    assert not allows([prefixed], user("y"), ResourceType.TOPIC, "a.b", READ)
    deny = AclBinding(who, ResourceType.TOPIC, "a.b", PatternType.LITERAL, READ, Permission.DENY)
    assert not allows([prefixed, deny], who, ResourceType.TOPIC, "a.b", READ)
    anyone = AclBinding(user("*"), ResourceType.TOPIC, "*", PatternType.LITERAL, AclOperation.ALL)
    assert allows([anyone], who, ResourceType.TOPIC, "z", WRITE)


# -- applying: what changes ---------------------------------------------------------------------
def test_applying_creates_what_is_missing_and_deletes_what_the_table_does_not_give() -> None:
    wanted = acls.bindings()
    stray = AclBinding(user("platform"), ResourceType.TOPIC, STATUS, PatternType.LITERAL, READ)
    everyone = AclBinding(user("*"), ResourceType.TOPIC, PAYOUTS, PatternType.LITERAL, WRITE)
    other = AclBinding(user("someone-else"), ResourceType.TOPIC, "x", PatternType.LITERAL, READ)
    present = [*wanted[1:], stray, everyone, other]
    managed = {user(p) for p in acls.PRINCIPALS} | {user("*")}
    change = plan(wanted, present, managed.__contains__)
    assert change.created == [wanted[0]]
    assert change.deleted == sorted([stray, everyone])  # the other principal's binding stays
    assert plan(wanted, wanted, managed.__contains__).created == []


def test_an_unknown_principal_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="known: attribution, rewards"):
        acls.entry("marketing")


def test_the_table_prints_each_principal_and_why_it_reads_beyond_the_contract() -> None:
    text = acls.table_text("t.")
    assert "topic prefix: 't.'" in text
    for principal in acls.PRINCIPALS:
        assert f"\n{principal}\n" in text
    assert "program put reads the program's versions" in text


# -- who did it ---------------------------------------------------------------------------------
def test_an_operator_command_records_the_sasl_user_beside_what_by_says() -> None:
    sasl = KafkaSettings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="operator"
    )
    assert kafka_principal(sasl) == "kafka:operator"
    assert kafka_principal(KafkaSettings()) is None
    # A username without SASL is not an authenticated identity.
    assert kafka_principal(KafkaSettings(sasl_username="operator")) is None
    command = new_command(RewardAction.APPROVE, "po-1", "alice", principal=kafka_principal(sasl))
    assert (command.by, command.principal) == ("alice", "kafka:operator")
