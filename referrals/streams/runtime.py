"""The stream runtime every service runs on: consume, decode, process, produce, commit.

Exactly-once by construction (Kafka Streams' model with its "exactly-once v2", built on aiokafka):
- Task p is partition p of every input topic (all topics share one partition count; the
  co-partitioned assignor keeps a task on one member).
- The process has ONE transactional producer, its id kept across restarts (`identity`): a
  restarted process aborts the transaction its predecessor left open at once. Each cycle, the
  records fetched for every open task, the outputs, dead letters and changelog writes they
  make, the timers due and the consumed offsets go out in ONE transaction. A busy process
  commits large batches, a quiet one a record at a time; the broker sees one transaction per
  process and cycle, not one per task.
- Zombies are fenced by the consumer group (KIP-447, `txn_offsets`): every transaction commits
  its tasks' offsets under the member id and generation they were assigned in, and the group
  coordinator refuses them once the group has moved on; the transaction then aborts with its
  outputs. A task's new owner reads the committed offsets with require_stable (`offsets`)
  BEFORE it restores the task's state, so a transaction its previous owner committed is in
  both, and none can commit after. A member that knows it has left the group commits nothing.
  Opening a task also fences the previous version's per-task producer (`<group>-<task>`): an
  owner still running it during a rolling upgrade commits offsets the group cannot check.
- Inputs are read `read_committed`; a batch fetched before a rebalance is dropped (its records
  will be fetched again from the committed offsets), and rebalance callbacks wait for the
  in-flight transaction to finish (a lock).
- Bad input (PermanentError) goes to `<topic>.dlq` in the same transaction and the task moves
  on; so does a record whose outputs or state writes would exceed Kafka's record limit. A
  failed transaction is aborted (the producer is replaced: starting it again aborts what it
  left open), its tasks closed and reopened (state rebuilt from the changelog past its
  checkpoint) and their partitions rewound to the committed offsets, with backoff. A refused
  generation or a fenced producer means the group gave our tasks away while this instance was
  not looking (a pause past the session timeout): the tasks are dropped and the member rejoins
  the group, as Kafka Streams does with migrated tasks; the process keeps running.
- Tasks open outside the rebalance callback: the callback only records the assignment and
  pauses the new tasks' partitions; a background opener reads the committed offsets, restores
  the stores while the consumer keeps polling (and the member keeps heartbeating), then seeks
  the partitions to those offsets and resumes them. A failure to open is retried with backoff.
  The assignor is sticky, so a rebalance moves only the tasks it must.
- Nothing the runtime depends on fails silently: the broker (probed), transactions, opening
  tasks, timers and the global-table follower each report a problem to `Health` (readiness
  false, one log line when it starts and one when it ends) and are retried with backoff.

Beside it: global tables (`globals`), state stores and their changelogs (`state`, `stores`),
the processor port (`processor`), topics and key checks (`topics`), dead letters (`dlq`).
Waiting, timers and after-commit effects (`waiting`, `timers`, `effects`) are used by the
processors inside their transactions; the runtime needs to know nothing of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from referrals.platform.errors import ConfigError, PermanentError
from referrals.platform.metrics import Children, Health, RuntimeMetrics
from referrals.platform.settings import KafkaSettings, ServiceSettings
from referrals.streams.assignor import CopartitionedAssignor
from referrals.streams.backoff import Backoff
from referrals.streams.dlq import dead_letter
from referrals.streams.globals import GlobalTables
from referrals.streams.identity import ProcessIdentity
from referrals.streams.kafka import (
    BOUNDED_FETCH,
    FetchPacing,
    make_admin,
    make_consumer,
    make_producer,
    partitions_of,
    stop_quietly,
)
from referrals.streams.loopback import HANDED_OVER_OFFSET, Loopback, high_watermarks
from referrals.streams.offsets import stable_committed
from referrals.streams.processor import DeadLetterOut, Inbound, Output, Processor
from referrals.streams.produce import Sent, send_all
from referrals.streams.serde import Codec
from referrals.streams.state import MAX_RECORD_BYTES, RocksMemory, TaskStore
from referrals.streams.stores import StoreManager, changelog_topic
from referrals.streams.topics import (
    ANY_RECORD,
    Catalogue,
    Role,
    TopicNames,
    TopicSpec,
    check_key,
    create_named_topics,
)
from referrals.streams.txn_offsets import GroupMetadata, GroupMoved, send_offsets

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
_Fetched = tuple[TopicPartition, Any]  # a fetched record and its partition
# Opening tasks failing for a reason other than the broker (a processor's bug, a locked state
# directory) this many times in a row stops the process: a restart may clear it.
MAX_OPEN_FAILURES = 8
BROKER_PROBE_S = 5.0
LAG_EVERY_S = 0.5
# The longest a task's batch holds the event loop before other work gets a turn (`_process_task`).
SLICE_S = 0.005


def utc_now() -> datetime:
    return datetime.now(UTC)


class FatalRuntimeError(Exception):
    """The runtime cannot continue safely (e.g. its producer was fenced)."""


class _Pending(NamedTuple):  # a tuple: one is built per output record
    topic: str  # physical
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    partition: int | None = None  # changelog entries go to their task's partition
    store: str | None = None  # the store whose changelog entry this is
    record: Any = None  # what `value` decodes to, when known exactly (a forwarded record)


@dataclass(frozen=True, slots=True)
class _Input:
    """What the runtime needs of an input topic for each of its records, worked out once."""

    logical: str
    spec: TopicSpec
    expected: str | None  # the record type the topic must carry (None: any)
    validate: bool  # an external input: its records are checked against the contract
    keyed: bool  # its records must be keyed by the spec's key field
    counter: Any  # records_in's child for the topic


@dataclass(frozen=True, slots=True)
class _Output:
    physical: str
    version: int | None
    counter: Any  # records_out's child for the topic


@dataclass(slots=True)
class _Handing:
    """A cycle's handing over of re-keyed records (`referrals.streams.loopback`)."""

    settled: dict[TopicPartition, int]  # re-key partitions fetched past their ends, where to
    waiting: set[TopicPartition]  # re-key partitions with records this cycle has yet to handle
    touched: set[int] = field(default_factory=set)  # tasks handed records in this cycle
    # (source task, target) pairs a record went from by the topic in this cycle, and the records
    blocked: set[tuple[int, TopicPartition]] = field(default_factory=set)
    forwards: list[tuple[int, _Pending]] = field(default_factory=list)
    # records to hand over, in the order made: handled once every task's own records were
    queue: list[tuple[TopicPartition, _Pending]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Consumed:
    """The parts of a consumed record a dead letter needs (for one sent after the fact)."""

    key: bytes | None
    value: bytes | None
    offset: int
    timestamp: int


class StreamRuntime:
    def __init__(
        self,
        processor: Processor,
        *,
        kafka: KafkaSettings,
        settings: ServiceSettings,
        codec: Codec,
        catalogue: Catalogue,
        metrics: RuntimeMetrics,
        health: Health,
        clock: Clock = utc_now,
    ) -> None:
        self.p = processor
        self.kafka = kafka
        self.settings = settings
        self.codec = codec
        self.catalogue = catalogue
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.names = TopicNames(kafka.topic_prefix)
        self.group_id = settings.group_id or f"referrals-{processor.name}"
        self._lock = asyncio.Lock()
        self._generation = 0
        self._rebalances = 0  # assignments received: an open that spans one starts again
        # The process's transactional producer (None until started, or after a failed
        # transaction, until the opener starts it again) and the id it keeps across restarts.
        self._producer: AIOKafkaProducer | None = None
        self._identity: ProcessIdentity | None = None
        self._tasks: set[int] = set()  # open tasks: ours to process
        self._consumer: AIOKafkaConsumer | None = None
        self._pacing: FetchPacing | None = None
        self._globals: GlobalTables | None = None
        self._failures = 0
        self._punctuated: dict[int, float] = {}  # task -> monotonic time of its last timers
        # The transaction in flight (one at a time) and, per task, the records fetched meanwhile.
        self._running: asyncio.Task[None] | None = None
        self._backlog: dict[int, list[tuple[TopicPartition, Any]]] = {}
        self._backlogged = 0  # records in the backlogs
        self._backlog_generation = 0
        self._lag_at = 0.0  # monotonic time the lag gauges were last set
        self._lag_topics: set[str] = set()  # topics the lag gauge has a value for
        # Per owned partition: its children of the lag and offset gauges.
        self._partition_gauges: dict[TopicPartition, tuple[Any, Any]] = {}
        self._partition_lags = Children(metrics.partition_lag)
        self._partition_offsets = Children(metrics.partition_offset)
        # task -> epoch time its timers last ran and committed (or it came to this instance)
        self._timers_ran: dict[int, float] = {}
        self._positions: dict[TopicPartition, int] = {}  # next offset to consume, per partition
        self._stores: StoreManager | None = None
        self._closing = False
        self._restore_consumer: AIOKafkaConsumer | None = None
        # Task lifecycle: `_wanted` is what the group assigned us; a task is open (ours to
        # process) once it is in `_tasks`; the opener opens the difference.
        self._wanted: frozenset[int] = frozenset()
        self._assigned = False  # the group has given us an assignment (perhaps empty)
        self._kick = asyncio.Event()  # wakes the opener
        self._retry_at: dict[int, float] = {}  # task -> monotonic time it may reopen
        self._task_backoff: dict[int, Backoff] = defaultdict(Backoff)
        self._timer_backoff: dict[int, Backoff] = defaultdict(lambda: Backoff(1.0, 60.0))
        self._timers_at: dict[int, float] = {}  # task -> monotonic time its timers may run
        self._fatal: BaseException | None = None
        self._inputs: dict[str, _Input] = {}  # by physical topic
        self._outputs: dict[str, _Output] = {}  # by logical topic
        # The processor's re-key topics whose records may skip the broker (None: it has none),
        # and the high watermarks' read in flight.
        self._loopback: Loopback | None = None
        self._reading_highs: asyncio.Task[None] | None = None
        self.p.task_stores = {}

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        follower: asyncio.Task[None] | None = None
        helpers: list[asyncio.Task[None]] = []
        try:
            # `<group>-<random>`: the ACLs give a service the transactional ids `<group>-*`.
            self._identity = ProcessIdentity.claim(
                self.settings.state_dir / self.group_id, self.group_id
            )
            log.info("transactional id", extra={"id": self._identity.transactional_id})
            # A cluster not reachable at start-up is waited for (not ready, retried with
            # backoff), as one lost while running is: a restart during an outage must not exit.
            if not await self._until_connected(stop, self._connect, keep_globals=False):
                return
            if self._globals is not None:
                follower = asyncio.create_task(self._globals.follow(stop))
            # The processor's helpers may need the cluster too (the unsubscribe endpoint's
            # producer), and the broker can go between the step above and this one.
            if not await self._until_connected(stop, self.p.startup, keep_globals=True):
                return
            if not await self._until_connected(stop, self._join, keep_globals=True):
                return
            helpers = [
                asyncio.create_task(self._open_loop(stop)),
                asyncio.create_task(self._watch_broker(stop)),
            ]
            await self._loop(stop)
        finally:
            self.health.ready = False
            background = [*helpers, *([follower] if follower else [])]
            for helper in background:
                helper.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._shutdown()

    async def _connect(self) -> None:
        """Global tables loaded, inputs checked, state topics created and restores set up."""
        if self.p.globals:
            self._globals = GlobalTables(
                self.p,
                self.kafka,
                client_id=f"{self.p.name}-{self.settings.instance_id}",
                names=self.names,
                catalogue=self.catalogue,
                codec=self.codec,
                metrics=self.metrics,
                health=self.health,
                clock=self.clock,
                dead_letter=self._dead_letter,
            )
            await self._globals.bootstrap()
        partitions = await self._check_copartitioned()
        await self._prepare_state(partitions)
        if self.p.loopback and self.settings.hand_over:
            internal = {s.name for s in self.p.internal_topics}
            wrong = [t for t in self.p.loopback if t not in internal or t not in self.p.inputs]
            if wrong:
                raise ConfigError(f"loopback topics must be internal inputs: {wrong}")
            self._loopback = Loopback((self.names(t) for t in self.p.loopback), partitions)
            for topic in self.p.loopback:
                self.metrics.handed_over.labels(topic)  # exported at 0 from the start

    async def _join(self) -> None:
        """The group consumer, subscribed with the sticky assignor and started."""
        assignor = CopartitionedAssignor.for_owner(lambda: self._wanted)
        self._consumer = make_consumer(
            self.kafka,
            group_id=self.group_id,
            client_id=f"{self.p.name}-{self.settings.instance_id}",
            partition_assignment_strategy=(assignor,),
            session_timeout_ms=self.settings.session_timeout_ms,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            heartbeat_interval_ms=max(1000, self.settings.session_timeout_ms // 4),
        )
        topics = [self.names(t) for t in self.p.inputs]
        self._consumer.subscribe(topics, listener=_Listener(self))
        await self._consumer.start()
        self._pacing = FetchPacing(self._consumer)

    async def _until_connected(
        self, stop: asyncio.Event, step: Callable[[], Awaitable[None]], *, keep_globals: bool
    ) -> bool:
        """Runs a start-up step until it succeeds (True) or `stop` is set (False). A broker
        error is retried with backoff, reported once; any other error is raised."""
        backoff = Backoff(0.5, 15.0)
        while not stop.is_set():
            try:
                await step()
            except Exception as err:
                if not _is_transient(err):
                    raise
                if self.health.problem("broker", f"cannot reach the cluster: {err!r}"):
                    log.warning("cannot reach the cluster at start-up; retrying")
                await self._drop_clients(keep_globals=keep_globals)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff.next())
                continue
            self.health.resolved("broker")
            return True
        return False

    async def _drop_clients(self, *, keep_globals: bool) -> None:
        """Closes the clients a failed start-up step left behind, before it is tried again."""
        clients: list[Any] = [self._consumer]
        self._consumer = None
        if not keep_globals:
            clients += [self._restore_consumer, self._globals]
            self._restore_consumer, self._globals, self._stores = None, None, None
        for client in clients:
            if isinstance(client, GlobalTables):
                await client.close()
            elif client is not None:
                await stop_quietly(client)

    async def _shutdown(self) -> None:
        async with self._lock:
            self._closing = True  # a rebalance finishing during shutdown opens no new tasks
            await self._settle()
            await self._flush_tasks()
            await self._close_tasks(frozenset(self._tasks), checkpoint=True)
        if self._reading_highs is not None:
            self._reading_highs.cancel()
            await asyncio.gather(self._reading_highs, return_exceptions=True)
        for client in (self._consumer, self._restore_consumer):
            if client is not None:
                await stop_quietly(client)
        if self._globals is not None:
            await self._globals.close()
        await self._discard_producer()
        if self._identity is not None:
            self._identity.release()
        await self.p.shutdown()

    async def _flush_tasks(self) -> None:
        """Runs every owned task's timers and commits what they produce (a processor may hold
        results, e.g. accepted deliveries, that must be recorded before the task moves). A
        member that knows it has left the group commits nothing: its tasks are not its own."""
        if not self._tasks or self._producer is None or self._membership() is None:
            return
        try:
            await self._run_cycle({task: ([], True) for task in sorted(self._tasks)})
        except Exception:  # the tasks are leaving anyway; what was not recorded is redone
            log.exception("final flush failed", extra={"tasks": sorted(self._tasks)})

    def _membership(self) -> GroupMetadata | None:
        """The member id and generation this instance's tasks were assigned in; None once the
        consumer knows it has left the group (it then forgets both, and a commit without them
        would not be checked: a zombie's)."""
        if self._consumer is None:
            return None
        coordinator = self._consumer._coordinator
        if coordinator.generation < 0 or not coordinator.member_id:
            return None
        return GroupMetadata(self.group_id, coordinator.generation, coordinator.member_id)

    async def _loop(self, stop: asyncio.Event) -> None:
        """Fetches without waiting for transactions: the records fetched while a transaction
        is in flight wait in their tasks' backlogs for the next one. So the commit cadence
        follows the load: a record arriving at a quiet process is committed at once, alone; a
        busy process's next transaction takes everything that arrived during its last one."""
        assert self._consumer is not None
        stop_wait = asyncio.create_task(stop.wait())
        fetch: asyncio.Task[dict[TopicPartition, list[Any]]] | None = None
        fetched_in = self._generation
        try:
            while not stop.is_set():
                if self._fatal is not None:
                    raise self._fatal
                self.health.tick()
                room = 2 * self.settings.max_batch - self._backlogged
                if fetch is None and room > 0:
                    self._drop_stale_backlog()
                    fetched_in = self._generation
                    fetch = asyncio.create_task(
                        self._consumer.getmany(
                            timeout_ms=self.settings.poll_timeout_ms,
                            max_records=min(room, self.settings.max_batch),
                        )
                    )
                running = [self._running] if self._running is not None else []
                waits = {stop_wait, *running, *([fetch] if fetch else [])}
                await asyncio.wait(
                    waits,
                    timeout=self.settings.poll_timeout_ms / 1000,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stop.is_set():
                    break
                batch: dict[TopicPartition, list[Any]] = {}
                if fetch is not None and fetch.done():
                    batch, fetch = fetch.result(), None
                    if self._pacing is not None:
                        self._pacing.observe(sum(map(len, batch.values())))
                async with self._lock:
                    self._reap()
                    if fetched_in != self._generation:
                        self._rewind(batch)  # fetched across a rebalance: fetch it again
                    else:
                        self._queue(batch)
                    self._start_cycle()
                self._update_gauges()
        finally:
            stop_wait.cancel()
            if fetch is not None:
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)

    def _queue(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Adds fetched records to their tasks' backlogs (a task not open drops them: it is
        rewound to its committed offsets when it opens)."""
        for tp, messages in batch.items():
            if messages and tp.partition in self._tasks:
                self._backlog.setdefault(tp.partition, []).extend((tp, m) for m in messages)
                self._backlogged += len(messages)

    def _start_cycle(self) -> None:
        """Starts the next transaction, unless one is in flight or the producer is being
        replaced, for every open task with records waiting or timers due."""
        self._drop_stale_backlog()
        if self._running is not None or self._producer is None:
            return
        now = time.monotonic()
        interval = self.settings.punctuate_ms / 1000
        work: dict[int, tuple[list[tuple[TopicPartition, Any]], bool]] = {}
        for task in sorted(self._tasks):
            due = now - self._punctuated.get(task, 0.0) >= interval
            messages = self._backlog.pop(task, None)
            if not messages and not due:
                continue
            if messages:
                self._backlogged -= len(messages)
            if due:
                self._punctuated[task] = now
            work[task] = (messages or [], due)
        if work:
            settled = self._settled()
            self._running = asyncio.create_task(self._run_cycle(work, settled))

    def _settled(self) -> dict[TopicPartition, int] | None:
        """The open tasks' re-key partitions the consumer has fetched past their ends, with
        its positions (`referrals.streams.loopback`; None: no re-key topic); starts reading
        the ends it lacks."""
        loop = self._loopback
        if loop is None or self._consumer is None:
            return None
        if loop.missing(self._tasks) and self._reading_highs is None:
            self._reading_highs = asyncio.create_task(self._read_highs(loop))
        return loop.settled(self._tasks, self._fetch_position)

    async def _read_highs(self, loop: Loopback) -> None:
        """Reads the high watermarks of the open tasks' re-key partitions (after a reset: the
        tasks opened, their predecessors' last transactions settled). A failure is retried on
        a later cycle, no sooner than a second later; records are forwarded meanwhile."""
        epoch = loop.epoch
        try:
            if self._consumer is not None:
                loop.read(await high_watermarks(self._consumer, loop.missing(self._tasks)), epoch)
        except Exception as err:  # a broker error: forward until the next read
            log.debug("reading the re-key topics' ends failed", extra={"error": repr(err)})
            await asyncio.sleep(1.0)
        finally:
            self._reading_highs = None

    def _reap(self) -> None:
        """Forgets a finished transaction; one that failed beyond recovery stops the loop."""
        running = self._running
        if running is not None and running.done():
            self._running = None
            if not running.cancelled() and running.exception() is not None:
                raise running.exception()  # type: ignore[misc]

    async def _settle(self) -> None:
        """Waits for the transaction in flight (under the lock: none starts meanwhile)."""
        if self._running is not None:
            await asyncio.wait([self._running])

    def _bump(self) -> None:
        """Records fetched before now are fetched again (a rebalance, a task rebuilt)."""
        self._generation += 1

    def _drop_stale_backlog(self) -> None:
        """Rewinds the backlogs fetched before the generation changed (before the next fetch,
        so it starts from their first records)."""
        if self._backlog_generation != self._generation:
            for messages in self._backlog.values():
                by_tp: dict[TopicPartition, list[Any]] = {}
                for tp, msg in messages:
                    by_tp.setdefault(tp, []).append(msg)
                self._rewind(by_tp)
            self._backlog.clear()
            self._backlogged = 0
            self._backlog_generation = self._generation

    async def _watch_broker(self, stop: asyncio.Event) -> None:
        """Probes the cluster every few seconds (a metadata request): readiness is false while
        no broker answers. The clients retry on their own; this only makes it visible."""
        assert self._consumer is not None
        client = self._consumer._client
        while not stop.is_set():
            await asyncio.sleep(BROKER_PROBE_S)
            probe = client.force_metadata_update()
            try:
                ok = bool(await asyncio.wait_for(asyncio.shield(probe), 10.0))
            except asyncio.CancelledError:  # shutting down: let the request finish first, so
                with contextlib.suppress(Exception):  # the client closes no half-made link
                    await asyncio.wait_for(probe, 5.0)
                raise
            except Exception:
                ok = False
            try:
                self.health.detail.update(self.p.health_detail())
            except Exception:  # detail is a courtesy; it must never stop the probe
                log.exception("health detail failed")
            if ok:
                self.health.resolved("broker")
            else:
                self.health.problem("broker", "no broker answers a metadata request")

    def _rewind(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Seeks back to the first record of a dropped batch. The consumer's position already
        moved past it; without this the records would be skipped until the next restart. A
        rewind never moves a position forward: an earlier one (a dropped backlog) may already
        have sent it further back."""
        assert self._consumer is not None
        owned = self._consumer.assignment()
        for tp, messages in batch.items():
            if not messages or tp not in owned:
                continue
            first = messages[0].offset
            position = self._fetch_position(tp)
            if position is not None and position <= first:
                continue
            self._consumer.seek(tp, first)

    def _fetch_position(self, tp: TopicPartition) -> int | None:
        """The consumer's next offset to fetch for `tp`, past any commit markers it has read
        (None: it has none yet)."""
        assert self._consumer is not None
        assignment = self._consumer._subscription.subscription
        states = assignment.assignment if assignment is not None else None
        state = states.state_value(tp) if states is not None else None
        if state is None or not state.has_valid_position:
            return None
        position: int = state.position
        return position

    # -- processing -----------------------------------------------------------------------------
    async def _run_cycle(
        self,
        work: dict[int, tuple[list[_Fetched], bool]],
        settled: dict[TopicPartition, int] | None = None,
    ) -> None:
        """One transaction for the tasks in `work`: each task's records handled (and its
        timers run, when due), then their outputs, changelog writes and offsets committed
        together. With a re-key topic (`referrals.streams.loopback`; `settled`: its partitions
        fetched past their ends at the start) every task's records of it are handled first,
        and a re-keyed record may then be handed to its task at once, which commits in this
        transaction too."""
        now = self.clock()
        began = time.perf_counter()
        phases = _queued(work)
        steps, waiting = self._steps(work)
        handing = _Handing(settled, waiting) if settled is not None else None
        outputs: dict[int, list[_Pending]] = {}
        offsets: dict[TopicPartition, int] = {}
        by_task: dict[int, dict[TopicPartition, int]] = {}
        punctuated: list[int] = []
        failed: set[int] = set()
        n_in = 0
        for task, messages, due, looped in steps:
            if task not in self._tasks or task in failed:  # closed meanwhile, or failed now
                continue
            done = await self._process_task(task, messages, due, now, handing)
            if done is None:
                failed.add(task)  # its timers failed: nothing of it commits, it is rebuilt
                outputs.pop(task, None)
                by_task.pop(task, None)
                continue
            out, consumed, ran = done
            outputs.setdefault(task, []).extend(out)
            by_task.setdefault(task, {}).update(consumed)
            n_in += len(messages)
            if ran:
                punctuated.append(task)
            if looped and handing is not None:
                handing.waiting -= {tp for tp, _ in messages}  # all handled: it may take more
        tasks = list(outputs)
        touched = handing.touched if handing is not None else set()
        if failed and touched:
            # A failed task's records are redone, and so must be what they handed over, or
            # what was handed to it: redo the whole cycle.
            undone = frozenset(tasks) | (touched - failed)
            for task in undone:
                self._finish_stores(task, committed=False)
            await self._recover(undone, backoff=False)
            return
        if handing is not None:
            for task, out in (await self._handle_handed(handing, now)).items():
                outputs.setdefault(task, []).extend(out)
        tasks += sorted(touched - set(tasks))
        pending = [item for task in tasks for item in outputs.get(task, ())]
        for task in tasks:  # after every handing over: a task's writes may come from another's
            pending.extend(self._changelog_entries(task))
            offsets.update(by_task.get(task, {}))
        if tasks and (pending or offsets):
            # Every transaction commits offsets, so the group can refuse it if this member is
            # a zombie: a timers-only one commits its tasks' offsets where they are.
            for tp in self._task_partitions(frozenset(tasks)):
                if tp not in offsets and tp in self._positions:
                    offsets[tp] = self._positions[tp]
            forwards = handing.forwards if handing is not None else []
            phases["handle"] = time.perf_counter() - began
            if not await self._commit(tasks, pending, offsets, n_in, forwards, phases):
                return
        ran_at = time.time()
        for task in punctuated:
            if task in self._tasks:
                self._timers_ran[task] = ran_at

    def _steps(
        self, work: dict[int, tuple[list[_Fetched], bool]]
    ) -> tuple[list[tuple[int, list[_Fetched], bool, bool]], set[TopicPartition]]:
        """The cycle's steps, (task, records, timers due, records of the re-key topic): those
        of the re-key topic first, every task's, then the rest; and the re-key partitions that
        have records in the cycle."""
        loop = self._loopback
        if loop is None:
            return [(task, messages, due, False) for task, (messages, due) in work.items()], set()
        first: list[tuple[int, list[_Fetched], bool, bool]] = []
        then: list[tuple[int, list[_Fetched], bool, bool]] = []
        for task, (messages, due) in work.items():
            looped = [m for m in messages if m[0].topic in loop.topics]
            if looped:
                first.append((task, looped, False, True))
                messages = [m for m in messages if m[0].topic not in loop.topics]
            then.append((task, messages, due, False))
        return first + then, {tp for _, messages, _, _ in first for tp, _ in messages}

    async def _process_task(
        self,
        task: int,
        messages: list[tuple[TopicPartition, Any]],
        due: bool,
        now: datetime,
        handing: _Handing | None = None,
    ) -> tuple[list[_Pending], dict[TopicPartition, int], bool] | None:
        """A task's part of a cycle: (its outputs, the offsets it consumed to, whether its
        timers ran); None when its timers failed (the task is closed to be rebuilt). Re-keyed
        records go to their task at once when `handing` says it is ready."""
        pending: list[_Pending] = []
        consumed: dict[TopicPartition, int] = {}
        # A batch is handled in slices of at most SLICE_S of CPU, the event loop running in
        # between: a backlog of thousands of records is a second of work, and while it ran
        # nothing else did (heartbeats, fetches, the notifications sender's SMTP
        # conversations, each of whose four round trips waited for a turn).
        yield_at = time.perf_counter() + SLICE_S
        for tp, msg in messages:
            consumed[tp] = msg.offset + 1
            out = self._handle(tp, msg, now)
            if handing is not None and out:
                out = self._hand_over(out, now, handing, task)
            pending.extend(out)
            if time.perf_counter() >= yield_at:
                await asyncio.sleep(0)
                yield_at = time.perf_counter() + SLICE_S
        punctuated = due and time.monotonic() >= self._timers_at.get(task, 0.0)
        if punctuated:
            try:
                out = self._encode(self.p.punctuate(task, now))
                if handing is not None and out:
                    out = self._hand_over(out, now, handing, task)
                pending.extend(out)
            except Exception as err:
                # A timer failure must neither stop the service nor commit half its work:
                # leave the task out of the transaction (the batch's records are redone),
                # rebuild it, and try its timers again after a growing delay; not ready
                # meanwhile. The other tasks commit as usual.
                delay = self._timer_backoff[task].next()
                self._timers_at[task] = time.monotonic() + delay
                if self.health.problem(f"timers:task-{task}", repr(err)):
                    log.exception("timers failed; retrying with backoff", extra={"task": task})
                self.metrics.transactions.labels("punctuate_error").inc()
                self._finish_stores(task, committed=False)
                await self._recover(frozenset({task}), backoff=False)
                return None
            if task in self._timers_at:
                del self._timers_at[task]
                self._timer_backoff.pop(task, None)
                self.health.resolved(f"timers:task-{task}")
        return pending, consumed, punctuated

    def _hand_over(
        self, outputs: list[_Pending], now: datetime, handing: _Handing, source: int
    ) -> list[_Pending]:
        """`outputs` (of task `source`: a record's, or its timers') without the re-keyed
        records their task may take in this cycle (`referrals.streams.loopback`): each is
        queued for its task (`_handle_handed`). The others are forwarded (written to the
        topic), and nothing more of `source` is handed to their task in this cycle. The
        source is the task, not the record's partition: a record may release others that
        waited in the task (events parked for their program), from any of its partitions."""
        loop = self._loopback
        if loop is None or not any(item.topic in loop.topics for item in outputs):
            return outputs
        kept: list[_Pending] = []
        for item in outputs:
            if item.topic not in loop.topics or not item.key:
                kept.append(item)
                continue
            target = loop.target(item.topic, item.key)
            at = handing.settled.get(target)
            if (
                at is None
                or target in handing.waiting
                or (source, target) in handing.blocked
                or loop.behind(source, target, at)
                or target.partition not in self._tasks
            ):
                handing.blocked.add((source, target))
                handing.forwards.append((source, item))
                kept.append(item)
                continue
            handing.touched.add(target.partition)
            handing.queue.append((target, item))
        return kept

    async def _handle_handed(self, handing: _Handing, now: datetime) -> dict[int, list[_Pending]]:
        """The records handed over in this cycle, handled by their tasks in the order they
        were made, after every task's own records (as when they came back through the topic,
        a transaction later: a task's own records fetched with them go first); by task, their
        outputs."""
        outputs: dict[int, list[_Pending]] = {}
        queue = handing.queue
        done = 0
        yield_at = time.perf_counter() + SLICE_S  # as `_process_task`: the loop gets turns
        while done < len(queue):  # handling one may hand over more
            target, item = queue[done]
            done += 1
            record = _Consumed(item.key, item.value, HANDED_OVER_OFFSET, int(time.time() * 1000))
            self.metrics.handed_over.labels(self.names.logical(item.topic)).inc()
            handled = self._handle(target, record, now, item.record)
            out = self._hand_over(handled, now, handing, target.partition)
            outputs.setdefault(target.partition, []).extend(out)
            if time.perf_counter() >= yield_at:
                await asyncio.sleep(0)
                yield_at = time.perf_counter() + SLICE_S
        return outputs

    def _handle(
        self, tp: TopicPartition, msg: Any, now: datetime, decoded: Any = None
    ) -> list[_Pending]:
        """One record: its outputs, or its dead letter with its store writes undone.
        `decoded`: what its value decodes to, when known (a record handed over)."""
        task_stores = self.p.task_stores.get(tp.partition)
        if not task_stores:
            return self._handle_record(tp, msg, now, (), decoded)
        stores = list(task_stores.values())
        for store in stores:
            store.begin_record()
        outputs = self._handle_record(tp, msg, now, stores, decoded)
        for store in stores:
            store.end_record()
        return outputs

    def _input(self, physical: str) -> _Input:
        found = self._inputs.get(physical)
        if found is None:
            logical = self.names.logical(physical)
            spec = self.catalogue.spec_for(logical)
            found = self._inputs[physical] = _Input(
                logical=logical,
                spec=spec,
                expected=None if spec.record == ANY_RECORD else spec.record,
                validate=spec.role is Role.INPUT,
                keyed=logical in self.p.keyed_inputs,
                counter=self.metrics.records_in.labels(logical),
            )
        return found

    def _output(self, logical: str) -> _Output:
        found = self._outputs.get(logical)
        if found is None:
            found = self._outputs[logical] = _Output(
                physical=self.names(logical),
                version=self.catalogue.spec_for(logical).schema_version,
                counter=self.metrics.records_out.labels(logical),
            )
        return found

    def _handle_record(
        self,
        tp: TopicPartition,
        msg: Any,
        now: datetime,
        stores: Sequence[TaskStore],
        decoded: Any = None,
    ) -> list[_Pending]:
        topic = self._input(tp.topic)
        topic.counter.inc()
        logical, spec = topic.logical, topic.spec
        try:
            if msg.value is None and spec.compacted:  # a legitimate delete of a table's key
                key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
                deleted = Inbound(logical, tp.partition, msg.offset, key, None, msg.timestamp)
                return _bounded(self._encode(self.p.deleted(deleted, now)))
            value = msg.value
            expected = topic.expected
            if decoded is not None and (expected is None or type(decoded).__name__ == expected):
                record = decoded  # as `value` decodes (the record it was forwarded from)
            else:
                record = self.codec.decode(value, expected) if value is not None else None
            if record is None:
                raise PermanentError("record has no value (a tombstone)", reason="TOMBSTONE")
            if topic.validate:
                self.catalogue.validate(record, now)
            key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
            if topic.keyed:
                check_key(spec, msg.key, record)
            inbound = Inbound(
                logical, tp.partition, msg.offset, key, record, msg.timestamp, msg.key, msg.value
            )
            return _bounded(self._encode(self.p.process(inbound, now)))
        except PermanentError as err:
            for store in stores:
                store.undo_record()
            return [self._dead_letter(tp, msg, err)]
        except Exception as err:  # a bug must not stop every other record: DLQ it, loudly
            log.exception("processing failed", extra={"topic": tp.topic, "offset": msg.offset})
            for store in stores:
                store.undo_record()
            return [self._dead_letter(tp, msg, err)]

    def _changelog_entries(self, task: int) -> list[_Pending]:
        out: list[_Pending] = []
        for name, store in self.p.task_stores.get(task, {}).items():
            topic = self.names(changelog_topic(self.p.name, name))
            out.extend(
                _Pending(topic, k, v, partition=task, store=name) for k, v in store.changes()
            )
        return out

    def _finish_stores(self, task: int, *, committed: bool) -> None:
        for store in self.p.task_stores.get(task, {}).values():
            if committed:
                store.commit()
            else:
                store.abort()
        if committed:
            self.p.committed(task)
        else:
            self.p.aborted(task)

    def _dead_letter(self, tp: TopicPartition, msg: Any, err: BaseException) -> _Pending:
        """The DLQ entry for consumed record `msg` (anything with key/value/offset/timestamp)."""
        dl = dead_letter(
            service=self.p.name,
            topic=tp.topic,
            partition=tp.partition,
            offset=msg.offset,
            timestamp_ms=msg.timestamp,
            key=msg.key,
            value=msg.value,
            error=err,
        )
        reason = dict(dl.headers)["dlq.error.reason"].decode()
        self.metrics.dead_letters.labels(self.names.logical(tp.topic), reason).inc()
        log.warning(
            "dead-lettered",
            extra={
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": msg.offset,
                "reason": reason,
                "error": str(err)[:300],
            },
        )
        return _Pending(dl.topic, dl.key, dl.value, dl.headers)

    def _encode(self, outputs: Iterable[Output]) -> list[_Pending]:
        out = []
        for o in outputs:
            if isinstance(o, DeadLetterOut):
                r = o.record
                tp = TopicPartition(self.names(r.topic), r.partition)
                late = _Consumed(r.raw_key, r.raw_value, r.offset, r.timestamp_ms)
                out.append(self._dead_letter(tp, late, o.error))
                continue
            topic = self._output(o.topic)
            if o.raw is not None and topic.version is None:  # forwarded as consumed
                item = _Pending(topic.physical, o.key.encode(), o.raw, record=o.value)
            else:
                item = _Pending(
                    topic.physical, o.key.encode(), self.codec.encode(o.value, topic.version)
                )
            out.append(item)
            topic.counter.inc()
        return out

    async def _commit(
        self,
        tasks: list[int],
        pending: list[_Pending],
        offsets: dict[TopicPartition, int],
        n_in: int,
        forwards: Sequence[tuple[int, _Pending]] = (),
        phases: dict[str, float] | None = None,
    ) -> bool:
        """The cycle's transaction; False when it did not commit (its tasks are rebuilt, or
        dropped if the group has moved on without this member). `phases`: the cycle's time so
        far by phase (referrals_cycle_seconds), the transaction's added and observed when it
        commits."""
        phases = {} if phases is None else phases
        producer = self._producer
        assert producer is not None
        started = time.perf_counter()
        written: list[tuple[int, str, Sent]] = []  # changelog sends, for checkpoints
        forwarded: dict[int, Sent] = {}  # id(re-keyed record) -> its send
        try:
            membership = self._membership()
            if membership is None:
                raise GroupMoved("this member has left the group; its tasks are not its own")
            # Given up before the broker's transaction timeout would abort it: that bumps the
            # producer's epoch, and the next request would see "fenced".
            limit = min(self.settings.commit_timeout_s, self.settings.transaction_timeout_ms / 1000)
            await asyncio.wait_for(
                self._transact(producer, pending, offsets, written, forwarded, membership, phases),
                timeout=limit,
            )
        except (ProducerFenced, GroupMoved) as err:
            for task in tasks:
                self._finish_stores(task, committed=False)
            self.metrics.transactions.labels("fenced").inc()
            await self._discard_producer()
            await self._drop_migrated(err)
            return False
        except Exception as err:  # broker down, timeout, any client error
            for task in tasks:
                self._finish_stores(task, committed=False)
            self.metrics.transactions.labels("abort").inc()
            if self.health.problem("transactions", f"tasks {tasks}: {err!r}"):
                log.warning("transaction failed; rebuilding its tasks", extra={"tasks": tasks})
            await self._discard_producer()  # starting it again aborts what it left open
            await self._recover(frozenset(tasks))
            return False
        if self._stores is not None:
            for task, store, sent in written:
                self._stores.written(task, store, sent.offset + 1)
        if self._loopback is not None:
            for source, item in forwards:
                delivery = forwarded.get(id(item))  # none: its task failed, its records redone
                if delivery is not None:
                    target = TopicPartition(delivery.topic, delivery.partition)
                    self._loopback.forwarded(source, target, delivery.offset)
        for task in tasks:
            self._finish_stores(task, committed=True)
            self._task_backoff.pop(task, None)
        self.health.resolved("transactions")
        self._positions.update(offsets)
        self.metrics.transactions.labels("commit").inc()
        self.metrics.batch_records.observe(n_in)
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        for phase, seconds in phases.items():
            self.metrics.cycle_seconds.labels(phase).observe(seconds)
        return True

    async def _transact(
        self,
        producer: AIOKafkaProducer,
        pending: list[_Pending],
        offsets: dict[TopicPartition, int],
        written: list[tuple[int, str, Sent]],
        forwarded: dict[int, Sent],
        membership: GroupMetadata,
        phases: dict[str, float],
    ) -> None:
        loop = self._loopback.topics if self._loopback is not None else frozenset()
        began = time.perf_counter()
        await producer.begin_transaction()
        for item, sent in zip(pending, await send_all(producer, pending), strict=True):
            if item.store is not None:
                assert item.partition is not None  # a changelog entry goes to its task
                written.append((item.partition, item.store, sent))
            elif item.topic in loop:
                forwarded[id(item)] = sent
        produced = time.perf_counter()
        if offsets:
            await send_offsets(producer, offsets, membership)
        registered = time.perf_counter()
        await producer.commit_transaction()
        phases.update(
            produce=produced - began,
            offsets=registered - produced,
            commit=time.perf_counter() - registered,
        )

    async def _start_producer(self) -> None:
        """The process's transactional producer; starting it (InitProducerId) aborts any
        transaction the id left open (a crashed predecessor's, or our own failed one)."""
        assert self._identity is not None
        producer = make_producer(
            self.kafka,
            client_id=f"{self.p.name}-{self.settings.instance_id}",
            transactional_id=self._identity.transactional_id,
            transaction_timeout_ms=self.settings.transaction_timeout_ms,
        )
        try:
            await asyncio.wait_for(producer.start(), timeout=self.settings.commit_timeout_s)
        except BaseException:
            await stop_quietly(producer)
            raise
        self._producer = producer

    async def _discard_producer(self) -> None:
        """Drops the producer after a failed transaction; the opener starts a new one."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_quietly(producer)
            self._kick.set()

    async def _recover(self, tasks: frozenset[int], *, backoff: bool = True) -> None:
        """After a failed transaction: close the tasks (their local state holds only committed
        writes, so the checkpoints stay valid) and let the opener reopen them, after a growing
        delay, restoring what the changelog has past the checkpoint and rewinding their
        partitions to the committed offsets."""
        await self._close_tasks(tasks, checkpoint=True)
        self._pause(tasks)
        if self._loopback is not None:
            self._loopback.reset()  # the failed transaction's forwards may yet have committed
        if backoff:
            for task in tasks:
                self._retry_at[task] = time.monotonic() + self._task_backoff[task].next()
        self._bump()  # a batch fetched before this is fetched again
        self._kick.set()

    async def _drop_migrated(self, err: BaseException) -> None:
        """The group refused our generation, or another process's producer fenced ours: the
        group gave our tasks away while this instance was not looking (a pause past the
        session timeout). Drop every task without committing anything more, and rejoin the
        group; the next assignment says what is ours."""
        log.warning(
            "tasks taken over by another instance; dropping them and rejoining",
            extra={"tasks": sorted(self._tasks), "error": str(err)[:300]},
        )
        dropped = frozenset(self._tasks)
        self._wanted = frozenset()  # reopened only if the next assignment says so
        await self._recover(dropped, backoff=False)
        if self._consumer is not None:
            self._consumer._coordinator.request_rejoin()

    # -- tasks ----------------------------------------------------------------------------------
    def _task_partitions(self, tasks: frozenset[int]) -> list[TopicPartition]:
        if self._consumer is None:
            return []
        return [tp for tp in self._consumer.assignment() if tp.partition in tasks]

    def _pause(self, tasks: frozenset[int]) -> None:
        if self._consumer is not None and tasks:
            self._consumer.pause(*self._task_partitions(tasks))

    async def _open_loop(self, stop: asyncio.Event) -> None:
        """Opens the tasks the group assigned us and we have not opened, until stopped."""
        backoff = Backoff(0.5, 30.0)
        while not stop.is_set():
            now = time.monotonic()
            pending = self._wanted - self._tasks
            if self._assigned and not pending and not self.health.ready:
                # Ready once the first assignment's tasks are open, their state restored: a
                # replacement that says ready sooner lets Kubernetes stop the instance it
                # replaces while nothing processes those tasks yet.
                self.health.ready = True
                log.info("ready: every assigned task open", extra={"tasks": sorted(self._wanted)})
            ready = frozenset(t for t in pending if self._retry_at.get(t, 0.0) <= now)
            if (ready or self._producer is None) and not self._closing:
                try:
                    if self._producer is None:
                        await self._start_producer()
                    if ready:
                        await self._open_tasks(ready)
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # retried; fatal only if not Kafka's
                    what = f"opening tasks {sorted(ready)}: {err!r}"
                    if self.health.problem("tasks", what):
                        log.exception("opening tasks failed; retrying")
                    if not _is_transient(err) and backoff.failures + 1 >= MAX_OPEN_FAILURES:
                        self._fatal = FatalRuntimeError(what)
                        return
                    await asyncio.sleep(backoff.next())
                    continue
                backoff.reset()
                self.health.resolved("tasks")
                continue
            later = [self._retry_at[t] - now for t in pending - ready]
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=min(later, default=None))

    async def _open_tasks(self, tasks: frozenset[int]) -> None:
        """Reads the tasks' committed offsets (stable: a previous owner's last transaction
        settled), then restores their stores while the consumer keeps polling, then, if they
        are still ours and no rebalance came meanwhile, hands them to the processor, seeks
        their partitions to those offsets and resumes them. The order matters: a previous
        owner can commit nothing after the offsets are read (the group refuses its
        generation), so the restored state holds every transaction those offsets count."""
        rebalances = self._rebalances
        await self._fence_per_task_owners(tasks)
        committed = await self._read_committed(tasks)
        if self._stores is not None:
            await self._stores.open_tasks(tasks)
        async with self._lock:
            try:
                await self._settle()  # no transaction in flight while tasks change hands
            except BaseException:  # cancelled (shutting down): the new tasks were not handed over
                await self._close_opened(tasks)
                raise
            current = rebalances == self._rebalances and not self._closing
            keep = tasks & self._wanted if current else frozenset()
            positions: dict[str, int | None] = {}
            try:
                await self._close_opened(tasks - keep)
                if keep:
                    await self.p.assign(keep)
                    positions = await self._seek(committed, keep)
            except BaseException:
                await self._close_opened(keep)
                raise
            self._tasks |= keep
            if self._loopback is not None and keep:
                # A new source may have left forwarded records behind: wait for them.
                self._loopback.reset()
            opened_at = time.time()  # a task new to this instance is not late with its timers
            for task in keep:
                self._retry_at.pop(task, None)
                self._timers_ran.setdefault(task, opened_at)
            if self._consumer is not None and keep:
                self._consumer.resume(*self._task_partitions(keep))
            self.metrics.assigned.set(len(self._tasks))
            if not current:
                self._kick.set()  # opened across a rebalance: open what is ours now again
        if keep:
            log.info("tasks opened", extra={"tasks": sorted(keep), "committed": positions})

    async def _fence_per_task_owners(self, tasks: frozenset[int]) -> None:
        """Fences an owner of the tasks running the previous version of this runtime (a
        rolling upgrade): it had a producer per task, `<group>-<task>`, and committed offsets
        without a generation the group could check. Starting a producer with that id aborts
        its open transaction and fences it, as a new owner did then."""

        async def fence(task: int) -> None:
            producer = make_producer(
                self.kafka,
                client_id=f"{self.p.name}-{self.settings.instance_id}-fence",
                transactional_id=f"{self.group_id}-{task}",
            )
            try:
                await asyncio.wait_for(producer.start(), timeout=self.settings.commit_timeout_s)
            finally:
                await stop_quietly(producer)

        await asyncio.gather(*(fence(task) for task in sorted(tasks)))

    async def _close_opened(self, tasks: frozenset[int]) -> None:
        """Closes the stores of tasks opened but not (or no longer) handed over to processing."""
        for task in tasks:
            if self._stores is not None:
                await self._stores.close_task(task, checkpoint=True)

    async def _read_committed(self, tasks: frozenset[int]) -> dict[TopicPartition, int | None]:
        """The committed offsets of the tasks' partitions, read with require_stable
        (`offsets`: a predecessor's last transaction may still be settling in the group
        coordinator); None: nothing committed yet."""
        assert self._consumer is not None
        return await stable_committed(
            self._consumer,
            self.group_id,
            self._task_partitions(tasks),
            timeout_s=self.settings.commit_timeout_s,
        )

    async def _seek(
        self, committed: dict[TopicPartition, int | None], tasks: frozenset[int]
    ) -> dict[str, int | None]:
        """Rewinds the tasks' partitions to their committed offsets (from the beginning where
        nothing is committed) and records them as the tasks' positions; returns them by
        "topic/partition"."""
        assert self._consumer is not None
        found: dict[str, int | None] = {}
        for tp in self._task_partitions(tasks):
            offset = committed.get(tp)
            found[f"{self.names.logical(tp.topic)}/{tp.partition}"] = offset
            if offset is None:
                await self._consumer.seek_to_beginning(tp)
                offset = await self._consumer.position(tp)
            else:
                self._consumer.seek(tp, offset)
            self._positions[tp] = offset  # a timers-only transaction commits it again
        return found

    async def _close_tasks(self, tasks: frozenset[int], *, checkpoint: bool = True) -> None:
        tasks = tasks & frozenset(self._tasks)
        if tasks:
            await self.p.revoke(tasks)
        for task in tasks:
            if self._stores is not None:
                await self._stores.close_task(task, checkpoint=checkpoint)
            self._tasks.discard(task)
        for tp in [tp for tp in self._positions if tp.partition in tasks]:
            del self._positions[tp]  # a task reopened later reports lag from its new commits
        self.metrics.assigned.set(len(self._tasks))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """The rebalance callback: quick on purpose (no heartbeats are sent while it runs).
        Closes the tasks we lost, records the new assignment and pauses the partitions of the
        tasks still to open; the opener does the rest."""
        async with self._lock:
            if self._closing:
                return
            await self._settle()
            self._rebalances += 1
            wanted = frozenset(tp.partition for tp in assigned)
            await self._close_tasks(frozenset(self._tasks) - wanted)
            kept = wanted & frozenset(self._tasks)
            if kept and self._consumer is not None:
                # The consumer forgot every position with the old assignment and would read
                # the committed offsets without require_stable: our own last transaction,
                # committed a moment ago, may not show there yet, and its records would be
                # read and written again. Read them as a task's new owner does.
                await self._seek(await self._read_committed(kept), kept)
            self._wanted = wanted
            self._assigned = True
            if self._loopback is not None:
                self._loopback.reset()
            self._pause(wanted - frozenset(self._tasks))
            self._bump()
            self._kick.set()
            log.info("tasks assigned", extra={"tasks": sorted(wanted)})

    # -- checks and metrics ---------------------------------------------------------------------
    async def _prepare_state(self, partitions: int) -> None:
        """Creates the service's internal topics and changelogs; sets up store restores."""
        for spec in self.p.internal_topics:
            self.catalogue.register(spec)
        changelogs = {s: self.names(changelog_topic(self.p.name, s)) for s in self.p.stores}
        wanted: dict[str, dict[str, str]] = {self.names(s.name): {} for s in self.p.internal_topics}
        wanted |= {t: {"cleanup.policy": "compact"} for t in changelogs.values()}
        if not wanted:
            return
        admin = make_admin(self.kafka, f"{self.p.name}-setup")
        try:
            await admin.start()
            await create_named_topics(admin, wanted, partitions=partitions)
        finally:
            await admin.close()
        if self.p.stores:
            RocksMemory.configure(
                cache_mb=self.settings.state_cache_mb,
                write_buffer_mb=self.settings.state_write_buffer_mb,
            )
            self._restore_consumer = make_consumer(
                self.kafka,
                client_id=f"{self.p.name}-{self.settings.instance_id}-restore",
                fetch_max_wait_ms=50,  # a restore never idle-waits long for its last records
                **BOUNDED_FETCH,
            )
            await self._restore_consumer.start()
            self._stores = StoreManager(
                processor=self.p.name,
                stores=self.p.stores,
                physical=changelogs,
                state_dir=self.settings.state_dir / self.group_id,
                backend=self.settings.state_backend,
                consumer=self._restore_consumer,
            )
            self.p.task_stores = self._stores.open

    async def _check_copartitioned(self) -> int:
        consumer = make_consumer(self.kafka, client_id=f"{self.p.name}-check")
        try:
            await consumer.start()
            counts = {t: len(await partitions_of(consumer, self.names(t))) for t in self.p.inputs}
        finally:
            await stop_quietly(consumer)
        if len(set(counts.values())) > 1:
            raise ConfigError(
                f"input topics must have equal partition counts to be processed as tasks: {counts}"
            )
        return next(iter(counts.values()), 1)

    def _update_gauges(self) -> None:
        """The lag and timer gauges, at most every LAG_EVERY_S (the loop turns far more often)."""
        consumer = self._consumer
        now = time.monotonic()
        if consumer is None or now - self._lag_at < LAG_EVERY_S:
            return
        self._lag_at = now
        self._update_lag(consumer.assignment(), consumer)
        # A task keeps its time while it is rebuilt after a failure (timers failing again and
        # again must show), and loses it when the group gives it to another instance.
        ran = self._timers_ran
        for task in [t for t in ran if t not in self._wanted]:
            del ran[task]
        self.metrics.timers_ran.set(min(ran.values()) if ran else time.time())

    def _update_lag(self, assigned: set[TopicPartition], consumer: AIOKafkaConsumer) -> None:
        """Records behind the end per topic and per partition this instance owns, and each
        partition's committed offset; a topic or partition it no longer owns drops to 0 (per
        topic) or disappears (per partition), so no instance reports what another one carries."""
        lag: dict[str, int] = defaultdict(int)
        idle = self._running is None
        for tp in assigned:
            high = consumer.highwater(tp)
            position = self._positions.get(tp)
            if high is None or position is None:
                continue
            done = position
            if idle and tp.partition in self._tasks and tp.partition not in self._backlog:
                # Every record fetched is committed, so what lies between the committed offset
                # and the consumer's next fetch is commit markers (offsets no consumer is
                # given): a task that has done everything is 0 behind, not 1 per partition.
                fetched = self._fetch_position(tp)
                if fetched is not None and fetched > done:
                    done = fetched
            behind = max(0, high - done)
            lag[self.names.logical(tp.topic)] += behind
            children = self._partition_gauges.get(tp)
            if children is None:
                labels = (self.names.logical(tp.topic), str(tp.partition))
                children = (self._partition_lags(*labels), self._partition_offsets(*labels))
                self._partition_gauges[tp] = children
            children[0].set(behind)
            children[1].set(position)
        for tp in [tp for tp in self._partition_gauges if tp not in assigned]:
            del self._partition_gauges[tp]
            labels = (self.names.logical(tp.topic), str(tp.partition))
            self._partition_lags.remove(*labels)
            self._partition_offsets.remove(*labels)
        for topic in self._lag_topics - lag.keys():
            self.metrics.lag.labels(topic).set(0)
        for topic, value in lag.items():
            self.metrics.lag.labels(topic).set(value)
        self._lag_topics |= lag.keys()


def _bounded(outputs: list[_Pending]) -> list[_Pending]:
    """A record's outputs, refused as bad input if any would exceed Kafka's record limit (it
    would abort the transaction, and the task would retry the same record forever)."""
    for item in outputs:
        size = len(item.key or b"") + len(item.value or b"")
        if size > MAX_RECORD_BYTES:
            raise PermanentError(
                f"an output to {item.topic} would be {size} bytes (limit {MAX_RECORD_BYTES})",
                reason="OUTPUT_TOO_LARGE",
            )
    return outputs


def _queued(work: dict[int, tuple[list[_Fetched], bool]]) -> dict[str, float]:
    """A cycle's first phase (referrals_cycle_seconds): how long its oldest record had waited
    when it began, from the records' timestamps (none for a cycle of timers only)."""
    oldest = min(
        (m.timestamp for messages, _ in work.values() for _, m in messages if m.timestamp >= 0),
        default=None,
    )
    if oldest is None:
        return {}
    return {"queued": max(0.0, time.time() - oldest / 1000)}


def _is_transient(err: BaseException) -> bool:
    """Errors the broker or the network cause, which retrying can clear."""
    return isinstance(err, TimeoutError | KafkaError | OSError)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: StreamRuntime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Waits for the in-flight transaction, then flushes every task's timers while this
        # member still owns them (no other member can have fenced our producers yet). Tasks
        # are closed lazily in on_partitions_assigned, so a task that stays keeps its state.
        async with self.runtime._lock:
            await self.runtime._settle()
            self.runtime._bump()
            await self.runtime._flush_tasks()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.runtime.on_assigned(assigned)
