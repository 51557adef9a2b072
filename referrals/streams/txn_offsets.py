"""Consumed offsets committed in a transaction under the consumer group's generation (KIP-447).

The runtime commits every task of a process in ONE transaction per cycle, with one producer
per process ("exactly-once v2", as Kafka Streams does). A zombie can no longer be fenced by a
task's transactional id; it is fenced by the group instead: the transaction's TxnOffsetCommit
carries the member id and generation the consumed records were assigned under, and the group
coordinator refuses it (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID) once the
group has moved on. The transaction cannot then commit: its outputs and changelog writes are
aborted with it. A new owner reads the committed offsets with require_stable (`offsets`) before
it restores the task's state, so it waits for any transaction the old owner committed under
the old generation.

aiokafka 0.14 speaks TxnOffsetCommit v0 only (no group metadata). This module adds v3 (the
first with it, flexible encoding) and a replacement for aiokafka's handler that sends it when
the transaction names its group metadata (`send_offsets`), and makes a generation refusal an
abortable error of the transaction (`GroupMoved`), as Java's CommitFailedException is.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka import errors as Errors
from aiokafka.errors import IncompatibleBrokerVersion
from aiokafka.producer import sender as _sender
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.transaction import TxnOffsetCommitRequest_v0
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
FENCED_INSTANCE_ID = 82
# The group has moved on without this member: whatever it consumed is someone else's now.
GROUP_MOVED = frozenset({ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS,
                         FENCED_INSTANCE_ID})  # fmt: skip


class GroupMoved(Errors.KafkaError):  # type: ignore[misc]
    """The group coordinator refused the transaction's offsets: the member's generation is
    over (a rebalance happened without it). The transaction must be aborted and its tasks
    dropped; the next assignment says who owns them."""

    retriable = False


@dataclass(frozen=True, slots=True)
class GroupMetadata:
    """What the coordinator checks a transactional offset commit against."""

    group_id: str
    generation: int
    member_id: str
    group_instance_id: str | None = None


class TxnOffsetCommitResponse_v3(Response):  # type: ignore[misc]
    API_KEY = 28
    API_VERSION = 3
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
                        ("error_code", Int16),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequest_v3(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = TxnOffsetCommitResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
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
                        ("committed_metadata", CompactString("utf-8")),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class GroupTxnOffsetCommit(Request[TxnOffsetCommitRequest_v0 | TxnOffsetCommitRequest_v3]):  # type: ignore[misc]
    """TxnOffsetCommit at the highest version the broker speaks; with group metadata, v3 or
    an error (a broker without it cannot fence zombies by generation)."""

    API_KEY = 28

    def __init__(
        self,
        *,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        group: GroupMetadata,
        offsets: dict[str, list[tuple[int, int, str]]],
    ) -> None:
        self.transactional_id = transactional_id
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.group = group
        self.offsets = offsets

    def build(self, request_struct_class: type[Any]) -> Any:
        if request_struct_class.API_VERSION < 3:
            raise IncompatibleBrokerVersion(
                "TxnOffsetCommit v3 (Kafka 2.5+) is needed to fence zombies by generation"
            )
        g = self.group
        topics: list[
            tuple[str, list[tuple[int, int, int, str, dict[int, bytes]]], dict[int, bytes]]
        ]
        topics = [
            (topic, [(p, offset, -1, meta, {}) for p, offset, meta in parts], {})
            for topic, parts in sorted(self.offsets.items())
        ]
        return request_struct_class(
            self.transactional_id,
            g.group_id,
            self.producer_id,
            self.producer_epoch,
            g.generation,
            g.member_id,
            g.group_instance_id,
            topics,
            {},
        )


def errors_of(response: Any) -> list[tuple[TopicPartition, int]]:
    """Each partition's error code (0: committed) in a v3 answer."""
    return [
        (TopicPartition(topic, partition), code)
        for topic, partitions, _ in response.topics
        for partition, code, _ in partitions
    ]


_GROUPS = "_referrals_group_metadata"  # on aiokafka's transaction manager: group_id -> metadata


class _Handler(_sender.TxnOffsetCommitHandler):  # type: ignore[misc]
    """aiokafka's handler, sending v3 with the group metadata the runtime set for the group."""

    def _group(self) -> GroupMetadata | None:
        found: dict[str, GroupMetadata] = getattr(self._sender._txn_manager, _GROUPS, {})
        return found.get(self._group_id)

    def create_request(self) -> Any:
        group = self._group()
        if group is None:
            return super().create_request()
        txn = self._sender._txn_manager
        offsets: dict[str, list[tuple[int, int, str]]] = collections.defaultdict(list)
        for tp, offset in sorted(self._offsets.items()):
            offsets[tp.topic].append((tp.partition, offset.offset, offset.metadata))
        return GroupTxnOffsetCommit(
            transactional_id=txn.transactional_id,
            producer_id=txn.producer_id,
            producer_epoch=txn.producer_epoch,
            group=group,
            offsets=dict(offsets),
        )

    def handle_response(self, resp: Any) -> float | None:
        if self._group() is None:
            result: float | None = super().handle_response(resp)
            return result
        moved = [(tp, code) for tp, code in errors_of(resp) if code in GROUP_MOVED]
        if moved:
            tp, code = moved[0]
            err = GroupMoved(
                f"the group refused the transaction's offsets ({Errors.for_code(code).__name__} "
                f"for {tp.topic}/{tp.partition}): this member's generation is over"
            )
            self._sender._txn_manager.error_transaction(err)
            return None
        # The rest as aiokafka handles v0's answer (same codes, two fields per partition).
        resp.errors = [(t, [(p, code) for p, code, _ in parts]) for t, parts, _ in resp.topics]
        result = super().handle_response(resp)
        return result


_sender.TxnOffsetCommitHandler = _Handler  # the sender looks the name up at each commit


async def send_offsets(
    producer: AIOKafkaProducer, offsets: dict[TopicPartition, int], group: GroupMetadata
) -> None:
    """`send_offsets_to_transaction`, checked by the coordinator against `group`'s member and
    generation; raises GroupMoved when they are over (abort the transaction)."""
    txn = producer._txn_manager
    found = getattr(txn, _GROUPS, None)
    if found is None:
        found = {}
        setattr(txn, _GROUPS, found)
    found[group.group_id] = group
    await producer.send_offsets_to_transaction(offsets, group.group_id)
