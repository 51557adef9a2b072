"""What the attribution integration tests share: the service as a process, the CLI to publish
events and put programs, the status topic read back, and metrics scraped from /metrics."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    Record,
    ReferralStatusChanged,
    ShareEvent,
)
from referrals.contract.topics import STATUS
from referrals.platform.settings import KafkaSettings

from ..conftest import REPO, env_for
from .helpers import read_topic, run_cli

ACME = REPO / "deploy" / "programs" / "acme-b2b.yaml"
PROGRAM = "acme-b2b"  # window 90 days, FIRST_TOUCH
CODEC = AvroCodec()
T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)  # in the past: valid input whenever tests run
DAY = timedelta(days=1)


# -- events ---------------------------------------------------------------------------------------
def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def profile(advocate_id: str, *, program_id: str = PROGRAM) -> AdvocateProfile:
    return AdvocateProfile(
        program_id=program_id,
        advocate_id=advocate_id,
        email=f"{advocate_id}@example.com",
        display_name=advocate_id,
        email_sha256=sha(f"{advocate_id}@example.com"),
        opted_out=False,
        tax_form_on_file=True,
        updated_at=T0 - 300 * DAY,
        owner_rep_id=f"rep-of-{advocate_id}",
    )


def share(
    event_id: str,
    advocate_id: str,
    channel: Channel,
    code: str,
    *,
    at: datetime = T0 - 10 * DAY,
    email: str | None = None,
    program_id: str = PROGRAM,
) -> ShareEvent:
    return ShareEvent(event_id, program_id, advocate_id, channel, code, at, email)


def conversion(
    event_id: str,
    prospect_id: str,
    *,
    at: datetime = T0,
    code: str | None = None,
    email: str | None = None,
    declared: str | None = None,
    program_id: str = PROGRAM,
) -> ConversionEvent:
    return ConversionEvent(event_id, program_id, prospect_id, at, code, email, declared)


def deal(
    event_id: str,
    prospect_id: str,
    stage: DealStage,
    *,
    at: datetime = T0 + DAY,
    amount_minor: int | None = 1_250_000,
    declared: str | None = None,
) -> DealEvent:
    currency = "USD" if amount_minor is not None else None
    return DealEvent(
        event_id,
        PROGRAM,
        f"deal-{prospect_id}",
        prospect_id,
        stage,
        at,
        amount_minor,
        currency,
        declared,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Service:
    """One `referrals run attribution` process."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            body: str = r.read().decode()
            return body

    def metric(self, name: str, **labels: str) -> float:
        """The sample `name` with these labels (0 when absent, or the service is not up)."""
        try:
            body = self.metrics()
        except OSError:
            return 0.0
        for line in body.splitlines():
            if line.startswith((name + "{", name + " ")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM: the clean stop; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=60)


def spawn(settings: KafkaSettings, state_dir: Path, **env: str) -> Service:
    """Starts the service in the group `<prefix>attribution` and waits until it is ready."""
    port = _free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / f"service-{port}.log"
    variables = {
        "ATTRIBUTION_METRICS_PORT": str(port),
        "ATTRIBUTION_GROUP_ID": f"{settings.topic_prefix}attribution",
        "ATTRIBUTION_STATE_DIR": str(state_dir),
        # A SIGKILLed member's tasks move after this; 6 s is the broker's minimum.
        "ATTRIBUTION_SESSION_TIMEOUT_MS": "6000",
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "referrals.tools.cli", "run", "attribution"],
            cwd=REPO,
            env=env_for(settings, **variables),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    service = Service(proc, port, log)
    _wait_ready(service)
    return service


def _wait_ready(service: Service, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise AssertionError(f"the service exited:\n{service.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/readyz", timeout=2):
                return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.2)
    raise AssertionError(f"not ready within {within} s:\n{service.log.read_text()[-3000:]}")


def put_program(settings: KafkaSettings, path: Path = ACME) -> None:
    done = run_cli(settings, "program", "put", str(path))
    assert done.returncode == 0, done.stderr


def publish(settings: KafkaSettings, topic: str, records: Iterable[Record], *flags: str) -> None:
    """Publishes records with the CLI, as JSON lines (the way platform teams would)."""
    lines = "\n".join(json_line(r) for r in records) + "\n"
    done = run_cli(settings, "publish", topic, "-", *flags, stdin=lines)
    assert done.returncode == 0, done.stderr


def json_line(record: Record) -> str:
    body = {}
    for f in fields(record):  # type: ignore[arg-type]
        value = getattr(record, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Enum):
            value = value.value
        if value is not None:
            body[f.name] = value
    return json.dumps(body)


async def statuses(
    settings: KafkaSettings, *, expect: int | None = None, within: float = 30.0
) -> list[ReferralStatusChanged]:
    """The status topic's records (read_committed), decoded, in partition order."""
    found = await read_topic(settings, STATUS, expect=expect, within=within, quiet=1.0)
    out = []
    for message in found:
        record = CODEC.decode(message.value)
        assert isinstance(record, ReferralStatusChanged)
        out.append(record)
    return out


async def eventually(check: Callable[[], bool], within: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.1)


async def eventually_async(
    check: Callable[[], Awaitable[bool]], within: float = 90.0, what: str = ""
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.2)
