"""The peers' step on Quix Streams (bench/peers.py starts it in the Quix venv, its own process).

As Quix Streams is meant to be used: an Application with processing_guarantee="exactly-once",
a StreamingDataFrame over the input topic (JSON values, the advocate as the key), a stateful
apply (RocksDB state per key, changelog) counting each advocate's WONs; every EVERY-th emits
{"advocate", "tier"} (JSON) to the output topic. Writes the monotonic time it processed its
first record to FIRST_FILE. Settings from the environment: BOOTSTRAP, APP_ID, IN_TOPIC,
OUT_TOPIC, EVERY, STATE_DIR.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from quixstreams import Application, State

EVERY = int(os.environ.get("EVERY", "3"))
first: list[float] = []


def count(value: dict[str, Any], state: State) -> dict[str, Any] | None:
    if not first:
        first.append(time.monotonic())
        Path(os.environ["FIRST_FILE"]).write_text(str(first[0]))
    n = state.get("wins", 0) + 1
    state.set("wins", n)
    if n % EVERY:
        return None
    return {"advocate": value["advocate"], "tier": n // EVERY}


def main() -> None:
    app = Application(
        broker_address=os.environ["BOOTSTRAP"],
        consumer_group=os.environ["APP_ID"],
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=os.environ["STATE_DIR"],
        loglevel="WARNING",
    )
    source = app.topic(os.environ["IN_TOPIC"], key_deserializer="str", value_deserializer="json")
    sink = app.topic(os.environ["OUT_TOPIC"], key_serializer="str", value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.apply(count, stateful=True).filter(lambda v: v is not None)
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
