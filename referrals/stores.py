"""Opening, restoring and closing a processor's task stores (see `referrals.state`).

Store `s` of processor `p` has a compacted changelog topic `<p>.<s>.changelog` with one
partition per task. Opening a task restores each of its stores from that partition:
- after a clean close, a checkpoint file holds the changelog offset the local RocksDB copy is
  at, so only newer entries are replayed;
- otherwise (first start, a crash, a failed transaction) the local copy is wiped and rebuilt
  from the beginning. The checkpoint is deleted when a task opens, so a crash can never leave a
  checkpoint that claims more than the local copy holds.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from referrals.state import Backend, MemoryBackend, RocksBackend, TaskStore

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

    def _path(self, store: str, task: int) -> Path:
        return self.state_dir / self.processor / store / f"task-{task}"

    async def open_task(self, task: int) -> dict[str, TaskStore]:
        stores = {}
        for name in self.names:
            stores[name] = TaskStore(name, task, await self._restore(name, task))
        self.open[task] = stores
        return stores

    async def _restore(self, store: str, task: int) -> Backend:
        path = self._path(store, task)
        checkpoint = path.with_name(path.name + ".checkpoint")
        start: int | None = None
        if self.backend == "rocksdb" and checkpoint.exists():
            try:
                start = int(checkpoint.read_text().strip())
            except ValueError:
                start = None
        checkpoint.unlink(missing_ok=True)
        backend: Backend
        if self.backend == "rocksdb":
            if start is None:
                RocksBackend.destroy(path)
            backend = RocksBackend(path)
        else:
            backend = MemoryBackend()
        tp = TopicPartition(self.physical[store], task)
        self.consumer.assign([tp])
        if start is None:
            await self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, start)
        end = (await self.consumer.end_offsets([tp]))[tp]
        restored = 0
        while await self.consumer.position(tp) < end:
            batch = await self.consumer.getmany(tp, timeout_ms=500, max_records=RESTORE_BATCH)
            changes = [(m.key, m.value) for m in batch.get(tp, [])]
            backend.apply(changes)
            restored += len(changes)
        log.info(
            "store restored",
            extra={"store": store, "task": task, "from": start or 0, "entries": restored},
        )
        return backend

    async def close_task(self, task: int, *, checkpoint: bool) -> None:
        """Closes a task's stores; writes checkpoints only when the local copy is known to hold
        exactly the committed state (a clean close, not a failed transaction)."""
        stores = self.open.pop(task, {})
        for name, store in stores.items():
            store.abort()
            if checkpoint and self.backend == "rocksdb":
                tp = TopicPartition(self.physical[name], task)
                end = (await self.consumer.end_offsets([tp]))[tp]
                path = self._path(name, task)
                path.with_name(path.name + ".checkpoint").write_text(str(end))
            store.backend.close()
