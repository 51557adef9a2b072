"""A program's recorded history from the topics, for `replay`: read whole, read_committed.

Inputs are checked as the services' runtime checks them (decodable, key as the contract names
it, no impossible value): a record the services dead-lettered is not replayed either, and is
counted in `skipped`. Order (`replay`'s docstring says why): the inputs of each partition in
offset order, partitions merged by record timestamp (ties: advocates, shares, conversions,
deals, commands, results, then partition); recorded statuses likewise, each partition's
timestamps first made non-decreasing.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    PayoutCommand,
    ProgramConfig,
    Record,
    ReferralStatusChanged,
)
from referrals.contract.topics import (
    ADVOCATES,
    CONVERSIONS,
    DEALS,
    OPERATOR_COMMANDS,
    PAYOUT_RESULTS,
    PAYOUTS,
    PAYOUTS_V2,
    PROGRAMS,
    SHARES,
    STATUS,
    spec_for,
)
from referrals.contract.validation import check_values
from referrals.platform.errors import ReferralsError
from referrals.platform.settings import AmountLimits, KafkaSettings
from referrals.platform.timestamps import from_ms
from referrals.streams.topics import check_key
from referrals.tools.preview.replay import INPUT_TYPES, Arrival, Erased, History
from referrals.tools.report import Logged, read_logs

INPUTS = (ADVOCATES, SHARES, CONVERSIONS, DEALS, OPERATOR_COMMANDS, PAYOUT_RESULTS)
RECORDED = (STATUS, PAYOUTS_V2, PAYOUTS, PROGRAMS)
# The inputs whose key the services check (shares and profiles are global tables there).
KEYED = frozenset({CONVERSIONS, DEALS, OPERATOR_COMMANDS, PAYOUT_RESULTS})


@dataclass
class Read:
    history: History
    skipped: dict[str, int] = field(default_factory=dict)  # topic -> bad records not replayed


async def read_history(settings: KafkaSettings, program_id: str, limits: AmountLimits) -> Read:
    logs = await read_logs(
        settings, (*INPUTS, *RECORDED), client_id="referrals-preview", tombstones=True
    )
    return history_of(program_id, logs, limits)


def history_of(program_id: str, logs: Mapping[str, Sequence[Logged]], limits: AmountLimits) -> Read:
    """The program's history from whole topics (logical name -> records by partition, offset)."""
    codec, skipped = AvroCodec(), dict[str, int]()

    def decoded(topic: str, *, check: bool) -> Iterator[tuple[Logged, Record | Erased]]:
        spec = spec_for(topic)
        for logged in logs.get(topic, ()):
            if not logged.value:  # a tombstone: on the advocates topic, an erasure
                if topic == ADVOCATES and logged.key:
                    yield logged, Erased(logged.key.decode("utf-8", "replace"))
                continue
            try:
                record = codec.decode(logged.value, spec.record)
                if check and topic in KEYED:
                    check_key(spec, logged.key, record)
                if check:
                    check_values(record, from_ms(logged.timestamp), limits=limits)
            except ReferralsError:
                skipped[topic] = skipped.get(topic, 0) + 1
                continue
            yield logged, record

    inputs = [
        [(logged.timestamp, record) for logged, record in part]
        for topic in INPUTS
        for _, part in groupby(decoded(topic, check=True), key=lambda pair: pair[0].partition)
    ]
    arrivals = tuple(
        Arrival(at_ms, record)
        for at_ms, record in heapq.merge(*inputs, key=lambda item: item[0])
        if isinstance(record, INPUT_TYPES) and _concerns(record, program_id)
    )
    statuses = tuple(
        (at_ms, status)
        for at_ms, status in heapq.merge(
            *_monotone(decoded(STATUS, check=False)), key=lambda item: item[0]
        )
        if isinstance(status, ReferralStatusChanged) and status.program_id == program_id
    )
    return Read(
        History(
            program_id=program_id,
            arrivals=arrivals,
            statuses=statuses,
            payouts=_payouts(program_id, decoded(PAYOUTS_V2, check=False))
            or _payouts(program_id, decoded(PAYOUTS, check=False)),
            version=max(
                (
                    r.version
                    for _, r in decoded(PROGRAMS, check=False)
                    if isinstance(r, ProgramConfig) and r.program_id == program_id
                ),
                default=0,
            ),
        ),
        skipped,
    )


def _concerns(record: Record | Erased, program_id: str) -> bool:
    """Profiles of every program (attribution knows them all), the program's events, and every
    command and result (they name only a payout)."""
    program = getattr(record, "program_id", None)
    if isinstance(record, AdvocateProfile | Erased):
        return True
    return program is None or program == program_id


def _monotone(
    records: Iterator[tuple[Logged, Record | Erased]],
) -> list[list[tuple[int, Record | Erased]]]:
    """Per partition, (timestamp, record) with timestamps raised to the one before: a reader
    of the partition met each record no earlier than the one it read before it."""
    parts: list[list[tuple[int, Record | Erased]]] = []
    for _, part in groupby(records, key=lambda pair: pair[0].partition):
        out, last = [], 0
        for logged, record in part:
            last = max(last, logged.timestamp)
            out.append((last, record))
        parts.append(out)
    return parts


def _payouts(
    program_id: str, records: Iterator[tuple[Logged, Record | Erased]]
) -> tuple[PayoutCommand, ...]:
    return tuple(
        r for _, r in records if isinstance(r, PayoutCommand) and r.program_id == program_id
    )
