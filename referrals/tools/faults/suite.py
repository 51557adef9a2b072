"""One fault run: a broker of its own, the services as processes, the workload and the bad-input
corpus published while faults are injected on a timeline, then waiting, checking, reporting.

Timeline (fractions of the publishing window): SIGKILLs of random instances at random moments
over the whole window, each restarted 0.5 to 3 s later; the SMTP relay down at 0.15 for the
scale's outage; a zombie (one rewards instance SIGSTOPped past its session timeout, then
SIGCONT) at 0.25; one of two rewards instances killed at 0.4 (once the zombie is resumed) and
left down until the other has issued more payouts (it took over); the broker (or one node of
three) restarted at 0.55, not before the takeover is judged (it needs a broker); with
three brokers, one killed at 0.75 and started again. Services run with a 6 s session timeout
(the broker's minimum), a 20 s unknown-program and unknown-payout wait, and notifications retry
at most 5 s apart, so every consequence lands within the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import CorruptRecordException, RecordTooLargeError

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import TopicNames, create_topics
from referrals.platform.settings import KafkaSettings
from referrals.programs.document import parse_document, validate
from referrals.programs.put import put
from referrals.streams.kafka import make_admin, make_producer
from referrals.tools import broker
from referrals.tools.faults import corpus as corpus_mod
from referrals.tools.faults.check import Sent, check, payouts_seen
from referrals.tools.faults.inject import (
    Finance,
    Fleet,
    Instance,
    Mail,
    free_port,
    http_status,
    tasks_owned,
)
from referrals.tools.faults.report import FaultReport, Step
from referrals.tools.faults.workload import PROGRAM_DOC, Workload, generate

SESSION_TIMEOUT_MS = 6_000
PERMANENT = (CorruptRecordException, RecordTooLargeError)  # the broker refuses for good


@dataclass(frozen=True)
class Scale:
    name: str
    referrals: int
    kills: int
    publish_s: float  # how long publishing the workload and the corpus takes
    smtp_outage_s: float
    three_brokers: bool
    wait_s: float  # at most this long for every expected payout after publishing
    corpus_copies: int = 1
    partitions: int = 4
    # How long a record waits for its program or a result for its payout's owner before it is
    # dead-lettered (30 days for payouts in production). It must outlast the longest outage the
    # run injects: a result that arrives while its owner record's partition has no leader (a
    # broker of three killed) waits that long for it; at 20 s the long run dead-lettered five
    # real PAID results so.
    unknown_wait_s: float = 20


SCALES = {
    # About four minutes in all on a 2-core machine, broker start included: no 3-broker step.
    "bounded": Scale("bounded", 300, 22, 90, 60, False, 90),
    "standard": Scale("standard", 2_000, 40, 240, 60, True, 300, 2, unknown_wait_s=90),
    "long": Scale("long", 10_000, 120, 900, 60, True, 900, 3, unknown_wait_s=90),
}


def cluster_api() -> bool:
    """Whether this checkout's broker module runs three nodes (the `cluster` branch's API)."""
    return "nodes" in broker.BrokerConfig.model_fields and hasattr(broker, "kill_node")


class Run:
    def __init__(self, scale: Scale, out: Path, seed: int, show: Any) -> None:
        self.scale, self.out, self.seed, self.show = scale, out, seed, show
        self.rng = random.Random(seed)
        self.t0 = time.monotonic()
        self.three = scale.three_brokers and cluster_api()
        fields: dict[str, Any] = {
            "port": free_port(),
            "controller_port": free_port(),
            "data_dir": out / "kafka",
            "partitions": scale.partitions,
        }
        if self.three:
            fields["nodes"] = 3
        self.broker = broker.BrokerConfig(**fields)
        self.kafka = KafkaSettings(bootstrap_servers=self.broker.bootstrap)
        self.mail = Mail(free_port())
        self.fleet = Fleet(
            out,
            self.kafka,
            {"attribution": 2, "rewards": 2, "notifications": 1},
            {
                "{SERVICE}_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
                "{SERVICE}_UNKNOWN_PROGRAM_WAIT_S": str(self.scale.unknown_wait_s),
                "{SERVICE}_MAX_BATCH": "200",
                "REWARDS_UNKNOWN_PAYOUT_WAIT_S": str(self.scale.unknown_wait_s),
                "NOTIFICATIONS_RETRY_MAX_S": "5",
            },
        )
        self.finance = Finance(self.kafka)
        self.refused: list[str] = []  # corpus records the broker refused for good
        # Instances a step controls right now, by how many steps: the random kills leave them
        # alone. (A set let the zombie step's end release what the takeover still held.)
        self.held: Counter[str] = Counter()
        self.zombie_done = asyncio.Event()
        self.takeover_done = asyncio.Event()
        self.broker_down = False
        self.report = FaultReport(scale.name, scale.referrals, {})

    def at(self) -> float:
        return time.monotonic() - self.t0

    def step(self, kind: str, target: str, detail: str = "", ok: bool | None = None) -> Step:
        s = Step(round(self.at(), 1), kind, target, detail, ok)
        self.report.steps.append(s)
        self.show(f"  {s.at_s:7.1f} s  {kind:<22} {target:<18} {detail}")
        return s

    # -- set-up ------------------------------------------------------------------------------
    async def setup(self) -> None:
        if self.three:
            self.broker = broker.BrokerConfig(**{**self.broker.model_dump(), "nodes": 3})
        await asyncio.to_thread(broker.start, self.broker)
        self.kafka = KafkaSettings(bootstrap_servers=self.broker.bootstrap)
        self.fleet.kafka = self.finance.kafka = self.kafka
        self.show(f"broker{'s' if self.three else ''} up at {self.broker.bootstrap}")
        admin = make_admin(self.kafka, "faults")
        await admin.start()
        try:
            rf = 3 if self.three else 1
            await create_topics(
                admin, TopicNames(), partitions=self.scale.partitions, replication_factor=rf
            )
        finally:
            await admin.close()
        await put(self.kafka, validate(parse_document(PROGRAM_DOC, "faults")), "faults")
        self.mail.up()
        self.fleet.start_all(self.mail.port)
        late = await asyncio.to_thread(self.fleet.wait_ready, 120.0)
        if late:
            raise RuntimeError(f"not ready within 120 s: {late}; logs in {self.out / 'logs'}")
        self.show(f"services ready: {', '.join(i.name for i in self.fleet.instances)}")

    # -- publishing --------------------------------------------------------------------------
    async def publish(self, workload: Workload, bad: list[corpus_mod.BadRecord]) -> list[Sent]:
        codec = AvroCodec()
        items: list[tuple[str, bytes | None, bytes | None, corpus_mod.BadRecord | None]] = [
            (topic, key.encode(), codec.encode(record), None)
            for topic, key, record in workload.events
        ]
        for b in bad:  # interleaved with valid traffic, over the whole window
            items.insert(self.rng.randrange(len(items) + 1), (b.topic, b.key, b.value, b))
        sent: list[Sent] = []
        started, chunk = time.monotonic(), 100
        producer = await self._producer()
        try:
            for first in range(0, len(items), chunk):
                part = items[first : first + chunk]
                while part:
                    try:
                        results = await asyncio.wait_for(self._send(producer, part), 60)
                    except Exception:  # the broker is away: a fresh producer, the chunk again
                        await self._close(producer)
                        await asyncio.sleep(1.0)
                        producer = await self._producer()
                        continue
                    retry = []
                    for item, result in zip(part, results, strict=True):
                        if isinstance(result, BaseException):
                            if item[3] is not None and isinstance(result, PERMANENT):
                                # Refused for good by the broker (a null key on a compacted
                                # topic): it never reaches a service; accounted as refused.
                                b = item[3]
                                sent.append(Sent(b.cls, b.topic, -1, -1, "refused", b.reason))
                                self.refused.append(f"{b.cls} on {b.topic}: {result!r}")
                            else:
                                retry.append(item)
                        elif item[3] is not None:
                            b = item[3]
                            sent.append(
                                Sent(
                                    b.cls,
                                    b.topic,
                                    result.partition,
                                    result.offset,
                                    b.expect,
                                    b.reason,
                                )
                            )
                    if retry:
                        await asyncio.sleep(1.0)
                    part = retry
                ahead = (
                    started + self.scale.publish_s * (first + chunk) / len(items) - time.monotonic()
                )
                if ahead > 0:
                    await asyncio.sleep(ahead)
        finally:
            await self._close(producer)
        self.step(
            "published",
            "workload+corpus",
            f"{len(workload.events)} events, {len(sent)} bad records",
        )
        return sent

    async def _producer(self) -> AIOKafkaProducer:
        """Not idempotent: a resend after an outage may duplicate an event, which the
        contract's event_id de-duplication absorbs (and the payout check would catch)."""
        while True:
            producer = make_producer(
                self.kafka,
                client_id="faults-publisher",
                max_request_size=2 * 1024 * 1024,
                request_timeout_ms=20_000,
                enable_idempotence=False,
            )
            try:
                await producer.start()
                return producer
            except Exception:
                await self._close(producer)
                await asyncio.sleep(1.0)

    @staticmethod
    async def _close(producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 10)

    @staticmethod
    async def _send(producer: AIOKafkaProducer, part: list[Any]) -> list[Any]:
        """One chunk: send() itself can block (metadata, a full buffer) while the broker is
        away, so the caller bounds the whole of it."""
        names = TopicNames()
        futures = [await producer.send(names(t), v, key=k) for t, k, v, _ in part]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    async def payouts_now(self) -> int | None:
        """Payouts committed so far, or None while the broker cannot be read."""
        try:
            return len(await payouts_seen(self.kafka))
        except Exception:
            return None

    async def guarded(self, name: str, fault: Any) -> None:
        """A fault step that fails is recorded as failed; the run goes on."""
        try:
            await fault
        except Exception as err:
            self.step(name, "-", f"the step itself failed: {type(err).__name__}: {err}", ok=False)

    # -- faults ------------------------------------------------------------------------------
    async def _restart(self, inst: Instance, delay: float) -> None:
        await asyncio.sleep(delay)
        self.fleet.start(inst, self.mail.port)

    async def kills(self) -> None:
        moments = sorted(
            self.rng.uniform(0.03, 0.97) * self.scale.publish_s for _ in range(self.scale.kills)
        )
        restarts = []
        for when in moments:
            await asyncio.sleep(max(0.0, self.t_publish + when - time.monotonic()))
            choices = [i for i in self.fleet.instances if not self.held[i.name] and i.alive]
            if not choices:
                continue
            inst = self.rng.choice(choices)
            self.fleet.kill(inst)  # in the loop: the reaper never sees it half-done
            delay = self.rng.uniform(0.5, 3.0)
            self.step("sigkill", inst.name, f"restart after {delay:.1f} s")
            restarts.append(asyncio.create_task(self._restart(inst, delay)))
        await asyncio.gather(*restarts)

    async def smtp_outage(self) -> None:
        await self._until(0.15)
        self.mail.down()
        self.step(
            "smtp-down", f"127.0.0.1:{self.mail.port}", f"for {self.scale.smtp_outage_s:.0f} s"
        )
        await asyncio.sleep(self.scale.smtp_outage_s)
        self.mail.up()
        self.step("smtp-up", f"127.0.0.1:{self.mail.port}", "same port")

    async def zombie(self) -> None:
        await self._until(0.25)
        inst = self.fleet.of("rewards")[-1]
        self.held[inst.name] += 1
        try:
            if not inst.alive:
                self.fleet.start(inst, self.mail.port)
                await asyncio.sleep(5)
            pause = SESSION_TIMEOUT_MS / 1000 + 6
            self.fleet.pause(inst)
            self.step(
                "sigstop (zombie)",
                inst.name,
                f"{pause:.0f} s, session timeout {SESSION_TIMEOUT_MS} ms",
            )
            await asyncio.sleep(pause)
            self.fleet.resume(inst)
            self.step("sigcont", inst.name, "resumed past its session timeout")
        finally:
            self.held[inst.name] -= 1
            self.zombie_done.set()

    async def takeover(self) -> None:
        """One of two rewards instances killed and left down: the other must go on issuing."""
        await self._until(0.4)
        victim, other = self.fleet.of("rewards")
        self.held.update([victim.name, other.name])
        try:
            # Not while the other is the paused zombie or down: it must be able to take over.
            await self.zombie_done.wait()
            if not other.alive:
                self.fleet.start(other, self.mail.port)
            before = await self._payouts_readable()
            self.fleet.kill(victim)
            s = self.step(
                "sigkill (one of two)", victim.name, f"left down; {before} payouts so far"
            )
            # Taken over: the other issued more payouts, or (when upstream has little to give,
            # attribution being killed too) it owns every task and is ready.
            deadline = time.monotonic() + 60
            now, owned, took_all = before, None, False
            while time.monotonic() < deadline:
                await asyncio.sleep(2)
                read = await self.payouts_now()
                now = now if read is None else read
                owned = await asyncio.to_thread(tasks_owned, other.metrics_port)
                ready = await asyncio.to_thread(http_status, other.metrics_port, "/readyz")
                took_all = owned == self.scale.partitions and ready == 200
                if now > before + 5 or took_all:
                    break
            s.ok = now > before + 5 or took_all
            s.detail += (
                f"; {other.name} alone issued {now - before} more, owns {owned} of "
                f"{self.scale.partitions} tasks{' and is ready' if took_all else ''}"
            )
            self.fleet.start(victim, self.mail.port)
            self.step("restart", victim.name, "after the takeover")
        finally:
            self.held.subtract([victim.name, other.name])
            self.takeover_done.set()

    async def _payouts_readable(self, within: int = 30) -> int:
        """Payouts committed so far, reading again while the broker cannot be read."""
        for _ in range(int(within)):
            seen = await self.payouts_now()
            if seen is not None:
                return seen
            await asyncio.sleep(1.0)
        return 0

    async def broker_restart(self) -> None:
        await self._until(0.55)
        await self.takeover_done.wait()  # the takeover is judged with the broker up
        if self.three:
            api: Any = broker
            self.broker_down = True
            self.step("broker-node-stop", "node 1 of 3", "clean stop")
            await asyncio.to_thread(api.stop_node, self.broker, 1)
            await asyncio.sleep(10)
            await asyncio.to_thread(api.start_node, self.broker, 1, timeout=120)
            self.broker_down = False
            self.step("broker-node-start", "node 1 of 3", "back")
            return
        self.broker_down = True
        s = self.step("broker-stop", self.broker.bootstrap, "the only broker, clean stop")
        await asyncio.to_thread(broker.stop, self.broker)
        s.detail += f" (down after {self.at() - s.at_s:.1f} s)"
        await asyncio.sleep(5)
        await asyncio.to_thread(broker.start, self.broker)
        self.broker_down = False
        self.step("broker-start", self.broker.bootstrap, "same data, same port")

    async def broker_kill(self) -> None:
        if not self.scale.three_brokers:
            return
        await self._until(0.75)
        if not self.three:
            self.step(
                "broker-node-kill",
                "node 2 of 3",
                "NOT RUN: this checkout has no three-broker cluster (merge branch `cluster`)",
                ok=False,
            )
            return
        api: Any = broker
        self.step("broker-node-kill", "node 2 of 3", "SIGKILL")
        await asyncio.to_thread(api.kill_node, self.broker, 2)
        await asyncio.sleep(20)
        await asyncio.to_thread(api.start_node, self.broker, 2, timeout=120)
        self.step("broker-node-start", "node 2 of 3", "back")

    async def reaper(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for what in self.fleet.reap(self.mail.port):
                self.step("unexpected-exit", what.split()[0], what + "; started again", ok=False)
            await asyncio.sleep(1.0)

    async def _until(self, fraction: float) -> None:
        await asyncio.sleep(
            max(0.0, self.t_publish + fraction * self.scale.publish_s - time.monotonic())
        )

    # -- the run -----------------------------------------------------------------------------
    async def run(self) -> FaultReport:
        self.show(
            f"== fault suite, scale {self.scale.name}: {self.scale.referrals} referrals, "
            f"{self.scale.kills} kills; out {self.out}"
        )
        now = datetime.now(UTC)
        workload = generate(self.scale.referrals, self.seed, now)
        bad = corpus_mod.build(workload, now, self.seed, self.scale.corpus_copies)
        self.report.outcomes = workload.outcomes
        self.report.notes += [
            f"SMTP outage {self.scale.smtp_outage_s:.0f} s; session timeout "
            f"{SESSION_TIMEOUT_MS} ms; unknown-program and unknown-payout waits "
            f"{self.scale.unknown_wait_s:.0f} s",
            f"{len(bad)} bad records in {len({b.cls for b in bad})} classes on "
            f"{len({b.topic for b in bad})} input topics",
        ]
        if self.scale.three_brokers and not self.three:
            self.report.notes.append("three-broker steps not run: no cluster API in this checkout")
        stop = asyncio.Event()
        background: list[asyncio.Task[None]] = []
        try:
            await self.setup()
            background = [
                asyncio.create_task(self.finance.run(stop)),
                asyncio.create_task(self.reaper(stop)),
            ]
            self.t_publish = time.monotonic()
            faults = [
                asyncio.create_task(self.guarded(name, c))
                for name, c in (
                    ("sigkill", self.kills()),
                    ("smtp-down", self.smtp_outage()),
                    ("sigstop (zombie)", self.zombie()),
                    ("sigkill (one of two)", self.takeover()),
                    ("broker-restart", self.broker_restart()),
                    ("broker-node-kill", self.broker_kill()),
                )
            ]
            sent = await self.publish(workload, bad)
            self.report.notes += [f"refused by the broker: {r}" for r in self.refused]
            await asyncio.gather(*faults)
            await self.wait(workload)
            late = await asyncio.to_thread(self.fleet.wait_ready, 60.0)
            self.report.services = self.fleet.health()
            if late:
                self.report.notes.append(f"not ready 60 s after the last fault: {late}")
            self.report.checked = await check(self.kafka, workload, sent)
        except Exception as err:
            self.report.error = f"{type(err).__name__}: {err}"
            if not self.report.services:
                self.report.services = self.fleet.health()
        finally:
            stop.set()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self.report.paid = len(self.finance.paid)
            self.report.notes.append(f"finance sent {self.finance.duplicates} PAID results twice")
            self.report.mails_delivered = self.mail.delivered
            self.report.mail_duplicates = self.mail.duplicates
            codes = await asyncio.to_thread(self.fleet.stop)
            self.report.notes.append(f"exit codes at the end: {codes}")
            if self.mail.running:
                self.mail.down()
            await asyncio.to_thread(broker.stop, self.broker)
            shutil.rmtree(self.broker.data_dir, ignore_errors=True)
            shutil.rmtree(self.out / "state", ignore_errors=True)
            self.report.duration_s = self.at()
        return self.report

    async def wait(self, workload: Workload) -> None:
        """Until every expected payout is committed and paid, or the scale's timeout; and at
        least past the unknown-program wait, so those dead letters are written."""
        started = time.monotonic()
        deadline = started + self.scale.wait_s
        expected = set(workload.expected)
        while time.monotonic() < deadline:
            try:
                seen = await payouts_seen(self.kafka)
            except Exception:
                await asyncio.sleep(3)
                continue
            paid = {p for p, _ in self.finance.paid}
            settled = expected <= seen and expected <= paid
            if settled and time.monotonic() - started >= self.scale.unknown_wait_s + 10:
                break
            await asyncio.sleep(3)
        self.report.waited_s = time.monotonic() - started
        self.step("waited", "payouts", f"{self.report.waited_s:.0f} s for every expected payout")


def run_suite(scale: str, out: Path, seed: int = 7, show: Any = print) -> FaultReport:
    out.mkdir(parents=True, exist_ok=True)
    run = Run(SCALES[scale], out, seed, show)
    try:
        report = asyncio.run(run.run())
    except KeyboardInterrupt:
        report = run.report
        report.error = report.error or "interrupted (SIGINT or SIGTERM) before the end"
        report.duration_s = run.at()
    report.write(out)
    show("")
    show(report.table())
    show(f"\nreport: {out / 'fault-report.md'} (and fault-report.json)")
    return report
