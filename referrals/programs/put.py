"""`referrals program validate|put FILE`: marketing's program documents into the system.

`validate` reports every problem with its path. `put` validates, then publishes the document
with every default filled in (canonical JSON) to the compacted `programs.config.v1` as the next
version of the program; every service picks it up without a restart.
"""

from __future__ import annotations

import getpass
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import TopicPartition

from referrals.contract.avro import AvroCodec
from referrals.contract.publish import Prepared, publish
from referrals.contract.records import ProgramConfig
from referrals.contract.topics import PROGRAMS, TopicNames
from referrals.platform.money import to_major
from referrals.platform.settings import KafkaSettings
from referrals.programs.document import canonical_json, parse_document, validate
from referrals.programs.model import ProgramDocument
from referrals.streams.kafka import absent_topic, make_consumer


def load_program(path: Path) -> ProgramDocument:
    """Reads and validates a YAML or JSON program document; raises ProgramInvalid."""
    return validate(parse_document(path.read_text(encoding="utf-8"), source=str(path)))


def describe(doc: ProgramDocument) -> str:
    tiers = ", ".join(
        f"#{t.from_referral}+: "
        + (
            f"{t.percent}% "
            if t.amount_minor is None
            else f"{to_major(t.amount_minor, doc.currency)} "
        )
        + t.reward_type
        for t in doc.rewards.tiers
    )
    parts = [f"program {doc.program_id} ({doc.currency}, {doc.time_zone}): tiers {tiers}"]
    rewards = doc.rewards
    if rewards.friend_reward is not None:
        friend = rewards.friend_reward
        parts.append(
            f"friend reward {to_major(friend.amount_minor, doc.currency)} {friend.reward_type}"
        )
    if rewards.clawback:
        parts.append("clawbacks on")
    if doc.fraud.max_wins_per_day is not None:
        parts.append(f"at most {doc.fraud.max_wins_per_day} wins a day before review")
    if doc.status.value != "ACTIVE":
        parts.append(f"status {doc.status.value}")
    return "; ".join(parts)


async def current_version(settings: KafkaSettings, program_id: str) -> int:
    """The newest published version of `program_id` (0 when it was never put)."""
    codec = AvroCodec()
    physical = TopicNames(settings.topic_prefix)(PROGRAMS)
    consumer = make_consumer(settings, client_id="referrals-cli-programs")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = [TopicPartition(physical, p) for p in consumer.partitions_for_topic(physical) or ()]
        if not parts:
            raise FileNotFoundError(await absent_topic(consumer._client, physical))
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        version = 0
        while any([await consumer.position(tp) < end[tp] for tp in parts]):
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for msg in messages:
                    if msg.key == program_id.encode() and msg.value is not None:
                        record = codec.decode(msg.value, "ProgramConfig")
                        assert isinstance(record, ProgramConfig)
                        version = max(version, record.version)
        return version
    finally:
        await consumer.stop()


async def put(
    settings: KafkaSettings, doc: ProgramDocument, published_by: str | None = None
) -> ProgramConfig:
    document = canonical_json(doc)
    config = ProgramConfig(
        program_id=doc.program_id,
        version=await current_version(settings, doc.program_id) + 1,
        document=document,
        document_sha256=hashlib.sha256(document.encode("utf-8")).hexdigest(),
        published_at=datetime.now(UTC),
        published_by=published_by or getpass.getuser(),
    )
    value = AvroCodec().encode(config)
    await publish(settings, PROGRAMS, [Prepared(doc.program_id.encode(), value)])
    return config
