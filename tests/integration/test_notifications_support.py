"""Real components for the notifications tests (no tests here): a local SMTP server (aiosmtpd,
really speaking SMTP), a local webhook receiver (aiohttp), the service as a process, records.

Both servers run in threads with their own event loops, so they keep answering while a test
waits on something else.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiosmtpd.controller import Controller

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    MatchedBy,
    NotificationSent,
    Record,
    ReferralStatus,
    ReferralStatusChanged,
)
from referrals.contract.topics import ADVOCATES, NOTIFICATIONS_SENT, STATUS
from referrals.platform.settings import KafkaSettings
from referrals.programs.model import MessageKind
from services.notifications.domain.ids import notification_id

from ..conftest import REPO, env_for
from .helpers import produce, read_topic, run_cli

PROGRAM_ID = "acme-b2b"
WEBHOOK_SECRET = "whsec-test-0123456789"
UNSUBSCRIBE_SECRET = "unsub-test-secret"
CODEC = AvroCodec()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- SMTP -----------------------------------------------------------------------------------------
@dataclass
class Mail:
    recipients: list[str]
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        content: str = body.get_content()  # type: ignore[attr-defined]
        return content.replace("\r\n", "\n")


@dataclass
class SmtpBehaviour:
    refuse_first: int = 0  # answer 451 to this many RCPTs (any address), then accept
    reject: set[str] = field(default_factory=set)  # answer 550 for these addresses
    hold: set[str] = field(default_factory=set)  # store, then do not answer until released
    delay_s: float = 0.0  # think this long before answering DATA (a slow server)
    released: threading.Event = field(default_factory=threading.Event)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(  # aiosmtpd's hook names
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        b = self.sink.behaviour
        with self.sink.lock:
            self.sink.rcpt_attempts += 1
            if address in b.reject:
                return "550 5.1.1 <" + address + ">: mailbox unavailable"
            if b.refuse_first > 0:
                b.refuse_first -= 1
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.sink.lock:
            self.sink.mails.append(Mail(list(envelope.rcpt_tos), message))
        b = self.sink.behaviour
        await asyncio.sleep(b.delay_s)
        if b.hold & set(envelope.rcpt_tos):
            # Stored, but the client never hears so: like a server whose 250 is lost when the
            # sender crashes. Only a resend can complete the exchange.
            await asyncio.to_thread(b.released.wait)
        return "250 2.0.0 queued"


class SmtpSink:
    """A real SMTP server on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self, port: int | None = None, behaviour: SmtpBehaviour | None = None) -> None:
        self.port = port or free_port()
        self.behaviour = behaviour or SmtpBehaviour()
        self.lock = threading.Lock()
        self.mails: list[Mail] = []
        self.rcpt_attempts = 0
        self._controller: Controller | None = None

    def start(self) -> SmtpSink:
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        self.behaviour.released.set()
        if self._controller is not None:
            self._controller.stop()

    def received(self) -> list[Mail]:
        with self.lock:
            return list(self.mails)

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.received() if address in m.recipients]

    async def wait_for(self, count: int, within: float = 30.0, address: str | None = None) -> None:
        """Until `count` mails (to `address`) arrived."""
        await self.wait_until(lambda mails: len(mails) >= count, within, address)

    async def wait_for_ids(self, count: int, within: float = 30.0) -> None:
        """Until mails with `count` different Message-IDs arrived."""
        await self.wait_until(lambda mails: len({m.message_id for m in mails}) >= count, within)

    async def wait_until(
        self, done: Callable[[list[Mail]], bool], within: float, address: str | None = None
    ) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if done(self.to(address) if address else self.received()):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"gave up waiting after {within} s: {len(self.received())} mails")


# -- webhooks -------------------------------------------------------------------------------------
@dataclass
class Hook:
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


class WebhookSink:
    """A webhook receiver on 127.0.0.1 answering 204 (or the statuses queued in `answers`)."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/referrals"

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self.lock:
            self.hooks.append(Hook(dict(request.headers), body))
            status = self.answers.pop(0) if self.answers else 204
        return web.Response(status=status)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/referrals", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> WebhookSink:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def received(self) -> list[Hook]:
        with self.lock:
            return list(self.hooks)

    async def wait_for(self, count: int, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if len(self.received()) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"expected {count} webhooks, got {self.received()}")


@contextmanager
def servers(smtp: SmtpSink | None = None) -> Iterator[tuple[SmtpSink, WebhookSink]]:
    mail = (smtp or SmtpSink()).start()
    hooks = WebhookSink().start()
    try:
        yield mail, hooks
    finally:
        mail.stop()
        hooks.stop()


# -- the program and records ----------------------------------------------------------------------
def put_program(
    settings: KafkaSettings, directory: Path, webhook_url: str | None, **notifications: Any
) -> None:
    """The example program, with EMAIL (and WEBHOOK) and a generous rate limit, put via the CLI."""
    document = yaml.safe_load((REPO / "deploy/programs/acme-b2b.yaml").read_text())
    notes = document["notifications"]
    notes["rate_limit"] = {"max_per_day": 100}
    if webhook_url is not None:
        notes["channels"] = ["EMAIL", "WEBHOOK"]
        notes["webhook"] = {
            "url": webhook_url,
            "secret_env": "WEBHOOK_SECRET_TEST",
            "timeout_s": 2,
            "max_attempts": 3,
        }
    notes.update(notifications)
    path = directory / "program.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run_cli(settings, "program", "put", str(path))
    assert result.returncode == 0, result.stderr


def profile(advocate: str, email_address: str, *, opted_out: bool = False) -> AdvocateProfile:
    return AdvocateProfile(
        program_id=PROGRAM_ID,
        advocate_id=advocate,
        email=email_address,
        display_name=f"Alex {advocate}",
        email_sha256="0" * 64,
        opted_out=opted_out,
        tax_form_on_file=True,
        updated_at=datetime.now(UTC),
        locale="en-US",
    )


def status(
    advocate: str, referral: str, kind: ReferralStatus, *, at: datetime | None = None, **extra: Any
) -> ReferralStatusChanged:
    when = at or datetime.now(UTC)
    return ReferralStatusChanged(
        status_id=f"st-{advocate}-{referral}-{kind.value}",
        referral_id=referral,
        program_id=extra.pop("program_id", PROGRAM_ID),
        advocate_id=advocate,
        prospect_id=f"prospect-{referral}",
        channel=Channel.SHARE_URL,
        matched_by=MatchedBy.CODE,
        status=kind,
        config_version=1,
        occurred_at=when,
        **extra,
    )


def nid(advocate: str, referral: str, kind: MessageKind, step: int = 0) -> str:
    return notification_id(advocate, referral, kind, step)


def message_id(advocate: str, referral: str, kind: MessageKind, step: int = 0) -> str:
    return f"<{nid(advocate, referral, kind, step)}@referrals.local>"


async def publish(settings: KafkaSettings, *records: Record) -> None:
    """Each record to its topic, keyed by its advocate: profiles first, then statuses, each
    topic in the order given."""
    for topic in (ADVOCATES, STATUS):
        items = [
            (record.advocate_id.encode(), CODEC.encode(record))  # type: ignore[union-attr]
            for record in records
            if (topic == ADVOCATES) == isinstance(record, AdvocateProfile)
        ]
        if items:
            await produce(settings, topic, items)


async def sent_records(
    settings: KafkaSettings, expect: int | None = None, within: float = 20.0
) -> list[NotificationSent]:
    messages = await read_topic(settings, NOTIFICATIONS_SENT, expect=expect, within=within)
    out = [CODEC.decode(m.value) for m in messages]
    assert all(isinstance(r, NotificationSent) for r in out)
    return out  # type: ignore[return-value]


# -- the service as a process ---------------------------------------------------------------------
class Service:
    """`referrals run notifications` against the test broker, the sinks and a state directory."""

    def __init__(self, settings: KafkaSettings, tmp: Path, smtp_port: int, **extra: str) -> None:
        self.settings = settings
        self.metrics_port = free_port()
        self.unsubscribe_port = free_port()
        self.log = tmp / "notifications.log"
        self.env = env_for(
            settings,
            NOTIFICATIONS_GROUP_ID=f"{settings.topic_prefix}notifications",
            NOTIFICATIONS_METRICS_PORT=str(self.metrics_port),
            NOTIFICATIONS_UNSUBSCRIBE_PORT=str(self.unsubscribe_port),
            NOTIFICATIONS_UNSUBSCRIBE_BASE_URL=f"http://127.0.0.1:{self.unsubscribe_port}/unsubscribe",
            NOTIFICATIONS_UNSUBSCRIBE_SECRET=UNSUBSCRIBE_SECRET,
            NOTIFICATIONS_SMTP_PORT=str(smtp_port),
            NOTIFICATIONS_STATE_DIR=str(tmp / "state"),
            NOTIFICATIONS_RETRY_BASE_S="0.2",
            NOTIFICATIONS_RETRY_MAX_S="1",
            WEBHOOK_SECRET_TEST=WEBHOOK_SECRET,
            # The test receivers listen on loopback over http: the operator's exception.
            NOTIFICATIONS_WEBHOOK_ALLOW_HOSTS="127.0.0.1",
            **extra,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, extra: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "referrals.tools.cli", "run", "notifications"],
                cwd=REPO,
                env={**self.env, **extra},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    async def start(self, **extra: str) -> Service:
        """Starts the process; returns once it is ready (its consumer has started)."""
        self.proc = self._spawn(extra)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the service exited:\n{self.logs()}"
            if (await self.http("GET", "/readyz", self.metrics_port))[0] == 200:
                return self
            await asyncio.sleep(0.2)
        raise AssertionError(f"not ready within 60 s:\n{self.logs()}")

    def logs(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM: a clean stop, which must exit 0."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        code = self.proc.wait(timeout=60)
        assert code == 0, f"exit status {code}:\n{self.logs()}"

    async def metrics(self) -> str:
        return (await self.http("GET", "/metrics", self.metrics_port))[1]

    async def metric(self, name: str, **labels: str) -> float:
        total = 0.0
        for line in (await self.metrics()).splitlines():
            if not (line.startswith(name + "{") or line.startswith(name + " ")):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    async def wait_metric(
        self, name: str, at_least: float, within: float = 30.0, **labels: str
    ) -> None:
        deadline = time.monotonic() + within
        value = 0.0
        while time.monotonic() < deadline:
            value = await self.metric(name, **labels)
            if value >= at_least:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name}{labels} = {value}, expected >= {at_least}:\n{self.logs()}")

    async def http(self, method: str, path: str, port: int, body: bytes = b"") -> tuple[int, str]:
        url = path if path.startswith("http") else f"http://127.0.0.1:{port}{path}"
        return await asyncio.to_thread(_request, method, url, body)


def _request(method: str, url: str, body: bytes = b"") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=body if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


@contextmanager
def running(service: Service) -> Iterator[Service]:
    try:
        yield service
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.proc.terminate()
            try:
                service.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                service.proc.kill()
