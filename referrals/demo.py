"""`make demo`: the whole system on a local broker, from nothing, then everything stopped.

1. a fresh local Kafka broker (its own data directory under .demo/, port 9092 unless
   DEMO_KAFKA_PORT says otherwise), every topic of the contract, the example B2B program;
2. the three services as separate processes (logs in .demo/logs/);
3. sample advocate profiles, shares, conversions and deals published with the CLI's code, and a
   deliberately malformed record;
4. what arrived: each service's consumed-record counters from its /metrics endpoint, a tail of
   the shares topic, and the malformed record in `referral.shares.v1.dlq` with its reason;
5. everything stopped cleanly (also on Ctrl-C).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from referrals import broker
from referrals.avro import AvroCodec
from referrals.cli import quiet_client_logs
from referrals.kafka import make_admin
from referrals.program_put import load_program, put
from referrals.publish import prepare, publish
from referrals.settings import KafkaSettings
from referrals.tail import tail
from referrals.topics import (
    ADVOCATES,
    CONVERSIONS,
    DEALS,
    SHARES,
    TopicNames,
    create_topics,
    dlq_of,
)

ROOT = broker.REPO_ROOT
DEMO = ROOT / ".demo"
SAMPLES = ROOT / "deploy" / "samples"
PROGRAM = ROOT / "deploy" / "programs" / "acme-b2b.yaml"
SERVICES = {"attribution": 9201, "rewards": 9202, "notifications": 9203}
INPUTS = [
    (ADVOCATES, "advocates"),
    (SHARES, "shares"),
    (CONVERSIONS, "conversions"),
    (DEALS, "deals"),
]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        body = response.read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith(("referrals_records_in_total", "referrals_dead_letters_total")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Demo:
    def __init__(self) -> None:
        port = int(os.environ.get("DEMO_KAFKA_PORT", "9092"))
        self.broker = broker.BrokerConfig(port=port, data_dir=DEMO / "kafka")
        self.kafka = KafkaSettings(bootstrap_servers=self.broker.bootstrap)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def run(self) -> int:
        try:
            self.start_platform()
            self.start_services()
            asyncio.run(self.publish_and_show())
            return 0
        finally:
            self.stop_all()

    def start_platform(self) -> None:
        say("Starting a fresh local Kafka broker (KRaft, jars from Maven Central)")
        if self.broker.pid_file.exists():
            broker.stop(self.broker)
        shutil.rmtree(DEMO, ignore_errors=True)
        (DEMO / "logs").mkdir(parents=True)
        t0 = time.monotonic()
        pid = broker.start(self.broker)
        print(f"broker up at {self.broker.bootstrap} (pid {pid}) in {time.monotonic() - t0:.1f} s")
        asyncio.run(self._topics_and_program())

    async def _topics_and_program(self) -> None:
        admin = make_admin(self.kafka, "demo")
        await admin.start()
        try:
            created = await create_topics(admin, TopicNames(), partitions=6)
        finally:
            await admin.close()
        print(f"created {len(created)} topics (6 partitions each; .dlq beside each)")
        config = await put(self.kafka, load_program(PROGRAM), "demo")
        print(f"put program {config.program_id} version {config.version} from {PROGRAM.name}")

    def start_services(self) -> None:
        say("Starting the three services as separate processes")
        for name, port in SERVICES.items():
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
                f"{name.upper()}_METRICS_PORT": str(port),
            }
            log = (DEMO / "logs" / f"{name}.log").open("wb")
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "referrals.cli", "run", name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + 60
        pending = set(SERVICES)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                if self.procs[name].poll() is not None:
                    raise SystemExit(f"{name} exited; see {DEMO / 'logs' / name}.log")
                if _ready(SERVICES[name]):
                    print(f"{name:<14} ready  http://127.0.0.1:{SERVICES[name]}/metrics")
                    pending.discard(name)
            time.sleep(0.2)
        if pending:
            raise SystemExit(f"not ready within 60 s: {sorted(pending)}; logs in {DEMO / 'logs'}")

    async def publish_and_show(self) -> None:
        say("Publishing sample events with the CLI's validation (JSON lines -> Avro)")
        codec = AvroCodec()
        total = 0
        for topic, name in INPUTS:
            lines = (SAMPLES / f"{name}.jsonl").read_text().splitlines()
            total += await publish(self.kafka, topic, prepare(topic, lines, codec))
            print(f"{topic:<26} {len([ln for ln in lines if ln.strip()])} records")
        bad = prepare(SHARES, (SAMPLES / "malformed.txt").read_text().splitlines(), codec, raw=True)
        await publish(self.kafka, SHARES, bad)
        print(f"{SHARES:<26} 1 malformed record (not Avro), on purpose")

        say("What the services consumed (from their /metrics endpoints)")
        await self._await_counts(total + 1)
        for name, port in SERVICES.items():
            for metric, value in sorted(_metrics(port).items()):
                label = metric.split("{", 1)[1].rstrip("}")
                kind = "dead-lettered" if "dead_letters" in metric else "consumed"
                print(f"{name:<14} {kind:<14} {int(value):>3}  {label}")

        say(f"tail {SHARES} --from-beginning (read_committed, as JSON)")
        await tail(self.kafka, SHARES, from_beginning=True, max_records=3, timeout_s=5)

        say(f"The malformed record, in {dlq_of(SHARES)} with its reason")
        await tail(self.kafka, dlq_of(SHARES), from_beginning=True, max_records=1, timeout_s=10)

    async def _await_counts(self, expected_attribution: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = sum(
                v
                for k, v in _metrics(SERVICES["attribution"]).items()
                if "records_in" in k and "programs" not in k
            )
            if seen >= expected_attribution:
                return
            await asyncio.sleep(0.3)
        print("(not every record was consumed within 30 s; see .demo/logs)")

    def stop_all(self) -> None:
        say("Stopping everything")
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            print(f"{name:<14} stopped (exit status {code})")
        if broker.stop(self.broker):
            print(f"broker stopped; its data and the service logs stay in {DEMO}")


def main() -> int:
    # Ctrl-C reaches this process and the service processes alike; `finally` stops the rest.
    quiet_client_logs()
    try:
        return Demo().run()
    except KeyboardInterrupt:
        print("\ninterrupted; everything was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
