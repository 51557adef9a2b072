"""The main job: a whole program year through the running system, compressed into minutes.

`run_year` puts the program, generates the year (`referrals.tools.simulate`, ground truth kept
apart), starts a local SMTP server that catches the mail, the three services as separate
processes, a finance simulator that pays each payout (the advocates' and the friends') and an
operator who approves or denies the rewards held for fraud review per the year's plan; replays
the year's events at a steady pace with live progress (events published, referrals attributed,
rewards paid, messages sent), pausing the program for the planned stretch of the year;
waits for the system to drain; then reads the topics — never the generator — into the program
report and compares each figure with the ground truth. `make demo` and the end-to-end test
both run it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.programs.model import ProgramStatus
from referrals.programs.put import load_program, put
from referrals.streams.kafka import make_producer
from referrals.tools.caught_up import CaughtUp, Group
from referrals.tools.doctor.targets import service as doctor_service
from referrals.tools.report import read_topics, write
from referrals.tools.report_compare import Comparison, compare
from referrals.tools.report_figures import compute
from referrals.tools.simulate import DEMO_PROGRAM, simulate
from referrals.tools.simulate_model import Simulation
from referrals.tools.year_actors import Finance, Operator
from referrals.tools.year_portal import portal_view, write_tokens

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("attribution", "rewards", "notifications", "api")


@dataclass
class YearPlan:
    work: Path  # logs, service state, the report
    advocates: int = 5850
    seed: int = 1
    seconds: float = 75.0  # how long replaying the year's events takes
    program: Path = DEMO_PROGRAM
    metrics_ports: dict[str, int] = field(
        default_factory=lambda: {
            "attribution": 9201,
            "rewards": 9202,
            "notifications": 9203,
            "api": 9204,
        }
    )
    api_port: int = 9300  # the gRPC API, which shows the top advocate's portal at the end
    smtp_port: int = 1025
    unsubscribe_port: int = 9213
    # After the replay, the system catches up for as long as it makes progress; the demo gives
    # up (and says so) only when nothing moved for this long. A fixed limit cut the largest
    # programs off while they were still paying (DEMO_ADVOCATES=115230: 180 s after a replay
    # that had far outrun the services).
    drain_s: float = 180.0
    show: Callable[[str], None] = print


@dataclass
class YearOutcome:
    report: Path
    comparisons: list[Comparison]
    mails: int
    published: int
    portal: str = ""  # the top advocate's portal view, as the gRPC API served it
    portal_agrees: bool = False  # the API's "issued" for them is what finance was asked to pay

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons if c.exact)


class MailCatcher:
    """A real SMTP server on localhost that accepts and counts every message."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"

    def __enter__(self) -> MailCatcher:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


Principals = Callable[[str], KafkaSettings]  # who -> how they reach Kafka (as that principal)


class ServiceProcesses:
    """The three services and the gRPC API as separate processes, logs and state under the work
    folder (the API with a tokens file holding one portal token: `token`); each reaches Kafka
    with the settings `principals` gives for its name."""

    def __init__(
        self, plan: YearPlan, kafka: KafkaSettings, principals: Principals | None = None
    ) -> None:
        """`principals`: None when every process reaches Kafka alike, with `kafka`."""
        self.plan, self.kafka = plan, kafka
        self.principals: Principals = principals or (lambda name: kafka)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[Any] = []
        self.token = write_tokens(plan.work / "api-tokens.txt")
        # The notifications service refuses to start without its own secret: one per run.
        self.unsubscribe_secret = secrets.token_urlsafe(32)

    def start(self) -> None:
        (self.plan.work / "logs").mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            self.start_process(name)
        self._await_ready(90.0)

    def start_process(self, name: str) -> None:
        """Starts service `name` (again, after a stop), its output appended to its log."""
        log = (self.plan.work / "logs" / f"{name}.log").open("ab")
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "referrals.tools.cli", "run", name],
            env=self.env(name),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def env(self, name: str) -> dict[str, str]:
        """The environment service `name` runs with: this run's ports, state, group, secret,
        and the Kafka settings of its principal."""
        up = name.upper()
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
            **self.principals(name).as_env(),
            f"{up}_METRICS_PORT": str(self.plan.metrics_ports[name]),
            f"{up}_STATE_DIR": str(self.plan.work / "state" / name),
            f"{up}_GROUP_ID": f"{self.kafka.topic_prefix}referrals-{name}",
            "NOTIFICATIONS_SMTP_PORT": str(self.plan.smtp_port),
            "NOTIFICATIONS_UNSUBSCRIBE_PORT": str(self.plan.unsubscribe_port),
            "NOTIFICATIONS_UNSUBSCRIBE_SECRET": self.unsubscribe_secret,
            "API_GRPC_PORT": str(self.plan.api_port),
            "API_TOKENS_FILE": str(self.plan.work / "api-tokens.txt"),
        }

    def _await_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        pending = set(SERVICES)
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited; see {self.plan.work / 'logs' / name}.log")
                if _http_ok(self.plan.metrics_ports[name], "/readyz"):
                    self.plan.show(f"{name:<14} ready  :{self.plan.metrics_ports[name]}/metrics")
                    pending.discard(name)
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"not ready within {within:.0f} s: {sorted(pending)}")

    def metric(self, service: str, name: str) -> float:
        """Sum of a metric's samples on a service's /metrics (0 when it has none yet)."""
        body = _http_get(self.plan.metrics_ports[service], "/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith((name + "{", name + " "))
        )

    def stop(self) -> dict[str, int]:
        codes = stop_processes(self.procs)
        for log in self.logs:
            log.close()
        return codes


def stop_processes(
    procs: Mapping[str, subprocess.Popen[Any]], within: float = 60.0
) -> dict[str, int]:
    """SIGTERM to every process still running, then their exit statuses (SIGKILL for one that
    has not exited within `within` seconds)."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    codes = {}
    for name, proc in procs.items():
        try:
            codes[name] = proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = proc.wait()
    return codes


def _http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return str(response.read().decode())


def _http_ok(port: int, path: str) -> bool:
    try:
        _http_get(port, path)
        return True
    except OSError:
        return False


Hook = Callable[[], Awaitable[None]]


async def replay(
    kafka: KafkaSettings,
    sim: Simulation,
    seconds: float,
    progress: Any,
    hooks: Mapping[int, Sequence[Hook]] | None = None,
) -> int:
    """Publishes the year's events in arrival order, spread evenly over `seconds`; before the
    arrival at index i (or after the last one, for i = their count) it flushes and runs
    `hooks[i]` in order, the time they take not counted against the pace."""
    names, codec = TopicNames(kafka.topic_prefix), AvroCodec()
    producer = make_producer(kafka, client_id="demo-replay", linger_ms=10)
    await producer.start()
    arrivals, hooks = sim.arrivals, hooks or {}
    started = time.monotonic()
    try:
        for i, (topic, key, record) in enumerate(arrivals, start=1):
            if i - 1 in hooks:
                started += await _run_hooks(producer, hooks[i - 1])
            await producer.send(names(topic), codec.encode(record), key=key.encode())
            if i % 200 == 0 or i == len(arrivals):
                progress.published = i
                ahead = started + seconds * i / len(arrivals) - time.monotonic()
                if ahead > 0:
                    await producer.flush()
                    await asyncio.sleep(ahead)
        await _run_hooks(producer, hooks.get(len(arrivals), ()))
        await producer.flush()
    finally:
        await producer.stop()
    return len(arrivals)


async def _run_hooks(producer: Any, hooks: Sequence[Hook]) -> float:
    """Runs `hooks` after flushing what was sent; returns how long they took."""
    began = time.monotonic()
    if hooks:
        await producer.flush()
    for hook in hooks:
        await hook()
    return time.monotonic() - began


async def _quiet(
    services: ServiceProcesses,
    within: float = 30.0,
    names: Sequence[str] = SERVICES,
    still_s: float = 1.0,
) -> None:
    """Waits until the services `names` have processed what was published: their records in
    and out unchanged for `still_s` (at most `within` seconds)."""
    deadline, last, still_since = time.monotonic() + within, -1.0, time.monotonic()
    while time.monotonic() < deadline:
        now = await asyncio.to_thread(_activity, services, names)
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= still_s:
            return
        await asyncio.sleep(min(0.2, still_s / 5))


STREAMS = ("attribution", "rewards", "notifications")
DECIDING = ("attribution", "rewards")


async def _followed(services: ServiceProcesses, version: int, within: float = 10.0) -> None:
    """Waits until the three stream services apply the program's config `version` (their
    referrals_program_version gauge; the demo runs one program), at most `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            versions = await asyncio.to_thread(
                lambda: [services.metric(n, "referrals_program_version") for n in STREAMS]
            )
        except OSError:
            versions = []
        if versions and min(versions) >= version:
            return
        await asyncio.sleep(0.05)


def _activity(services: ServiceProcesses, names: Sequence[str] = SERVICES) -> float:
    try:
        return sum(
            services.metric(name, metric)
            for name in names
            for metric in ("referrals_records_in_total", "referrals_records_out_total")
        )
    except OSError:
        return -1.0


def pause_hooks(
    plan: YearPlan, kafka: KafkaSettings, services: ServiceProcesses, sim: Simulation
) -> dict[int, list[Hook]]:
    """The planned pause (`sim.truth["pause"]`): the PAUSED version before its first arrival,
    the ACTIVE one before the first arrival after it, each once the deciding services have
    processed every earlier arrival, so that the paused stretch is the planned one and not
    wherever a lagging service was."""
    pause = sim.truth["pause"]
    names = TopicNames(kafka.topic_prefix)
    deciding = []
    for name in DECIDING:
        service = doctor_service(name, services.env(name))
        assert service.group is not None
        topics = tuple(names(t) for t in service.inputs)
        deciding.append(Group(service.group, topics, services.principals(name)))

    def publish(status: ProgramStatus) -> Hook:
        async def hook() -> None:
            # Until caught up, however long: a pause placed while a service still works
            # through earlier arrivals holds the wrong stretch (DEMO_ADVOCATES=115230 with a
            # 30 s limit: 1,197 rewards held for the pause instead of 697, and 35 won and
            # refunded inside that longer pause were cancelled instead of paid and clawed back).
            # Only the service whose decisions the program's status changes (rewards: a paused
            # program's rewards are held) and the one feeding it its statuses (attribution).
            # The messages of the earlier arrivals need not be sent first, and waiting for them
            # held the replay for seconds at each end of the pause. Caught up exactly (their
            # groups' offsets past every record of their inputs), not "records in and out
            # still for 0.5 s": that guess cost the half second and more at each end.
            async with CaughtUp(deciding) as caught_up:
                if not await caught_up.wait(within=3600.0):
                    plan.show(f"{status.value}: attribution and rewards not caught up in an hour")
            doc = replace(load_program(plan.program), status=status)
            config = await put(kafka, doc, "demo")
            plan.show(f"program {config.program_id} v{config.version}: {status.value}")
            await _followed(services, config.version)

        return hook

    hooks: dict[int, list[Hook]] = {}
    hooks.setdefault(pause["first_arrival"], []).append(publish(ProgramStatus.PAUSED))
    hooks.setdefault(pause["end_arrival"], []).append(publish(ProgramStatus.ACTIVE))
    return hooks


@dataclass
class Progress:
    total: int
    owed: int
    published: int = 0
    statuses: float = 0
    issued: float = 0
    paid: int = 0
    mails: int = 0
    friends_owed: int = 0
    friends_paid: int = 0
    clawbacks_owed: int = 0
    clawbacks: int = 0
    reviews_owed: int = 0
    reviewed: int = 0

    def render(self) -> str:
        rows = [
            ("events published", self.published, self.total),
            ("statuses produced", int(self.statuses), None),
            ("rewards issued", int(self.issued), self.owed),
            ("rewards paid", self.paid, self.owed),
            ("friends paid", self.friends_paid, self.friends_owed),
            ("clawbacks", self.clawbacks, self.clawbacks_owed),
            ("fraud reviews", self.reviewed, self.reviews_owed),
            ("messages sent", self.mails, None),
        ]
        return "\n".join(_bar(label, value, whole) for label, value, whole in rows)


def _bar(label: str, value: int, whole: int | None, width: int = 30) -> str:
    if not whole:
        return f"  {label:<18} {value:>8,}"
    filled = min(width, round(width * value / whole))
    return f"  {label:<18} [{'#' * filled}{'.' * (width - filled)}] {value:>7,}/{whole:,}"


async def _watch(
    progress: Progress,
    services: ServiceProcesses,
    finance: Finance,
    operator: Operator,
    mail: MailCatcher,
    stop: asyncio.Event,
    show: Callable[[str], None],
) -> None:
    tty = sys.stdout.isatty() and show is print
    last_print = 0.0
    while not stop.is_set():
        try:
            progress.statuses = services.metric("attribution", "referrals_records_out_total")
            progress.issued = services.metric("rewards", "rewards_payouts_issued_total")
        except OSError:
            pass
        progress.paid, progress.mails = len(finance.paid), mail.count
        progress.friends_paid, progress.clawbacks = (
            len(finance.friends_paid),
            len(finance.clawbacks),
        )
        progress.reviewed = len(operator.decided)
        if tty:
            print("\033[8F" if last_print else "", end="")
            print(progress.render(), flush=True)
            last_print = time.monotonic()
        elif time.monotonic() - last_print >= 5:
            show(progress.render())
            last_print = time.monotonic()
        await asyncio.sleep(0.5)


async def _drain(progress: Progress, plan: YearPlan) -> None:
    """Waits until payouts caught up with what is owed and nothing has moved for a while; gives
    up when nothing has moved for `plan.drain_s` without that (saying so)."""
    still_since, last = time.monotonic(), (-1.0, -1.0, -1, -1, -1, -1)
    while True:
        p = progress
        now = (p.statuses, p.issued, p.paid, p.mails, p.friends_paid, p.clawbacks)
        if now != last:
            still_since, last = time.monotonic(), now
        settled = (
            p.paid >= p.owed
            and p.issued >= p.owed
            and p.friends_paid >= p.friends_owed
            and p.clawbacks >= p.clawbacks_owed
            and p.reviewed >= p.reviews_owed
        )
        if settled and time.monotonic() - still_since >= 5:
            return
        if time.monotonic() - still_since >= plan.drain_s:
            plan.show(
                f"nothing moved for {plan.drain_s:.0f} s and the year is not settled: "
                f"giving up (see the services' logs)\n{progress.render()}"
            )
            return
        await asyncio.sleep(0.5)


async def run_year(
    plan: YearPlan, kafka: KafkaSettings, principals: Principals | None = None
) -> YearOutcome:
    """The year on the cluster `kafka` reaches. With `principals` (a secured cluster), each
    party acts as its own principal: the operator puts the program, reviews holds and reads
    the report; the platform replays the events; finance pays; each service and the API run
    as themselves."""
    as_ = principals or (lambda _who: kafka)
    operator_kafka = as_("operator")
    config = await put(operator_kafka, load_program(plan.program), "demo")
    sim = simulate(plan.advocates, plan.seed, datetime.now(UTC), load_program(plan.program))
    owed = int(sim.truth["rewards_owed"])
    plan.show(
        f"program {config.program_id} v{config.version}; {plan.advocates:,} advocates, "
        f"{len(sim.arrivals):,} events over the year, {owed} rewards owed (ground truth)"
    )
    truth = sim.truth
    progress = Progress(
        total=len(sim.arrivals),
        owed=owed,
        friends_owed=truth["friend_rewards"]["count"],
        clawbacks_owed=truth["clawbacks"]["count"],
        reviews_owed=truth["fraud_holds"],
    )
    services = ServiceProcesses(plan, kafka, as_)
    finance, stop = Finance(as_("finance")), asyncio.Event()
    operator = Operator(operator_kafka, config.program_id, truth["operator"]["deny"], plan.show)
    with MailCatcher(plan.smtp_port) as mail:
        await asyncio.to_thread(services.start)
        try:
            background = [
                asyncio.create_task(finance.run(stop)),
                asyncio.create_task(operator.run(stop)),
                asyncio.create_task(
                    _watch(progress, services, finance, operator, mail, stop, plan.show)
                ),
            ]
            hooks = pause_hooks(plan, operator_kafka, services, sim)
            published = await replay(as_("platform"), sim, plan.seconds, progress, hooks)
            await _drain(progress, plan)
            stop.set()
            await asyncio.gather(*background)
            plan.show(progress.render())
            portal, agrees = await _portal(plan, services, finance)
        finally:
            stop.set()
            codes = await asyncio.to_thread(services.stop)
            plan.show("services stopped: " + ", ".join(f"{n} {c}" for n, c in codes.items()))
        inputs = await read_topics(operator_kafka, config.program_id)
        report = compute(inputs)
        page = write(report, plan.work / "report", sim.truth)
        comparisons = compare(report, sim.truth)
        return YearOutcome(page, comparisons, mail.count, published, portal, agrees)


async def _portal(plan: YearPlan, services: ServiceProcesses, finance: Finance) -> tuple[str, bool]:
    """The portal of the advocate finance paid the most, through the gRPC API, and whether
    the API shows them issued what finance was asked to pay."""
    if not finance.earned:
        return "(no advocate was paid)", False
    advocate_id, issued = max(finance.earned.items(), key=lambda item: (item[1], item[0]))
    text, shown = await portal_view(plan.api_port, services.token, advocate_id, issued)
    return text, shown == issued
