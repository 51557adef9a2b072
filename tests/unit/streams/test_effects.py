"""Effects that run only after a task's transaction committed: once, in order, never on abort."""

from __future__ import annotations

from dataclasses import dataclass, field

from referrals.streams.effects import AfterCommit
from referrals.streams.processor import Processor


def test_effects_run_once_after_the_commit_in_staging_order() -> None:
    p = Processor()
    ran: list[str] = []
    p.after_commit(0, lambda: ran.append("count"))
    p.after_commit(0, lambda: ran.append("send"))
    assert ran == []  # nothing before the transaction's outcome is known
    p.committed(0)
    assert ran == ["count", "send"]
    p.committed(0)  # the next transaction staged nothing
    assert ran == ["count", "send"]


def test_effects_of_an_aborted_transaction_never_run() -> None:
    p = Processor()
    ran: list[str] = []
    p.after_commit(0, lambda: ran.append("aborted"))
    p.aborted(0)
    p.committed(0)
    assert ran == []
    p.after_commit(0, lambda: ran.append("replayed"))  # the records run again
    p.committed(0)
    assert ran == ["replayed"]


def test_each_task_commits_its_own_effects() -> None:
    p = Processor()
    ran: list[int] = []
    p.after_commit(0, lambda: ran.append(0))
    p.after_commit(1, lambda: ran.append(1))
    p.aborted(0)
    p.committed(1)
    assert ran == [1] and p.effects.pending(0) == 0


@dataclass
class Tally:
    counts: list[int] = field(default_factory=list)
    applied: list[int] = field(default_factory=list)

    def __call__(self) -> None:
        self.applied.append(sum(self.counts))


def test_many_records_add_to_one_keyed_effect_per_transaction() -> None:
    p = Processor()
    tallies: list[Tally] = []

    def tally() -> Tally:
        tallies.append(Tally())
        return tallies[-1]

    for n in (1, 2, 3):
        p.after_commit_once(0, "metrics", tally).counts.append(n)
    assert len(tallies) == 1 and p.effects.pending(0) == 1
    p.committed(0)
    assert tallies[0].applied == [6]
    p.after_commit_once(0, "metrics", tally).counts.append(10)
    p.aborted(0)  # its tally is dropped with it
    p.after_commit_once(0, "metrics", tally).counts.append(5)
    p.committed(0)
    assert [t.applied for t in tallies] == [[6], [], [5]]


def test_a_failing_effect_does_not_stop_the_others() -> None:
    effects = AfterCommit()
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("a bug")

    effects.stage(0, broken)
    effects.stage(0, lambda: ran.append("after"))
    effects.commit(0)
    assert ran == ["after"]


def test_a_unit_of_work_that_raises_leaves_none_of_its_store_writes() -> None:
    from referrals.streams.processor import Processor
    from referrals.streams.state import MemoryBackend, TaskStore

    proc = Processor()
    store = TaskStore("s", 0, MemoryBackend())
    proc.task_stores = {0: {"s": store}}
    store.put(b"kept", b"1")
    try:
        with proc.unit_of_work(0):
            store.put(b"kept", b"2")
            store.put(b"new", b"x")
            raise RuntimeError("halfway")
    except RuntimeError:
        pass
    with proc.unit_of_work(0):
        store.put(b"done", b"y")
    assert dict(store.changes()) == {b"kept": b"1", b"done": b"y"}
