"""Consumers that read whole topics at start-up hold at most a few MB of fetched records, not
the client's default 50 MB answer: reading a million advocates' profiles that way was the peak
of attribution's memory (281 MB; 183-208 MB bounded, bench state phase)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import TOPICS, TopicNames
from referrals.platform.metrics import RuntimeMetrics
from referrals.platform.settings import KafkaSettings
from referrals.streams import globals as global_tables
from referrals.streams.kafka import BOUNDED_FETCH
from referrals.streams.processor import Processor

MB = 1024 * 1024


class _Started(Exception):
    """Raised where the consumer would start: its options are what the test looks at."""


def test_the_bound_is_a_few_megabytes() -> None:
    assert BOUNDED_FETCH["fetch_max_bytes"] <= 8 * MB
    assert BOUNDED_FETCH["max_partition_fetch_bytes"] <= BOUNDED_FETCH["fetch_max_bytes"]


def test_global_tables_read_with_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class Consumer:
        async def start(self) -> None:
            raise _Started

    def make_consumer(settings: KafkaSettings, *topics: str, **options: Any) -> Consumer:
        made.append(options)
        return Consumer()

    monkeypatch.setattr(global_tables, "make_consumer", make_consumer)

    class Tables(Processor):
        name = "tables"
        globals = ("programs.config.v1",)

    tables = global_tables.GlobalTables(
        Tables(),
        KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        client_id="tables",
        names=TopicNames(""),
        catalogue=TOPICS,
        codec=AvroCodec(),
        metrics=RuntimeMetrics("tables"),
        clock=lambda: datetime.now(UTC),
        dead_letter=lambda tp, msg, err: None,  # type: ignore[arg-type,return-value]
    )
    with pytest.raises(_Started):
        asyncio.run(tables.bootstrap())
    assert len(made) == 1
    assert made[0]["fetch_max_bytes"] == BOUNDED_FETCH["fetch_max_bytes"]
    assert made[0]["max_partition_fetch_bytes"] == BOUNDED_FETCH["max_partition_fetch_bytes"]
