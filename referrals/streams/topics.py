"""Topics as the runtime sees them: specs, a catalogue, physical names, dead-letter names and
idempotent creation. Generic: which topics exist and what they carry is the application's
catalogue (for this project, `referrals.contract.topics`), handed to the runtime.

All of a processor's input topics share one partition count, so partition p of each forms one
processing task (see `referrals.streams.runtime`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from referrals.platform.errors import PermanentError

DLQ_SUFFIX = ".dlq"
ANY_RECORD = "*"  # a topic carrying several record types (decoded by the codec's own header)


class Role(StrEnum):
    INPUT = "input"  # produced outside the system: its records are checked before processing
    OUTPUT = "output"  # the system produces
    INTERNAL = "internal"  # between services; not part of the public contract


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str  # logical name
    record: str  # the record type its values hold, or ANY_RECORD
    key_field: str  # the record field every record's key must equal
    role: Role
    compacted: bool = False
    # The schema version written to this topic; None: the newest. A topic whose consumers were
    # promised an older version (rewards.payouts.v1 beside .v2) keeps it.
    schema_version: int | None = None


Validate = Callable[[Any, datetime], None]  # raises a PermanentError for an impossible value


def _no_checks(record: Any, now: datetime) -> None:
    """The default input check: none."""


class Catalogue:
    """The topics an application knows, by logical name, and the check its input records get.
    Services add their internal topics at start-up (`register`)."""

    def __init__(self, specs: Iterable[TopicSpec], validate: Validate = _no_checks) -> None:
        self._by_name = {spec.name: spec for spec in specs}
        self.validate = validate

    def register(self, spec: TopicSpec) -> None:
        """Adds a topic (e.g. a re-keyed input) so the runtime can decode it; first one wins."""
        self._by_name.setdefault(spec.name, spec)

    def spec_for(self, topic: str) -> TopicSpec:
        """The spec of a logical topic name; raises KeyError naming the known topics."""
        try:
            return self._by_name[topic]
        except KeyError:
            known = ", ".join(sorted(self._by_name))
            raise KeyError(f"unknown topic {topic!r}; the known topics are: {known}") from None


def check_key(spec: TopicSpec, key: str | bytes | None, record: object) -> None:
    """A record must be keyed by its topic's key field: the key decides the task, and the task
    owns all state of that key, so a record keyed otherwise would be handled in the wrong one.

    Keys are UTF-8 (the contract): given the raw key bytes, bytes that are not UTF-8 are
    BAD_KEY. Given a key already decoded leniently (errors="replace"), a U+FFFD in it is taken
    for such bytes too, so a non-UTF-8 key never matches an id that holds the replacement
    character."""
    if isinstance(key, bytes):
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PermanentError(
                f"record key {key[:80]!r} is not UTF-8 ({err.reason} at byte {err.start})",
                reason="BAD_KEY",
            ) from None
    elif key is not None and REPLACEMENT in key:
        raise PermanentError(
            f"record key {key[:80]!r} is not UTF-8 (or holds U+FFFD)", reason="BAD_KEY"
        )
    expected = getattr(record, spec.key_field, None)
    if key != expected:
        shown = key if key is None or len(key) <= 80 else f"{key[:80]}... ({len(key)} chars)"
        raise PermanentError(
            f"record key {shown!r} differs from its {spec.key_field} {expected!r}",
            reason="KEY_MISMATCH",
        )


REPLACEMENT = "\ufffd"


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


async def create_named_topics(
    admin: AIOKafkaAdminClient,
    wanted: dict[str, dict[str, str]],
    *,
    partitions: int,
    replication_factor: int | None = None,
    visible_within_s: float = 30.0,
) -> list[str]:
    """Creates physical topics (name -> configs) that do not exist; returns those it created.

    Without a `replication_factor` the cluster decides it: min(3, brokers it reports), so one
    broker gets 1 replica and three or more get 3. Three or more replicas get
    `min.insync.replicas` 2 (a write survives the loss of one broker), fewer get 1.
    """
    replicas = replication_factor or await replication_for(admin)
    min_isr = min_insync_for(replicas)
    new = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replicas,
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


MAX_REPLICAS = 3


async def replication_for(admin: AIOKafkaAdminClient) -> int:
    """The replication factor for new topics: min(3, the brokers the cluster reports).

    The count is of brokers alive now (a broker that is down is not in the metadata): create
    topics with the whole cluster up, or give the factor explicitly.
    """
    cluster = await admin.describe_cluster()
    return replicas_for(len(cluster.get("brokers") or ()))


def replicas_for(brokers: int) -> int:
    """min(3, brokers), at least 1: the replication factor of every topic on such a cluster."""
    return max(1, min(MAX_REPLICAS, brokers))


def min_insync_for(replicas: int) -> str:
    """`min.insync.replicas` for a topic of `replicas`: 2 from three (a write survives the loss
    of one broker), else 1."""
    return "2" if replicas >= 3 else "1"


TOPIC_ALREADY_EXISTS = 36


async def _await_visible(admin: AIOKafkaAdminClient, topics: set[str], within_s: float) -> None:
    """Waits until every broker lists every topic with a leader for each of its partitions.

    Every broker, not one: the admin asks a random broker each time, and in a cluster one
    broker's metadata can trail another's for a moment. A broker that does not answer is left
    out (it learns the topics from the controller when it is back)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        missing = await _not_visible(admin, topics)
        if not missing:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"topics not visible after {within_s:.0f} s: {sorted(missing)}")
        await asyncio.sleep(0.1)


async def _not_visible(admin: AIOKafkaAdminClient, topics: set[str]) -> set[str]:
    cluster = await admin.describe_cluster()
    missing: set[str] = set()
    for broker in cluster.get("brokers") or ():
        try:
            # aiokafka's admin has no public "ask this broker"; its own methods use this.
            response = await admin._send_request(MetadataRequest(sorted(topics)), broker["node_id"])
        except KafkaError:
            continue
        described = response.to_object()["topics"]
        seen = {t["topic"] for t in described}
        missing |= topics - seen
        missing |= {
            t["topic"]
            for t in described
            if t["error_code"] != 0
            or not t["partitions"]
            or any(p["leader"] < 0 for p in t["partitions"])
        }
    return missing


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    out = []
    for item in getattr(response, "topic_errors", []):
        name, code = item[0], item[1]
        msg = item[2] if len(item) > 2 else None
        out.append((name, code, msg))
    return out
