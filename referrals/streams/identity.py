"""The transactional id of a stream process: one producer per process, its id kept across
restarts.

A process restarted after a crash (SIGKILL, OOM) takes the id its predecessor had, from the
state directory, so starting its producer (InitProducerId) aborts whatever transaction the
predecessor left open at once; a fresh id would leave that transaction open, holding back every
read_committed consumer of the partitions it wrote, until the broker's transaction timeout.

Ids are slots in the state directory: `process-<k>.id` holds a random id made once, and the
process holds an exclusive lock on `process-<k>.lock` while it runs. A second process sharing
the directory (two instances started by hand from one checkout) takes the next free slot, so no
two live processes ever share an id: they would fence each other's producers forever. Another
machine has another state directory, and other ids.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

MAX_SLOTS = 64


@dataclass
class ProcessIdentity:
    transactional_id: str
    slot: int
    _lock: int = field(repr=False)

    @classmethod
    def claim(cls, directory: Path, prefix: str) -> ProcessIdentity:
        """The first free slot's id, `<prefix>-<random>`, locked until `release`."""
        directory.mkdir(parents=True, exist_ok=True)
        for slot in range(MAX_SLOTS):
            fd = os.open(directory / f"process-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            path = directory / f"process-{slot}.id"
            try:
                made = path.read_text().strip()
            except FileNotFoundError:
                made = ""
            if not made:
                made = uuid.uuid4().hex[:16]
                tmp = path.with_suffix(".tmp")
                tmp.write_text(made + "\n")
                tmp.replace(path)
            return cls(f"{prefix}-{made}", slot, fd)
        raise RuntimeError(
            f"{MAX_SLOTS} processes already run from state directory {directory}; "
            "give this one its own STATE_DIR"
        )

    def release(self) -> None:
        if self._lock >= 0:
            os.close(self._lock)  # closing the descriptor drops the lock
            self._lock = -1
