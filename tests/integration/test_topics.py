"""`referrals topics create`: every contract topic and its .dlq, compaction where the contract
says, one partition count, and a second run creates nothing."""

from __future__ import annotations

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from referrals.contract.topics import ADVOCATES, CATALOGUE, TopicNames, create_topics, dlq_of
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_admin

from .helpers import run_cli

pytestmark = pytest.mark.broker


async def test_creating_topics_twice_creates_them_once(kafka: KafkaSettings) -> None:
    names = TopicNames("topics-twice.")
    admin = make_admin(kafka)
    await admin.start()
    try:
        first = await create_topics(admin, names, partitions=4)
        second = await create_topics(admin, names, partitions=4)
        expected = {names(s.name) for s in CATALOGUE} | {names(dlq_of(s.name)) for s in CATALOGUE}
        assert set(first) == expected
        assert second == []
        described = await admin.describe_topics(sorted(expected))
        assert {len(t["partitions"]) for t in described} == {4}
    finally:
        await admin.close()


async def test_profiles_and_program_configs_are_compacted_and_events_are_kept(
    topics: KafkaSettings,
) -> None:
    names = TopicNames(topics.topic_prefix)
    admin = make_admin(topics)
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, names(s.name)) for s in CATALOGUE]
        responses = await admin.describe_configs(resources)
    finally:
        await admin.close()
    policies = {}
    configs = {}
    for response in responses:
        for _, _, _, name, entries in response.resources:
            values = {entry[0]: entry[1] for entry in entries}
            policies[names.logical(name)] = (values["cleanup.policy"], values["retention.ms"])
            configs[names.logical(name)] = values
    for spec in CATALOGUE:
        policy, retention = policies[spec.name]
        assert policy == ("compact" if spec.compacted else "delete"), spec.name
        if not spec.compacted:
            assert retention == "-1", spec.name
    # Dead letters (personal data among them) are kept 30 days by default, not forever.
    dead = await _retention(topics, [names(dlq_of(s.name)) for s in CATALOGUE])
    assert set(dead.values()) == {str(30 * DAY_MS)}


DAY_MS = 86_400_000


async def _retention(kafka: KafkaSettings, topics: list[str]) -> dict[str, str]:
    admin = make_admin(kafka)
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
        responses = await admin.describe_configs(resources)
    finally:
        await admin.close()
    return {
        name: {entry[0]: entry[1] for entry in entries}["retention.ms"]
        for response in responses
        for _, _, _, name, entries in response.resources
    }


async def test_the_cli_creates_topics_idempotently_with_the_dead_letters_retention(
    kafka: KafkaSettings,
) -> None:
    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, topic_prefix="cli-topics.")
    first = run_cli(settings, "topics", "create", "--partitions", "2", "--dlq-retention-days", "7")
    assert first.returncode == 0, first.stderr
    assert f"created {2 * len(CATALOGUE)} topic(s)" in first.stdout
    second = run_cli(settings, "topics", "create", "--partitions", "2")
    assert second.returncode == 0, second.stderr
    assert "created 0 topic(s)" in second.stdout
    names = TopicNames(settings.topic_prefix)
    kept = await _retention(kafka, [names(dlq_of(ADVOCATES))])
    assert kept == {names(dlq_of(ADVOCATES)): str(7 * DAY_MS)}


async def test_the_advocates_topic_lets_erased_values_leave_the_log_within_seven_days(
    topics: KafkaSettings,
) -> None:
    """GDPR: the broker reports the created topic's configs, not just what was asked for."""
    name = TopicNames(topics.topic_prefix)(ADVOCATES)
    admin = make_admin(topics)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        await admin.close()
    [(_, _, _, _, entries)] = response.resources
    values = {entry[0]: entry[1] for entry in entries}
    day_ms = 86_400_000
    assert values["cleanup.policy"] == "compact"
    assert 0 < int(values["max.compaction.lag.ms"]) <= 7 * day_ms
    # The active segment is rolled (and so compactable) no later than the lag.
    assert int(values["segment.ms"]) <= int(values["max.compaction.lag.ms"])
    # Tombstones (the erased marker, an id only) outlive any reader's catch-up.
    assert int(values["delete.retention.ms"]) >= 7 * day_ms
