"""The unsubscribe endpoint (a GET asks, a POST unsubscribes: RFC 8058 one-click or the page's
form; bad tokens answer 400) and what the service refuses to start with."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from notifications_builders import NOW

from referrals.contract.avro import AvroCodec
from referrals.contract.records import UnsubscribeRequest
from referrals.platform.errors import ConfigError
from referrals.platform.metrics import RuntimeMetrics
from referrals.platform.settings import KafkaSettings, load
from services.notifications import app
from services.notifications.adapters import unsubscribe
from services.notifications.adapters.config import (
    DEV_UNSUBSCRIBE_SECRET,
    NotificationsSettings,
    check_startup,
)
from services.notifications.adapters.metrics import NotificationMetrics

SECRET = "a-long-enough-test-secret"
SETTINGS = NotificationsSettings(unsubscribe_secret=SECRET)


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, key, value))

    async def stop(self) -> None:
        pass


@dataclass
class Page:
    status: int
    text: str
    headers: dict[str, str]


@asynccontextmanager
async def endpoint(days_later: int = 0) -> AsyncIterator[tuple[str, FakeProducer]]:
    """The endpoint's app on a local port (its clock `days_later`): base URL and producer."""
    metrics = NotificationMetrics(RuntimeMetrics("t").registry)
    now = NOW + timedelta(days=days_later)
    served = unsubscribe.UnsubscribeEndpoint(SETTINGS, KafkaSettings(), metrics, lambda: now)
    producer = FakeProducer()
    served._producer = producer  # type: ignore[assignment]
    runner = web.AppRunner(served.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/unsubscribe", producer
    finally:
        await runner.cleanup()


async def call(method: str, url: str, body: bytes | None = None) -> Page:
    def fetch() -> Page:
        request = urllib.request.Request(url, method=method, data=body)
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return Page(answer.status, answer.read().decode(), dict(answer.headers))
        except urllib.error.HTTPError as err:
            return Page(err.code, err.read().decode(), dict(err.headers))

    return await asyncio.to_thread(fetch)


def token() -> str:
    return unsubscribe.sign(SECRET, "adv-1", "acme-b2b", NOW)


def methods(producer: FakeProducer) -> list[str]:
    codec = AvroCodec()
    decoded = [codec.decode(value) for _, _, value in producer.sent]
    return [r.method for r in decoded if isinstance(r, UnsubscribeRequest)]


async def test_a_get_asks_for_confirmation_and_records_nothing() -> None:
    async with endpoint() as (url, producer):
        page = await call("GET", unsubscribe.link(url, token()))
    assert page.status == 200
    assert '<form method="post" action="?token=' in page.text and "<button" in page.text
    assert "adv-1" not in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert producer.sent == []


async def test_a_one_click_post_or_the_pages_form_unsubscribes() -> None:
    async with endpoint() as (url, producer):
        link = unsubscribe.link(url, token())
        one_click = await call("POST", link, b"List-Unsubscribe=One-Click")
        form = await call("POST", link, b"")
    assert (one_click.status, form.status) == (200, 200)
    assert "You are unsubscribed" in one_click.text
    assert methods(producer) == ["ONE_CLICK", "LINK"]
    assert {key for _, key, _ in producer.sent} == {b"adv-1"}


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        token()[:-43] + "é" * 43,  # a non-ASCII MAC (it answered 500)
        token()[:-1] + "%00",
        "x" * 5000 + "." + "A" * 43,
        unsubscribe.sign("another secret entirely", "adv-1", "acme-b2b", NOW),
    ],
    ids=["empty", "garbage", "non-ascii-mac", "nul", "too-long", "other-secret"],
)
async def test_a_malformed_or_forged_token_answers_400_to_get_and_post(bad: str) -> None:
    async with endpoint() as (url, producer):
        link = f"{url}?token={urllib.request.quote(bad, safe='')}"
        answers = [await call("GET", link), await call("POST", link, b"")]
    assert [a.status for a in answers] == [400, 400]
    assert "not valid or has expired" in answers[0].text
    assert producer.sent == []


async def test_a_link_expires_after_the_maximum_age() -> None:
    assert SETTINGS.unsubscribe_token_max_age_days == 90
    async with endpoint(days_later=89) as (url, _):
        assert (await call("GET", unsubscribe.link(url, token()))).status == 200
    async with endpoint(days_later=91) as (url, producer):
        assert (await call("POST", unsubscribe.link(url, token()), b"")).status == 400
    assert producer.sent == []


def test_links_must_live_at_least_thirty_days() -> None:
    with pytest.raises(ConfigError, match="NOTIFICATIONS_UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS='0'"):
        load(NotificationsSettings, env={"NOTIFICATIONS_UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS": "0"})


# -- start-up -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("", "is not set"),
        (DEV_UNSUBSCRIBE_SECRET, "is the public development default"),
        ("short", "is shorter than 16 characters"),
    ],
)
def test_the_service_refuses_a_missing_default_or_short_unsubscribe_secret(
    secret: str, why: str
) -> None:
    with pytest.raises(ConfigError, match=f"NOTIFICATIONS_UNSUBSCRIBE_SECRET {why}"):
        check_startup(NotificationsSettings(unsubscribe_secret=secret), {})
    check_startup(SETTINGS, {})


def test_smtp_credentials_require_starttls_or_tls() -> None:
    creds = {"unsubscribe_secret": SECRET, "smtp_username": "u", "smtp_password": "p"}
    with pytest.raises(ConfigError, match="would be sent in clear"):
        check_startup(NotificationsSettings(**creds), {})
    check_startup(NotificationsSettings(**creds, smtp_starttls=True), {})
    check_startup(NotificationsSettings(**creds, smtp_tls=True), {})


def test_a_bad_webhook_allow_list_stops_the_start_naming_the_entry() -> None:
    settings = NotificationsSettings(unsubscribe_secret=SECRET, webhook_allow_hosts="crm, a/b")
    with pytest.raises(ConfigError, match="NOTIFICATIONS_WEBHOOK_ALLOW_HOSTS: 'a/b'"):
        check_startup(settings, {})


def test_a_webhook_secret_left_in_the_renamed_variable_stops_the_start() -> None:
    with pytest.raises(ConfigError, match="REFERRALS_WEBHOOK_SECRET is set but WEBHOOK_SECRET_"):
        check_startup(SETTINGS, {"REFERRALS_WEBHOOK_SECRET": "s"})
    check_startup(SETTINGS, {"REFERRALS_WEBHOOK_SECRET": "s", "WEBHOOK_SECRET_REFERRALS": "s"})


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_main_exits_2_naming_the_variable_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restored_logging: None
) -> None:
    monkeypatch.delenv("NOTIFICATIONS_UNSUBSCRIBE_SECRET", raising=False)
    assert app.main() == 2
    assert "NOTIFICATIONS_UNSUBSCRIBE_SECRET is not set" in capsys.readouterr().err


async def test_a_start_without_the_broker_raises_a_retriable_error_and_leaves_nothing_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runtime calls `startup` again after a broker error: a failed start must not leave
    a producer running or the port bound (nothing listens on the bootstrap port here)."""
    made: list[AIOKafkaProducer] = []

    def recording(*args: object, **kwargs: object) -> AIOKafkaProducer:
        made.append(unsubscribe_make_producer(*args, **kwargs))
        return made[-1]

    unsubscribe_make_producer = unsubscribe.make_producer
    monkeypatch.setattr(unsubscribe, "make_producer", recording)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port}")
    metrics = NotificationMetrics(RuntimeMetrics("t").registry)
    served = unsubscribe.UnsubscribeEndpoint(SETTINGS, kafka, metrics, lambda: NOW)
    with pytest.raises(KafkaError):
        await served.start()
    assert served._producer is None and served._runner is None
    assert len(made) == 1 and made[0]._closed is True
