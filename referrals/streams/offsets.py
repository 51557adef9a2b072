"""Committed offsets a new task owner can trust: OffsetFetch with `require_stable` (KIP-447).

A transaction's consumed offsets (`send_offsets_to_transaction`) are pending in the group
coordinator until its commit marker is applied there. A task's new owner fences the old one
(InitProducerId) and then reads the committed offsets; without `require_stable` the coordinator
answers with the offsets it has materialised, and a just-committed transaction whose offsets are
still pending is left out: the new owner re-processes that batch, and read_committed consumers
see its outputs twice. (Seen on a busy broker in CI: the first hundred records of one partition
came out twice after a rebalance.) Java's read_committed consumers ask with `require_stable`,
and the coordinator answers UNSTABLE_OFFSET_COMMIT until the pending offsets are settled.
aiokafka 0.14 speaks OffsetFetch only up to v3, which has no such flag; this module adds v7
(the first version with it, flexible encoding) and the retry loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as Errors
from aiokafka.client import ConnectionGroup
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

UNSTABLE_OFFSET_COMMIT = 88  # pending transactional offsets: ask again shortly
# Coordinator moved or loading: find it again and retry.
_FIND_AGAIN = frozenset({14, 15, 16})  # LOAD_IN_PROGRESS, NOT_AVAILABLE, NOT_COORDINATOR
RETRY_S = 0.05


class OffsetFetchResponse_v7(Response):  # type: ignore[misc]
    API_KEY = 9
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("committed_offset", Int64),
                        ("committed_leader_epoch", Int32),
                        ("metadata", CompactString("utf-8")),
                        ("error_code", Int16),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class OffsetFetchRequest_v7(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = OffsetFetchResponse_v7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("partition_indexes", CompactArray(Int32)),
                ("tags", TaggedFields),
            ),
        ),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class StableOffsetFetch(Request[OffsetFetchRequest_v7]):  # type: ignore[misc]
    API_KEY = 9

    def __init__(self, group_id: str, partitions: dict[str, list[int]]) -> None:
        self.group_id = group_id
        self.partitions = partitions

    def build(self, request_struct_class: type[OffsetFetchRequest_v7]) -> OffsetFetchRequest_v7:
        topics: list[tuple[str, list[int], dict[int, bytes]]] = [
            (topic, sorted(parts), {}) for topic, parts in sorted(self.partitions.items())
        ]
        return request_struct_class(self.group_id, topics, True, {})


def parse(response: Any) -> tuple[dict[TopicPartition, int | None], int]:
    """(offset per partition, None where nothing is committed; the first error code, 0 if
    none). A partition-level error wins over the response-level one."""
    found: dict[TopicPartition, int | None] = {}
    error = 0
    for topic, partitions, _ in response.topics:
        for index, offset, _epoch, _meta, code, _tags in partitions:
            if code and not error:
                error = code
            found[TopicPartition(topic, index)] = None if offset < 0 else offset
    return found, error or response.error_code


async def stable_committed(
    consumer: AIOKafkaConsumer, group_id: str, tps: list[TopicPartition], timeout_s: float
) -> dict[TopicPartition, int | None]:
    """The committed offsets of `tps` once no transaction's offsets for them are pending;
    raises TimeoutError after `timeout_s`, or the broker's error if it is not retriable."""
    if not tps:
        return {}
    wanted: dict[str, list[int]] = {}
    for tp in tps:
        wanted.setdefault(tp.topic, []).append(tp.partition)
    coordinator = consumer._coordinator
    deadline = time.monotonic() + timeout_s
    while True:
        await coordinator.ensure_coordinator_known()
        node = coordinator.coordinator_id
        request = StableOffsetFetch(group_id, wanted)
        response = await consumer._client.send(node, request, group=ConnectionGroup.COORDINATION)
        found, error = parse(response)
        if not error:
            return {tp: found.get(tp) for tp in tps}
        if error != UNSTABLE_OFFSET_COMMIT and error not in _FIND_AGAIN:
            raise Errors.for_code(error)()
        if error in _FIND_AGAIN:
            coordinator.coordinator_dead()
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"committed offsets of {sorted(wanted)} still unstable after {timeout_s:g} s "
                f"(error {error})"
            )
        await asyncio.sleep(RETRY_S)
