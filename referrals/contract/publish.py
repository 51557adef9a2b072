"""`referrals publish TOPIC FILE`: JSON lines in, Avro single-object records out.

Every line is validated first (schema, then impossible values); if any line is bad, each bad
line is reported with its number and the field at fault and nothing is published. A valid file
goes out in one Kafka transaction, so read_committed consumers see all of it or none.
Each record's delivery is awaited: if the broker refuses any (a null key on a compacted topic,
a record over its size limit), the transaction is aborted and `PublishRefused` names each one.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka.errors import KafkaError

from referrals.contract.avro import AvroCodec, to_record
from referrals.contract.jsonio import from_json
from referrals.contract.topics import TopicNames, spec_for
from referrals.contract.validation import DEFAULT_LIMITS, check_values
from referrals.platform.errors import InputError, PermanentError, ReferralsError
from referrals.platform.settings import AmountLimits, KafkaSettings
from referrals.streams.kafka import make_producer

MAX_REPORTED = 20


@dataclass(frozen=True, slots=True)
class Prepared:
    key: bytes | None
    value: bytes


def prepare(
    topic: str,
    lines: Iterable[str],
    codec: AvroCodec,
    *,
    now: datetime | None = None,
    check: bool = True,
    raw: bool = False,
    limits: AmountLimits = DEFAULT_LIMITS,
) -> list[Prepared]:
    """Validates and encodes every line; raises InputError listing every bad line."""
    spec = spec_for(topic)
    schema = codec.registry.latest(spec.record).raw
    now = now or datetime.now(UTC)
    out: list[Prepared] = []
    errors: list[str] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if raw:  # the line's bytes as they are, surrounding white space included
            out.append(Prepared(None, line.encode("utf-8", "surrogateescape")))
            continue
        try:
            out.append(
                _prepare_line(
                    spec.record, spec.key_field, schema, text, number, codec, now, check, limits
                )
            )
        except InputError as err:
            errors.append(str(err))
    if errors:
        shown = errors[:MAX_REPORTED]
        more = len(errors) - len(shown)
        suffix = f"\n... and {more} more bad lines" if more else ""
        raise InputError(
            f"{len(errors)} bad line(s); nothing was published:\n" + "\n".join(shown) + suffix
        )
    return out


def _prepare_line(
    record_name: str,
    key_field: str,
    schema: object,
    text: str,
    number: int,
    codec: AvroCodec,
    now: datetime,
    check: bool,
    limits: AmountLimits,
) -> Prepared:
    try:
        obj = json.loads(text)
    except ValueError as err:
        raise InputError(f"not valid JSON: {err}", line=number) from None
    datum = from_json(schema, obj, line=number)  # type: ignore[arg-type]
    if check:
        try:
            check_values(to_record(record_name, dict(datum)), now, limits=limits)
        except PermanentError as err:
            raise InputError(str(err), line=number) from None
    key = datum[key_field]
    return Prepared(key.encode("utf-8"), codec.encode_datum(record_name, datum))


class PublishRefused(ReferralsError):
    """The broker refused records: none of the file is published (the transaction aborted)."""

    reason = "REFUSED"

    def __init__(self, topic: str, refused: list[tuple[int, BaseException]], total: int) -> None:
        shown = [f"record {index}: {_describe(err)}" for index, err in refused[:MAX_REPORTED]]
        more = len(refused) - len(shown)
        suffix = f"\n... and {more} more refused records" if more else ""
        super().__init__(
            f"the broker refused {len(refused)} of {total} record(s) for {topic}; nothing was "
            "published:\n" + "\n".join(shown) + suffix
        )
        self.refused = refused


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


async def publish(settings: KafkaSettings, topic: str, records: list[Prepared]) -> int:
    """Sends every record in one transaction and awaits each one's delivery: a record the
    broker refuses (a null key on a compacted topic, a record over its size limit) aborts the
    transaction and raises PublishRefused naming each refused record (1-based) and why."""
    names = TopicNames(settings.topic_prefix)
    producer = make_producer(
        settings, client_id="referrals-cli", transactional_id=f"referrals-cli-{uuid.uuid4()}"
    )
    await producer.start()
    try:
        refused: list[tuple[int, BaseException]] = []
        try:
            async with producer.transaction():
                deliveries = []
                for index, item in enumerate(records, start=1):
                    try:
                        deliveries.append(
                            (index, await producer.send(names(topic), item.value, key=item.key))
                        )
                    except Exception as err:  # refused before it left (e.g. too large)
                        refused.append((index, err))
                outcomes = await asyncio.gather(
                    *(delivery for _, delivery in deliveries), return_exceptions=True
                )
                refused += [
                    (index, outcome)
                    for (index, _), outcome in zip(deliveries, outcomes, strict=True)
                    if isinstance(outcome, BaseException)
                ]
                if refused:
                    raise PublishRefused(
                        names(topic), sorted(refused, key=lambda r: r[0]), len(records)
                    )
        except KafkaError as err:
            if refused:  # aborting after a refusal may fail too; the refusal is the news
                raise PublishRefused(
                    names(topic), sorted(refused, key=lambda r: r[0]), len(records)
                ) from err
            raise
    finally:
        await producer.stop()
    return len(records)
