"""Effects that run only after a task's transaction committed: metrics, sends, gauges.

A task's records can be processed twice: its transaction aborts (a broker hiccup, a fenced
producer) and the records are read again from the committed offsets. Anything that leaves the
process other than through the transaction (a counter, an email, a webhook) must therefore wait
until the transaction that decided it committed, and be forgotten if it aborted; otherwise a
replay counts it or sends it twice. A processor stages such effects per task with
`Processor.after_commit` (or, for many small updates folded into one, `after_commit_once`); the
runtime's `committed(task)` runs them, in the order they were staged, and `aborted(task)` drops
them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import TypeVar

log = logging.getLogger(__name__)
Effect = Callable[[], None]
E = TypeVar("E", bound=Callable[[], None])


class AfterCommit:
    """Per task, the effects staged in its open transaction."""

    def __init__(self) -> None:
        # task -> key -> effect; a dict keeps staging order and finds a keyed effect at once.
        self._staged: dict[int, dict[Hashable, Effect]] = {}

    def stage(self, task: int, effect: Effect) -> None:
        """Runs `effect` once `task`'s open transaction commits; never if it aborts."""
        self._staged.setdefault(task, {})[object()] = effect

    def once(self, task: int, key: Hashable, factory: Callable[[], E]) -> E:
        """The effect staged under `key` in `task`'s open transaction, staged as `factory()` if
        there is none yet. Lets many records add to one effect (a tally of counters, applied
        once at the commit) instead of staging one effect each."""
        staged = self._staged.setdefault(task, {})
        effect = staged.get(key)
        if effect is None:
            effect = staged[key] = factory()
        return effect  # type: ignore[return-value]  # staged under `key` by this method only

    def pending(self, task: int) -> int:
        return len(self._staged.get(task, {}))

    def commit(self, task: int) -> None:
        """The transaction committed: runs its effects, each once, in staging order. One that
        fails is logged and the others still run (the transaction is durable already)."""
        for effect in self._staged.pop(task, {}).values():
            try:
                effect()
            except Exception:
                log.exception("an after-commit effect failed", extra={"task": task})

    def abort(self, task: int) -> None:
        """The transaction aborted (or the task moved away before committing): drop its
        effects; its records will be processed again and stage them again."""
        self._staged.pop(task, None)
