"""Exponential backoff with jitter, for everything the runtime retries (opening tasks, rebuilding
a task after a failed transaction, running failing timers, following global tables)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """`next()` is the delay before the next attempt: base, 2·base, 4·base … up to `cap`, each
    with ±20% jitter so instances that failed together do not retry together."""

    base_s: float = 0.2
    cap_s: float = 30.0
    failures: int = 0

    def next(self) -> float:
        self.failures += 1
        delay: float = min(self.cap_s, self.base_s * 2.0 ** (self.failures - 1))
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.failures = 0
