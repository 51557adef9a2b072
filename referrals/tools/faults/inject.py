"""The processes a fault run drives and the faults it injects into them.

`Fleet`: every service instance as its own process (`referrals run SERVICE`), each with its own
metrics port, state directory and log, sharing its service's consumer group; SIGKILL, SIGSTOP,
SIGCONT and restart per instance; an instance that exits on its own is noticed, recorded and
restarted (a finding: services are to stay up). `Mail`: the program year's SMTP catcher,
counting messages by Message-ID, stopped and started again on the same port. `Finance`: pays
every payout (PAID on rewards.payout-results.v1), riding out broker outages.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from referrals.contract.avro import AvroCodec
from referrals.contract.records import PayoutCommand, PayoutResult, PayoutStatus
from referrals.contract.topics import PAYOUT_RESULTS, PAYOUTS, TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer, make_producer, partitions_of
from referrals.tools.program_year import ROOT, MailCatcher


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_status(port: int, path: str) -> int | None:
    """The HTTP status of GET path, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None


def tasks_owned(port: int) -> int | None:
    """The tasks (input partitions) an instance owns, from its /metrics; None: no answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
            text = response.read().decode()
    except OSError:
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("referrals_assigned_partitions")
    ]
    return int(sum(values)) if values else None


def last_error(log: Path, tail_bytes: int = 65536) -> str:
    """Why a process died, from the end of its log: the exception line of the last traceback,
    else the message of the last ERROR or CRITICAL line; "" when neither is there."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        if line.startswith("Traceback "):
            after = [x for x in lines[i + 1 :] if x.strip() and not x.startswith((" ", "\t"))]
            return after[-1].strip()[:300] if after else ""
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("ERROR", "CRITICAL"):
                return str(entry.get("msg", ""))[:300]
    return ""


@dataclass
class Instance:
    service: str
    number: int
    metrics_port: int
    unsubscribe_port: int
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    stopped: bool = False  # SIGSTOPped (a zombie)
    starts: int = 0
    kills: int = 0
    unexpected_exits: list[int] = field(default_factory=list)  # exit codes

    @property
    def name(self) -> str:
        return f"{self.service}-{self.number}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Fleet:
    """The services as separate processes: `counts` instances of each."""

    def __init__(
        self, work: Path, kafka: KafkaSettings, counts: dict[str, int], env: dict[str, str]
    ) -> None:
        self.work, self.kafka, self.extra_env = work, kafka, env
        # Every notifications instance signs and checks links with the same secret (required).
        self.unsubscribe_secret = secrets.token_urlsafe(32)
        self.instances = [
            Instance(service, n, free_port(), free_port())
            for service, count in counts.items()
            for n in range(1, count + 1)
        ]
        (work / "logs").mkdir(parents=True, exist_ok=True)

    def of(self, service: str) -> list[Instance]:
        return [i for i in self.instances if i.service == service]

    def env(self, inst: Instance, smtp_port: int) -> dict[str, str]:
        up = inst.service.upper()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REFERRALS_"))}
        return {
            **base,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": self.kafka.topic_prefix,
            f"{up}_METRICS_PORT": str(inst.metrics_port),
            f"{up}_STATE_DIR": str(self.work / "state" / inst.name),
            f"{up}_GROUP_ID": f"faults-{inst.service}",
            f"{up}_INSTANCE_ID": inst.name,
            "NOTIFICATIONS_SMTP_PORT": str(smtp_port),
            "NOTIFICATIONS_UNSUBSCRIBE_PORT": str(inst.unsubscribe_port),
            "NOTIFICATIONS_UNSUBSCRIBE_SECRET": self.unsubscribe_secret,
            **{k.replace("{SERVICE}", up): v for k, v in self.extra_env.items()},
        }

    def start(self, inst: Instance, smtp_port: int) -> None:
        if inst.alive:
            return
        if inst.log is None:
            inst.log = (self.work / "logs" / f"{inst.name}.log").open("ab")
        inst.proc = subprocess.Popen(
            [sys.executable, "-m", "referrals.tools.cli", "run", inst.service],
            env=self.env(inst, smtp_port),
            stdout=inst.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        inst.starts += 1
        inst.stopped = False

    def start_all(self, smtp_port: int) -> None:
        for inst in self.instances:
            self.start(inst, smtp_port)

    def kill(self, inst: Instance) -> None:
        """SIGKILL (a stopped process dies as well)."""
        proc, inst.proc = inst.proc, None  # down on purpose: not an unexpected exit
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        inst.kills += 1
        inst.stopped = False

    def pause(self, inst: Instance) -> None:
        assert inst.proc is not None
        inst.proc.send_signal(signal.SIGSTOP)
        inst.stopped = True

    def resume(self, inst: Instance) -> None:
        assert inst.proc is not None
        inst.proc.send_signal(signal.SIGCONT)
        inst.stopped = False

    def reap(self, smtp_port: int) -> list[str]:
        """Instances that exited without being killed: recorded, then started again."""
        found = []
        for inst in self.instances:
            if inst.proc is not None and inst.proc.poll() is not None:
                inst.unexpected_exits.append(int(inst.proc.returncode))
                why = last_error(self.work / "logs" / f"{inst.name}.log")
                found.append(
                    f"{inst.name} exited with status {inst.proc.returncode}"
                    + (f" ({why})" if why else "")
                )
                self.start(inst, smtp_port)
        return found

    def health(self) -> dict[str, dict[str, Any]]:
        """Per instance: running, /healthz (liveness) and /readyz (readiness) statuses."""
        return {
            inst.name: {
                "running": inst.alive and not inst.stopped,
                "live": http_status(inst.metrics_port, "/healthz") == 200,
                "ready": http_status(inst.metrics_port, "/readyz") == 200,
                "starts": inst.starts,
                "kills": inst.kills,
                "unexpected_exits": list(inst.unexpected_exits),
            }
            for inst in self.instances
        }

    def wait_ready(self, within: float) -> list[str]:
        """Waits for every instance's /readyz; returns those not ready in time."""
        deadline = time.monotonic() + within
        pending = {i.name: i for i in self.instances}
        while pending and time.monotonic() < deadline:
            for name, inst in list(pending.items()):
                if http_status(inst.metrics_port, "/readyz") == 200:
                    del pending[name]
            time.sleep(0.3)
        return sorted(pending)

    def stop(self) -> dict[str, int]:
        for inst in self.instances:
            if inst.proc is not None and inst.proc.poll() is None:
                if inst.stopped:
                    inst.proc.send_signal(signal.SIGCONT)
                inst.proc.terminate()
        codes = {}
        for inst in self.instances:
            if inst.proc is None:
                continue
            try:
                codes[inst.name] = inst.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                inst.proc.kill()
                codes[inst.name] = inst.proc.wait()
            if inst.log is not None:
                inst.log.close()
                inst.log = None
        return codes


class Mail(MailCatcher):
    """The SMTP catcher, counting messages by Message-ID; `down()` and `up()` on one port."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.port = port
        self.ids: Counter[str] = Counter()
        self.running = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        headers = BytesHeaderParser().parsebytes(envelope.original_content or envelope.content)
        self.ids[str(headers.get("Message-ID", "")).strip()] += 1
        return await super().handle_DATA(server, session, envelope)

    def up(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.running = True

    def down(self) -> None:
        self.controller.stop()
        self.running = False

    @property
    def delivered(self) -> int:
        return len(self.ids)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.ids.values() if n > 1)


class Finance:
    """Answers every payout (read_committed) with PAID, once per (payout_id, attempt), and every
    `twice_every`-th one twice (a duplicate result, which must change nothing and never be
    dead-lettered); on any client error (a broker outage) it rebuilds its clients and carries
    on from the start."""

    def __init__(self, kafka: KafkaSettings, twice_every: int = 10) -> None:
        self.kafka = kafka
        self.paid: set[tuple[str, int]] = set()
        self.errors = 0
        self.twice_every = twice_every
        self.duplicates = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._loop(stop)
            except Exception:
                self.errors += 1
                await asyncio.sleep(1.0)

    async def _loop(self, stop: asyncio.Event) -> None:
        names, codec = TopicNames(self.kafka.topic_prefix), AvroCodec()
        consumer: AIOKafkaConsumer = make_consumer(self.kafka, client_id="faults-finance")
        producer: AIOKafkaProducer = make_producer(self.kafka, client_id="faults-finance")
        await consumer.start()
        try:
            await producer.start()
            parts = await partitions_of(consumer, names(PAYOUTS))
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=300, max_records=2000)
                for messages in batch.values():
                    for msg in messages:
                        payout = codec.decode(msg.value, "PayoutCommand")
                        assert isinstance(payout, PayoutCommand)
                        key = (payout.payout_id, payout.attempt)
                        if key in self.paid:
                            continue
                        result = PayoutResult(key[0], key[1], PayoutStatus.PAID, datetime.now(UTC))
                        copies = 2 if len(self.paid) % self.twice_every == 0 else 1
                        for _ in range(copies):
                            await producer.send_and_wait(
                                names(PAYOUT_RESULTS), codec.encode(result), key=key[0].encode()
                            )
                        self.paid.add(key)
                        self.duplicates += copies - 1
        finally:
            await consumer.stop()
            await producer.stop()
