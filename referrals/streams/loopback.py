"""A re-key hop's records handed straight to their task, in the transaction that made them.

A processor that re-keys an input through an internal topic of its own (attribution's deals,
keyed by deal id, forwarded by prospect to `attribution.deals-by-prospect`) pays a whole
transaction for the hop: the forwarded record is written, committed, fetched back and handled
in the next transaction. When the record's task is open in this same process, the runtime can
instead handle it at once, within the transaction of the record that made it: the source's
offset, the target task's state and the outputs then commit together or not at all, exactly as
the two transactions did one after the other. The record is not written at all.

Handing over must not let a record overtake one it followed. Records of one source partition
(one deal's stages, say) reach the internal topic in order, and each is handled after those
before it; a record handed over skips the topic, so the task it goes to must have nothing of
the topic's partition still unhandled that was written before it. The runtime hands a record
a source task made (processing a record or running its timers) to its target task only when:
- at the transaction's start, the consumer had fetched the target's partition of the topic past
  the high watermark read (read_uncommitted, open transactions included) after the last
  `reset` (`settled`), which covers whatever a previous owner of a source partition forwarded
  before its last transaction settled, and past every record the source task forwarded there
  (`forwarded`, `behind`);
- the transaction has handled the target's records of the topic it took (each transaction
  takes every record fetched, and handles every task's records of the topic before any other);
- and nothing was forwarded from the source task to the target earlier in the transaction.
The source is the task, not the partition of the record being processed: a record (or a
timer) may release others that waited in the task, such as events parked until their program
arrived, that came from another of its partitions. Records of different source tasks keep no
order between them on the topic either.
Otherwise the record is forwarded as before. The records handed over in a transaction are
handled after every task's own records in it, in the order they were made: as when they came
back through the topic a transaction later, a task's own records fetched with them go first
(attribution's core takes events in any order, but a conversion handled after its deal's whole
life, WON then REVERSED, would announce only the REVERSED). The runtime resets the floors
whenever the tasks or the group change (and after a failed transaction), and reads the high
watermarks again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.protocol.offset import OffsetRequest

from referrals.streams.murmur import partition_of

log = logging.getLogger(__name__)

HANDED_OVER_OFFSET = -1  # the offset a handed-over record carries (it has none: never written)
_LATEST = -1  # ListOffsets: the partition's end
_READ_UNCOMMITTED = 0


class Loopback:
    """The floors of a processor's internal re-key topics (physical names, one partition per
    task): which partitions may be handed records, and from which sources."""

    def __init__(self, topics: Iterable[str], partitions: int) -> None:
        self.topics = frozenset(topics)
        self.partitions = partitions
        self._high: dict[TopicPartition, int] = {}  # read after the last reset
        # (source task, target) -> past the last record that task forwarded to that target
        self._own: dict[tuple[int, TopicPartition], int] = {}
        self.epoch = 0  # bumped by each reset: a high watermark read before it is stale

    def target(self, topic: str, key: bytes) -> TopicPartition:
        """The partition the producer's default partitioner gives `key` (its task's)."""
        return TopicPartition(topic, partition_of(key, self.partitions))

    def reset(self) -> None:
        """Tasks or the group changed, or a transaction failed: forget the high watermarks."""
        self.epoch += 1
        self._high.clear()

    def forwarded(self, source: int, target: TopicPartition, offset: int) -> None:
        """A record task `source` forwarded to `target` committed at `offset`: what the task
        hands over later waits until it is handled."""
        if offset + 1 > self._own.get((source, target), 0):
            self._own[(source, target)] = offset + 1

    def behind(self, source: int, target: TopicPartition, fetched: int) -> bool:
        """Whether a record task `source` forwarded to `target` lies at or past `fetched`."""
        return fetched < self._own.get((source, target), 0)

    def missing(self, tasks: Iterable[int]) -> list[TopicPartition]:
        """The partitions of `tasks` whose high watermark is to be read."""
        return [
            tp
            for task in sorted(tasks)
            for topic in sorted(self.topics)
            if (tp := TopicPartition(topic, task)) not in self._high
        ]

    def read(self, highs: Mapping[TopicPartition, int], epoch: int) -> None:
        """High watermarks read since reset number `epoch` (dropped if another came since)."""
        if epoch == self.epoch:
            self._high.update(highs)

    def settled(
        self, tasks: Iterable[int], position: Callable[[TopicPartition], int | None]
    ) -> dict[TopicPartition, int]:
        """The partitions of `tasks` the consumer has fetched past their high watermark, with
        the position (`position`: its next offset to fetch, None if unknown)."""
        out: dict[TopicPartition, int] = {}
        for task in tasks:
            for topic in self.topics:
                tp = TopicPartition(topic, task)
                high = self._high.get(tp)
                at = position(tp)
                if high is not None and at is not None and at >= high:
                    out[tp] = at
        return out


async def high_watermarks(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """Each partition's high watermark (its end, records of open transactions included), asked
    of its leader through the consumer's own connections. A partition whose leader is unknown
    or that answered an error is left out (asked again later)."""
    client = consumer._client
    by_node: dict[int, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for tp in partitions:
        node = client.cluster.leader_for_partition(tp)
        if node is None or node < 0:
            continue
        by_node[node][tp.topic].append((tp.partition, _LATEST))
    found: dict[TopicPartition, int] = {}
    for node, topics in by_node.items():
        request = OffsetRequest(-1, _READ_UNCOMMITTED, list(topics.items()))
        response = await client.send(node, request)
        for topic, parts in response.topics:
            for partition, error_code, *info in parts:
                if error_code != 0:
                    continue
                # v0 answers a list of offsets; later versions (timestamp, offset)
                offset = (info[0][0] if info[0] else None) if response.API_VERSION == 0 else info[1]
                if offset is not None and offset >= 0:
                    found[TopicPartition(topic, partition)] = offset
    return found
