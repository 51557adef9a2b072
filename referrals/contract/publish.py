"""`referrals publish TOPIC FILE`: JSON lines in, Avro single-object records out.

Every line is validated first (schema, then impossible values); if any line is bad, each bad
line is reported with its number and the field at fault and nothing is published. The checks
are `check_records`, which the API's Ingest calls too, so both accept exactly the same records.
A valid file goes out in one Kafka transaction, so read_committed consumers see all of it or
none.
Each record's delivery is awaited: if the broker refuses any (a null key on a compacted topic,
a record over its size limit), the transaction is aborted and `PublishRefused` names each one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from referrals.contract.avro import AvroCodec, to_record
from referrals.contract.jsonio import from_json
from referrals.contract.topics import TopicNames, spec_for
from referrals.contract.validation import DEFAULT_LIMITS, check_values
from referrals.platform.errors import InputError, InvalidRecord, ReferralsError
from referrals.platform.settings import AmountLimits, KafkaSettings
from referrals.streams.kafka import make_producer, transactional_id

MAX_REPORTED = 20


@dataclass(frozen=True, slots=True)
class Prepared:
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad record: where it is (a line number for the CLI, a 0-based index for the API),
    the field at fault when there is one, and what is wrong."""

    position: int
    field: str | None
    message: str


def check_records(
    topic: str,
    objects: Iterable[tuple[int, object]],
    codec: AvroCodec,
    *,
    now: datetime,
    check: bool = True,
    limits: AmountLimits = DEFAULT_LIMITS,
) -> tuple[list[Prepared], list[Problem]]:
    """The rules of `referrals publish` and of the API's Ingest, written once: each
    (position, object) pair, an object being a record as JSON data (the Avro field names, enum
    symbols, timestamps as ISO 8601 text or epoch milliseconds), is checked against the topic's
    schema, then for impossible values (`check_values`), and encoded. Returns the encoded
    records and every bad record's first problem; the caller publishes only when there is none.
    """
    spec = spec_for(topic)
    schema = codec.registry.latest(spec.record).raw
    out: list[Prepared] = []
    problems: list[Problem] = []
    for position, obj in objects:
        try:
            out.append(
                _prepare(spec.record, spec.key_field, schema, obj, codec, now, check, limits)
            )
        except InputError as err:
            problems.append(Problem(position, err.field, err.detail))
        except InvalidRecord as err:
            problems.append(Problem(position, err.field, err.detail))
    return out, problems


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
    """Validates and encodes every line (`check_records`); raises InputError listing every bad
    line."""
    objects: list[tuple[int, object]] = []
    unreadable: list[Problem] = []
    raws: list[Prepared] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if raw:  # the line's bytes as they are, surrounding white space included
            raws.append(Prepared(None, line.encode("utf-8", "surrogateescape")))
            continue
        try:
            objects.append((number, json.loads(text)))
        except ValueError as err:
            unreadable.append(Problem(number, None, f"not valid JSON: {err}"))
    if raw:
        return raws
    out, problems = check_records(
        topic, objects, codec, now=now or datetime.now(UTC), check=check, limits=limits
    )
    problems = sorted(unreadable + problems, key=lambda p: p.position)
    if problems:
        errors = [str(InputError(p.message, line=p.position, field=p.field)) for p in problems]
        shown = errors[:MAX_REPORTED]
        more = len(errors) - len(shown)
        suffix = f"\n... and {more} more bad lines" if more else ""
        raise InputError(
            f"{len(errors)} bad line(s); nothing was published:\n" + "\n".join(shown) + suffix
        )
    return out


def _prepare(
    record_name: str,
    key_field: str,
    schema: object,
    obj: object,
    codec: AvroCodec,
    now: datetime,
    check: bool,
    limits: AmountLimits,
) -> Prepared:
    datum = from_json(schema, obj)  # type: ignore[arg-type]
    if check:
        check_values(to_record(record_name, dict(datum)), now, limits=limits)
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
    """Sends every record in one transaction of a producer of its own (`send_transaction`)."""
    names = TopicNames(settings.topic_prefix)
    producer = make_producer(
        settings,
        client_id="referrals-cli",
        transactional_id=transactional_id(settings, "referrals-cli"),
    )
    await producer.start()
    try:
        return await send_transaction(producer, names(topic), records)
    finally:
        await producer.stop()


async def send_transaction(
    producer: AIOKafkaProducer, physical: str, records: list[Prepared]
) -> int:
    """Sends every record to the `physical` topic in one transaction of `producer` (started,
    transactional, not in a transaction) and awaits each one's delivery: a record the broker
    refuses (a null key on a compacted topic, a record over its size limit) aborts the
    transaction and raises PublishRefused naming each refused record (1-based) and why.
    Returns once the transaction committed."""
    refused: list[tuple[int, BaseException]] = []
    try:
        async with producer.transaction():
            deliveries = []
            for index, item in enumerate(records, start=1):
                try:
                    deliveries.append(
                        (index, await producer.send(physical, item.value, key=item.key))
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
                raise PublishRefused(physical, sorted(refused, key=lambda r: r[0]), len(records))
    except KafkaError as err:
        if refused:  # aborting after a refusal may fail too; the refusal is the news
            raise PublishRefused(
                physical, sorted(refused, key=lambda r: r[0]), len(records)
            ) from err
        raise
    return len(records)
