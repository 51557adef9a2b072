"""The topics check's rules, without Kafka: what every topic must look like, compared with what
the cluster reports.

Every topic must exist, have the partition count all the others have (partition p of each
input is one task of a service, so they must agree; `--partitions` names the count), the
replication factor `referrals topics create` and the services give it (min(3, brokers)), and
`min.insync.replicas` (2 from three replicas) and the configs it is created with: compaction
where the catalogue says, retention and the advocates topic's erasure settings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from referrals.streams.topics import min_insync_for, replicas_for
from referrals.tools.doctor.findings import Finding, ok, problem

CHECK = "topics"
CREATE = "referrals topics create"


@dataclass(frozen=True, slots=True)
class Wanted:
    """A topic that must exist (physical name), the configs it must have, and what makes it:
    a command to run, or the service that creates it at start-up."""

    name: str
    configs: Mapping[str, str]
    made_by: str = CREATE


@dataclass(frozen=True, slots=True)
class Seen:
    """A topic as the cluster describes it; `replicas` is its smallest partition's count."""

    name: str
    partitions: int
    replicas: int
    configs: Mapping[str, str]


def expected_partitions(wanted: Sequence[Wanted], seen: Mapping[str, Seen]) -> int | None:
    """The count most of the wanted topics have (None when none exists): the one to keep, as a
    topic that differs from it is the likelier mistake."""
    counts = Counter(seen[w.name].partitions for w in wanted if w.name in seen)
    if not counts:
        return None
    return max(counts.items(), key=lambda item: (item[1], item[0]))[0]


def judge_topics(
    wanted: Sequence[Wanted],
    seen: Mapping[str, Seen],
    *,
    brokers: int,
    partitions: int | None,
    bootstrap: str,
    user: str | None = None,
) -> list[Finding]:
    """A finding per topic problem, missing topics grouped by what creates them, and one ok
    finding for the topics that are as they should be. With a SASL `user`, a missing topic may
    also be one the user may not see (Kafka lists only the topics a principal may describe)."""
    want_partitions = partitions or expected_partitions(wanted, seen)
    replicas = replicas_for(brokers)
    findings = _missing([w for w in wanted if w.name not in seen], want_partitions, user)
    fine = 0
    for topic in (w for w in wanted if w.name in seen):
        found = _compare(topic, seen[topic.name], want_partitions, replicas, brokers, bootstrap)
        findings.extend(found)
        fine += not found
    if fine:
        findings.insert(0, ok(CHECK, "", _summary(fine, len(wanted), want_partitions, replicas)))
    return findings


def _summary(fine: int, total: int, partitions: int | None, replicas: int) -> str:
    count = f"{fine} of {total} topics" if fine < total else f"all {total} topics"
    return (
        f"{count} as expected: {partitions} partitions, replication factor {replicas}, "
        f"min.insync.replicas {min_insync_for(replicas)}, cleanup policy and retention as "
        f"created"
    )


def _missing(missing: Sequence[Wanted], partitions: int | None, user: str | None) -> list[Finding]:
    by_maker: dict[str, list[str]] = {}
    for topic in missing:
        by_maker.setdefault(topic.made_by, []).append(topic.name)
    out = []
    for maker, names in by_maker.items():
        fix = maker
        if maker == CREATE and partitions is not None:
            fix = f"{CREATE} --partitions {partitions}   (creates only the missing topics)"
        subject = names[0] if len(names) == 1 else f"{len(names)} topics"
        detail = "missing" if len(names) == 1 else "missing: " + _some(names)
        if user:
            detail += f" (or not visible to User:{user}; doctor needs to describe every topic)"
        out.append(problem(CHECK, subject, detail, fix))
    return out


def _some(names: Sequence[str], shown: int = 6) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _compare(
    topic: Wanted, seen: Seen, partitions: int | None, replicas: int, brokers: int, bootstrap: str
) -> list[Finding]:
    out = []
    if partitions is not None and seen.partitions != partitions:
        out.append(_partitions(topic, seen.partitions, partitions, bootstrap))
    if seen.replicas != replicas:
        detail = (
            f"replication factor {seen.replicas}, expected {replicas} "
            f"(min(3, brokers) with {brokers} broker{'s' if brokers != 1 else ''})"
        )
        fix = (
            f"reassign its partitions to {replicas} replicas: kafka-reassign-partitions.sh "
            f"--bootstrap-server {bootstrap} --execute --reassignment-json-file PLAN.json\n"
            f"(PLAN.json lists {replicas} broker ids for each partition of {topic.name})"
        )
        out.append(problem(CHECK, topic.name, detail, fix))
    configs = {**topic.configs, "min.insync.replicas": min_insync_for(replicas)}
    for key, value in sorted(configs.items()):
        if seen.configs.get(key) != value:
            out.append(_config(topic.name, key, seen.configs.get(key), value, bootstrap))
    return out


def _partitions(topic: Wanted, has: int, want: int, bootstrap: str) -> Finding:
    detail = (
        f"{has} partitions, expected {want}: partition p of every input is one task of a "
        f"service, so all topics must have the same count"
    )
    if has < want:
        fix = (
            f"if it is empty or a .dlq: kafka-topics.sh --bootstrap-server {bootstrap} --alter "
            f"--topic {topic.name} --partitions {want}\n"
            f"otherwise its keys would move away from their task's state: move to new topics"
        )
    else:
        fix = (
            f"Kafka cannot remove partitions: if its records may go, kafka-topics.sh "
            f"--bootstrap-server {bootstrap} --delete --topic {topic.name}\n"
            f"then {CREATE} --partitions {want}; otherwise recreate the others with {has}"
        )
    return problem(CHECK, topic.name, detail, fix)


def _config(name: str, key: str, has: str | None, want: str, bootstrap: str) -> Finding:
    shown = "not set" if has is None else f"{has}"
    fix = (
        f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics "
        f"--entity-name {name} --add-config {key}={want}"
    )
    return problem(CHECK, name, f"{key} is {shown}, expected {want}", fix)
