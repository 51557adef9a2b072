"""`referrals tail TOPIC`: one JSON object per line, the record's value, read_committed.

A dead-letter topic's records are printed with their headers (why and where from) and the
original bytes in base64, plus the decoded value when the bytes still decode.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from typing import Any, TextIO

from aiokafka import TopicPartition

from referrals.contract.avro import AvroCodec
from referrals.contract.jsonio import to_json
from referrals.contract.topics import ANY_RECORD, DLQ_SUFFIX, TopicNames, spec_for
from referrals.platform.errors import DecodeError
from referrals.platform.settings import KafkaSettings
from referrals.streams.dlq import header_dict
from referrals.streams.kafka import absent_topic, make_consumer


def render(topic: str, msg: Any, codec: AvroCodec) -> dict[str, Any]:
    """The JSON object `tail` prints for one consumed record of logical topic `topic`."""
    if topic.endswith(DLQ_SUFFIX):
        out: dict[str, Any] = {
            "key": msg.key.decode("utf-8", "replace") if msg.key is not None else None,
            "headers": header_dict(msg.headers),
            "value_base64": base64.b64encode(msg.value or b"").decode("ascii"),
        }
        try:
            out["value"] = to_json(codec.decode_datum(msg.value or b"")[1])
        except DecodeError:
            out["value"] = None
        return out
    expected = spec_for(topic).record
    _, datum = codec.decode_datum(msg.value, None if expected == ANY_RECORD else expected)
    result = to_json(datum)
    assert isinstance(result, dict)
    return result


async def tail(
    settings: KafkaSettings,
    topic: str,
    *,
    from_beginning: bool,
    max_records: int | None,
    timeout_s: float | None,
    out: TextIO = sys.stdout,
) -> int:
    """Prints records until `max_records` or `timeout_s` without a new record; returns count."""
    if not topic.endswith(DLQ_SUFFIX):
        spec_for(topic)  # an unknown topic is an error before connecting
    codec = AvroCodec()
    physical = TopicNames(settings.topic_prefix)(topic)
    consumer = make_consumer(settings, client_id="referrals-tail")
    await consumer.start()
    count = 0
    try:
        partitions = consumer.partitions_for_topic(physical)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(physical)
        if not partitions:
            reason = await absent_topic(consumer._client, physical)
            raise DecodeError(reason, reason="UNKNOWN_TOPIC")
        parts = [TopicPartition(physical, p) for p in sorted(partitions)]
        consumer.assign(parts)
        if from_beginning:
            await consumer.seek_to_beginning(*parts)
        else:
            await consumer.seek_to_end(*parts)
        last = time.monotonic()
        while max_records is None or count < max_records:
            if timeout_s is not None and time.monotonic() - last >= timeout_s:
                break
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            messages = sorted(
                (m for ms in batch.values() for m in ms), key=lambda m: (m.timestamp, m.partition)
            )
            for msg in messages:
                try:
                    line = json.dumps(render(topic, msg, codec))
                except DecodeError as err:
                    print(f"partition {msg.partition} offset {msg.offset}: {err}", file=sys.stderr)
                    continue
                out.write(line + "\n")
                count += 1
                if max_records is not None and count >= max_records:
                    break
            if messages:
                out.flush()
                last = time.monotonic()
    except asyncio.CancelledError:
        pass
    finally:
        await consumer.stop()
    return count
