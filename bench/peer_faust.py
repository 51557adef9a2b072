"""The peers' step on faust-streaming (bench/peers.py starts it as a faust worker).

As faust is meant to be used: an App with processing_guarantee="exactly_once" (GUARANTEE in the
environment: bench/peers.py falls back to "at_least_once" when exactly once stalls), an agent over
the input topic (JSON values, the advocate as the key) and a Table (RocksDB, changelog) counting
each advocate's WONs; every EVERY-th sends {"advocate", "tier"} (JSON) to the output topic.
Writes the monotonic time it processed its first record to FIRST_FILE. Settings from the
environment: BOOTSTRAP, APP_ID, IN_TOPIC, OUT_TOPIC, EVERY, STATE_DIR, PARTITIONS.

    python bench/peer_faust.py worker -l warn
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust

EVERY = int(os.environ.get("EVERY", "3"))
PARTITIONS = int(os.environ.get("PARTITIONS", "6"))

app = faust.App(
    os.environ.get("APP_ID", "peer-faust"),
    broker=f"kafka://{os.environ.get('BOOTSTRAP', 'localhost:9092')}",
    store="rocksdb://",
    datadir=os.environ.get("STATE_DIR", "/tmp/peer-faust"),
    processing_guarantee=os.environ.get("GUARANTEE", "exactly_once"),
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    web_enabled=False,
)
source = app.topic(
    os.environ.get("IN_TOPIC", "in"), key_type=str, value_serializer="json", partitions=PARTITIONS
)
sink = app.topic(
    os.environ.get("OUT_TOPIC", "out"), key_type=str, value_serializer="json", partitions=PARTITIONS
)
wins = app.Table("wins", default=int, partitions=PARTITIONS)
first: list[float] = []


@app.agent(source)
async def count(stream: Any) -> AsyncIterator[None]:
    async for advocate, _value in stream.items():
        if not first:
            first.append(time.monotonic())
            Path(os.environ["FIRST_FILE"]).write_text(str(first[0]))  # noqa: ASYNC240 (once)
        wins[advocate] += 1
        n = wins[advocate]
        if n % EVERY == 0:
            await sink.send(key=advocate, value={"advocate": advocate, "tier": n // EVERY})
        yield None


if __name__ == "__main__":
    app.main()
