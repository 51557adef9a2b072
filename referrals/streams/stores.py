"""Opening, restoring and closing a processor's task stores (see `referrals.streams.state`).

Store `s` of processor `p` has a compacted changelog topic `<p>.<s>.changelog` with one
partition per task. Opening a task restores each of its stores from that partition:
- after a close, a checkpoint file holds the changelog offset the local RocksDB copy reflects,
  so only newer entries are replayed;
- otherwise (first start, a crash) the local copy is wiped and rebuilt from the beginning. The
  checkpoint is deleted when a task opens, so a crash can never leave a checkpoint that claims
  more than the local copy holds.

The offset checkpointed is the one the local copy *actually* reflects: where its restore ended,
then just past each changelog entry this instance committed and applied (`written`). Never the
changelog's end at close: a zombie (an instance paused past its session timeout while another
took the task and wrote) would otherwise claim the new owner's writes as its own, and a stale
ledger would re-issue payouts when the task came back. Entries past the checkpoint are replayed
on the next open, whoever wrote them. The backend only ever holds committed writes, so the
offset is valid after a failed transaction too.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from referrals.streams.state import Backend, MemoryBackend, RocksBackend, TaskStore

log = logging.getLogger(__name__)
RESTORE_BATCH = 10_000


def changelog_topic(processor: str, store: str) -> str:
    return f"{processor}.{store}.changelog"


class StoreManager:
    def __init__(
        self,
        *,
        processor: str,
        stores: tuple[str, ...],
        physical: dict[str, str],  # store -> physical changelog topic
        state_dir: Path,
        backend: str,  # "rocksdb" or "memory"
        consumer: AIOKafkaConsumer,  # no group, read_committed: used only for restores
    ) -> None:
        self.processor = processor
        self.names = stores
        self.physical = physical
        self.state_dir = state_dir
        self.backend = backend
        self.consumer = consumer
        self.open: dict[int, dict[str, TaskStore]] = {}
        self.applied: dict[TopicPartition, int] = {}  # changelog offset the local copy reflects

    def _path(self, store: str, task: int) -> Path:
        return self.state_dir / self.processor / store / f"task-{task}"

    async def open_tasks(self, tasks: frozenset[int]) -> None:
        """Restores every store of `tasks` together: one end-offsets request for all changelog
        partitions, empty or up-to-date ones skipped, the rest read in one assignment."""
        backends: dict[TopicPartition, Backend] = {}
        starts: dict[TopicPartition, int | None] = {}
        for task in sorted(tasks):
            for name in self.names:
                tp = TopicPartition(self.physical[name], task)
                starts[tp], backends[tp] = self._open_backend(name, task)
        if not backends:
            return
        try:
            ends = await self.consumer.end_offsets(list(backends))
            todo = [tp for tp in backends if ends[tp] > (starts[tp] or 0)]
            restored = await self._replay(todo, starts, ends, backends) if todo else {}
        except BaseException:  # cancelled (a rebalance) or failed: release the local copies
            for backend in backends.values():
                backend.close()
            raise
        for tp, backend in backends.items():
            # restored: where the replay stopped; otherwise the local copy was already current
            done = await self.consumer.position(tp) if tp in todo else starts[tp]
            self.applied[tp] = done or 0
            self.open.setdefault(tp.partition, {})[self._store_of(tp)] = TaskStore(
                self._store_of(tp), tp.partition, backend
            )
        log.info(
            "stores restored",
            extra={"tasks": sorted(tasks), "entries": sum(restored.values()), "read": len(todo)},
        )

    def _store_of(self, tp: TopicPartition) -> str:
        return next(name for name, topic in self.physical.items() if topic == tp.topic)

    def _open_backend(self, store: str, task: int) -> tuple[int | None, Backend]:
        path = self._path(store, task)
        checkpoint = path.with_name(path.name + ".checkpoint")
        start: int | None = None
        if self.backend == "rocksdb" and checkpoint.exists():
            try:
                start = int(checkpoint.read_text().strip())
            except ValueError:
                start = None
        checkpoint.unlink(missing_ok=True)  # a crash from here on forces a full restore
        if self.backend != "rocksdb":
            return None, MemoryBackend()
        if start is None:
            RocksBackend.destroy(path)
        return start, RocksBackend(path)

    async def _replay(
        self,
        todo: list[TopicPartition],
        starts: dict[TopicPartition, int | None],
        ends: dict[TopicPartition, int],
        backends: dict[TopicPartition, Backend],
    ) -> dict[TopicPartition, int]:
        self.consumer.assign(todo)
        from_start = [tp for tp in todo if starts[tp] is None]
        if from_start:
            await self.consumer.seek_to_beginning(*from_start)
        for tp in todo:
            start = starts[tp]
            if start is not None:
                self.consumer.seek(tp, start)
        restored = dict.fromkeys(todo, 0)
        pending = set(todo)
        while pending:
            batch = await self.consumer.getmany(*pending, timeout_ms=200, max_records=RESTORE_BATCH)
            for tp, messages in batch.items():
                backends[tp].apply([(m.key, m.value) for m in messages])
                restored[tp] += len(messages)
            for tp in list(pending):
                if await self.consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return restored

    def written(self, task: int, store: str, next_offset: int) -> None:
        """This instance committed changelog entries of `store` up to `next_offset` (exclusive)
        and applied them to the local copy."""
        tp = TopicPartition(self.physical[store], task)
        self.applied[tp] = max(self.applied.get(tp, 0), next_offset)

    async def close_task(self, task: int, *, checkpoint: bool) -> None:
        """Closes a task's stores. With `checkpoint`, records the changelog offset the local copy
        reflects so the next open replays only what came after; without, the next open
        rebuilds the store from the changelog's beginning."""
        stores = self.open.pop(task, {})
        for name, store in stores.items():
            store.abort()
            tp = TopicPartition(self.physical[name], task)
            applied = self.applied.pop(tp, None)
            store.backend.close()  # flushed to disk before a checkpoint may claim it
            if checkpoint and self.backend == "rocksdb" and applied is not None:
                path = self._path(name, task)
                path.with_name(path.name + ".checkpoint").write_text(str(applied))
