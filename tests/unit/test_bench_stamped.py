"""The pipeline bench's follower keeps what it read as bytes and decodes a record when the bench
first reads it (`bench.pipeline_support.Stamped`); the stamps and the records must still line up."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bench.pipeline_support import Stamped
from referrals.contract.avro import AvroCodec
from referrals.contract.records import PayoutResult, PayoutStatus


class CountingCodec(AvroCodec):
    def __init__(self) -> None:
        super().__init__()
        self.decoded = 0

    def decode(self, data: bytes, expected: str | None = None) -> Any:
        self.decoded += 1
        return super().decode(data, expected)


def result(n: int) -> PayoutResult:
    return PayoutResult(f"po-{n}", 1, PayoutStatus.PAID, datetime(2026, 1, 1, tzinfo=UTC))


def test_records_are_decoded_when_read_once_each_and_keep_their_stamps() -> None:
    codec = CountingCodec()
    seen = Stamped(codec)
    for n in range(3):
        seen.append(10.0 + n, codec.encode(result(n)))

    assert len(seen) == 3 and seen.times == [10.0, 11.0, 12.0]
    assert codec.decoded == 0  # nothing decoded on arrival

    assert seen[-1] == (12.0, result(2))
    assert seen[1:] == [(11.0, result(1)), (12.0, result(2))]
    assert [r.payout_id for _, r in seen] == ["po-0", "po-1", "po-2"]
    assert codec.decoded == 3  # each record once, however often it is read
