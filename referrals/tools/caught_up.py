"""Whether consumer groups have processed every record committed to their inputs, exactly.

A group that is done still trails a transactional partition's end: the commit marker takes an
offset of its own, so "committed offset >= last stable offset" never holds once the producers
are transactional, and "records in and out unchanged for half a second" is a guess that costs
the half second. Here the records between a group's committed offset and the last stable
offset are read (read_committed): the group is caught up where none of them is a data record
(only commit markers, or records of aborted transactions).

Several groups chained (attribution's statuses feed rewards) are caught up together when, in
one pass, every group is, and no input's last stable offset moved meanwhile: a transaction
whose offsets were seen committed had committed its outputs before, so they are inside the
offsets checked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_admin, make_consumer, partitions_of

READ_S = 5.0  # at most this long to read a gap that holds only markers to its end


@dataclass(frozen=True)
class Group:
    """A consumer group, the physical topics it consumes, and the settings of a principal
    that may read both (the group's own service, on a secured cluster)."""

    name: str
    topics: tuple[str, ...]
    kafka: KafkaSettings


class CaughtUp:
    """Asks, for `groups`, whether each has committed past every data record of its inputs;
    `async with` starts and stops its clients (a consumer and an admin client per group,
    neither joining it)."""

    def __init__(self, groups: Sequence[Group], client_id: str = "referrals-caught-up") -> None:
        self.groups = tuple(groups)
        self.client_id = client_id
        self._consumers: dict[str, AIOKafkaConsumer] = {}
        self._admins: dict[str, AIOKafkaAdminClient] = {}
        self._parts: dict[str, list[TopicPartition]] = {}
        # (partition, committed, end) found to hold no data record: not read again.
        self._markers_only: set[tuple[TopicPartition, int, int]] = set()

    async def __aenter__(self) -> CaughtUp:
        try:
            await asyncio.gather(*(self._open(group) for group in self.groups))
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _open(self, group: Group) -> None:
        # A fetch the broker holds for its max wait would hold the next request on the
        # connection (the offsets asked for) as long: a gap is read, never waited on.
        consumer = make_consumer(group.kafka, client_id=self.client_id, fetch_max_wait_ms=5)
        admin = make_admin(group.kafka, self.client_id)
        self._consumers[group.name], self._admins[group.name] = consumer, admin
        await asyncio.gather(consumer.start(), admin.start())
        parts = await asyncio.gather(*(partitions_of(consumer, t) for t in group.topics))
        self._parts[group.name] = [tp for found in parts for tp in found]

    async def __aexit__(self, *_: object) -> None:
        consumers, self._consumers = self._consumers, {}
        admins, self._admins = self._admins, {}
        await asyncio.gather(
            *(c.stop() for c in consumers.values()),
            *(a.close() for a in admins.values()),
            return_exceptions=True,
        )

    async def ends(self) -> dict[TopicPartition, int]:
        """Every group's input partitions -> last stable offset."""
        out: dict[TopicPartition, int] = {}
        for group in self.groups:
            parts = self._parts[group.name]
            out.update(await self._consumers[group.name].end_offsets(parts))
        return out

    async def done(self, group: Group, ends: dict[TopicPartition, int]) -> bool:
        """Whether `group` has committed past every data record before `ends`."""
        consumer = self._consumers[group.name]
        parts = self._parts[group.name]
        listed = await self._admins[group.name].list_consumer_group_offsets(group.name)
        committed = {tp: meta.offset for tp, meta in listed.items() if meta.offset >= 0}
        fresh = [tp for tp in parts if committed.get(tp) is None]
        starts = await consumer.beginning_offsets(fresh) if fresh else {}
        gaps: dict[TopicPartition, tuple[int, int]] = {}
        for tp in parts:
            offset = committed.get(tp)
            start = starts[tp] if offset is None else offset
            if start < ends[tp] and (tp, start, ends[tp]) not in self._markers_only:
                gaps[tp] = (start, ends[tp])
        if not gaps:
            return True
        if await self._data_between(consumer, gaps):
            return False
        self._markers_only.update((tp, start, end) for tp, (start, end) in gaps.items())
        return True

    async def _data_between(
        self, consumer: AIOKafkaConsumer, gaps: dict[TopicPartition, tuple[int, int]]
    ) -> bool:
        """Whether a data record sits in any partition's [start, end) (read_committed)."""
        consumer.assign(list(gaps))
        for tp, (start, _) in gaps.items():
            consumer.seek(tp, start)
        pending = dict(gaps)
        deadline = time.monotonic() + READ_S
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=5)
            for tp, records in batches.items():
                if any(r.offset < gaps[tp][1] for r in records):
                    consumer.assign([])  # no fetch left running
                    return True
            for tp in list(pending):
                if await consumer.position(tp) >= pending[tp][1]:
                    del pending[tp]
            if pending and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"could not read {sorted(map(str, pending))} to their last stable offsets "
                    f"within {READ_S:g} s"
                )
        consumer.assign([])
        return False

    async def _all_done(self, ends: dict[TopicPartition, int]) -> bool:
        for group in self.groups:  # in order: the first still busy ends the pass
            if not await self.done(group, ends):
                return False
        return True

    async def wait(self, within: float, every_s: float = 0.02) -> bool:
        """Until every group is caught up and no input moved during the check (True), or
        `within` seconds pass (False)."""
        deadline = time.monotonic() + within
        while True:
            try:
                ends = await self.ends()
                if await self._all_done(ends) and await self.ends() == ends:
                    return True
            except KafkaError as err:  # the coordinator moving or loading: ask again
                if not err.retriable:
                    raise
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(every_s)
