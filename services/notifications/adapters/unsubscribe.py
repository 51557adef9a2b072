"""Signed unsubscribe links and the endpoint that honours them.

A token is `<payload>.<mac>`, both base64url without padding: the payload is the JSON array
`[advocate_id, program_id, issued_at_seconds]`, the mac its HMAC-SHA256 under
NOTIFICATIONS_UNSUBSCRIBE_SECRET. Nobody can unsubscribe someone else by editing a link, and
the service keeps no table of issued tokens. A link expires
NOTIFICATIONS_UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS after its email was sent (default 90, at least
the 30 days the law gives a sender to honour it).

`GET /unsubscribe?token=...` (the advocate opens the link, or a mail scanner follows it) only
shows a page asking to confirm, with a form that POSTs to the same URL. `POST
/unsubscribe?token=...` unsubscribes: from that form, or straight from the mail client (RFC
8058 one-click: the email's `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, the body
`List-Unsubscribe=One-Click`). It publishes an `UnsubscribeRequest` keyed by advocate_id to
`notifications.unsubscribes.v1` (method ONE_CLICK or LINK); the processor then records the
advocate's sticky opt-out. The request_id is deterministic per token, so the same link used
twice is the same request. A malformed, forged or expired token answers 400, and no page
shows personal data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from urllib.parse import quote

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from referrals.contract.avro import AvroCodec
from referrals.contract.records import UnsubscribeRequest
from referrals.contract.topics import UNSUBSCRIBES, TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_producer, started
from services.notifications.adapters.config import NotificationsSettings
from services.notifications.adapters.metrics import NotificationMetrics

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Token:
    advocate_id: str
    program_id: str
    issued_at: datetime


class BadToken(ValueError):
    """A token that was not signed with our secret, is malformed or has expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def sign(secret: str, advocate_id: str, program_id: str, issued_at: datetime) -> str:
    row = [advocate_id, program_id, int(issued_at.timestamp())]
    payload = _b64(json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{_mac(secret, payload)}"


# base64url: a payload (two ids of at most 256 characters, up to 4 bytes each in UTF-8, and a
# time: under 2,800 characters) and a 32-byte MAC (43 characters).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,4096}\.[A-Za-z0-9_-]{43}")


def verify(secret: str, token: str, now: datetime, max_age_days: int = 0) -> Token:
    """The token's contents if we signed it (and, with a max age, it is recent enough)."""
    if not _TOKEN.fullmatch(token):
        raise BadToken("the link is malformed")
    payload, _, mac = token.partition(".")
    if not hmac.compare_digest(_mac(secret, payload), mac):
        raise BadToken("the link's signature does not match")
    try:
        advocate_id, program_id, issued_s = json.loads(_unb64(payload))
        valid = isinstance(advocate_id, str) and isinstance(program_id, str) and advocate_id
        if not valid or type(issued_s) is not int:
            raise ValueError("unexpected contents")
    except (ValueError, TypeError, binascii.Error) as err:  # signed by us, so a bug: say so
        raise BadToken(f"the link's contents are malformed: {err}") from err
    issued_at = datetime.fromtimestamp(issued_s, UTC)
    if max_age_days and now - issued_at > timedelta(days=max_age_days):
        raise BadToken("the link has expired")
    return Token(advocate_id, program_id, issued_at)


def link(base_url: str, token: str) -> str:
    return f"{base_url}{'&' if '?' in base_url else '?'}token={quote(token, safe='')}"


def request_for(token: Token, method: str, now: datetime) -> UnsubscribeRequest:
    key = f"{len(token.advocate_id)}:{token.advocate_id}|{token.program_id}|{token.issued_at}"
    return UnsubscribeRequest(
        request_id="us-" + hashlib.sha256(key.encode()).hexdigest()[:32],
        advocate_id=token.advocate_id,
        program_id=token.program_id,
        method=method,
        token_issued_at=token.issued_at,
        requested_at=now,
    )


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        f"<title>{title}</title></head><body>{body}</body></html>\n"
    )


_DONE = _page(
    "Unsubscribed", "<p>You are unsubscribed: you will get no more referral program messages.</p>"
)
_BAD = _page(
    "Invalid link",
    "<p>This unsubscribe link is not valid or has expired. Please use the link from your most "
    "recent email.</p>",
)
_ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058: what a mail client's POST says
# The pages hold a token (in the form) and no personal data: nothing to cache, to send as a
# Referer, to frame (a framed form could be clicked unseen) or to run.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
}


def confirmation(token: str) -> str:
    """The page a GET shows: a question and a button that POSTs the same link."""
    action = escape(f"?token={quote(token, safe='')}")
    return _page(
        "Unsubscribe",
        "<p>Do you want to stop receiving referral program messages?</p>"
        f'<form method="post" action="{action}">'
        '<button type="submit">Unsubscribe</button></form>',
    )


class UnsubscribeEndpoint:
    """The HTTP endpoint and its Kafka producer (idempotent, not transactional)."""

    def __init__(
        self,
        settings: NotificationsSettings,
        kafka: KafkaSettings,
        metrics: NotificationMetrics,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.kafka = kafka
        self.metrics = metrics
        self.clock = clock
        self.topic = TopicNames(kafka.topic_prefix)(UNSUBSCRIBES)
        self.codec = AvroCodec()
        self._producer: AIOKafkaProducer | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        # The broker may be away: the runtime calls start again later, and nothing is left open.
        self._producer = await started(
            make_producer(self.kafka, client_id="notifications-unsubscribe")
        )
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        # Several instances on one host share the port (SO_REUSEPORT): any of them can take a
        # request, since all that happens is a record on the shared topic.
        site = web.TCPSite(
            self._runner,
            self.settings.unsubscribe_host,
            self.settings.unsubscribe_port,
            reuse_port=True,
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.settings.unsubscribe_port
        log.info("unsubscribe endpoint up", extra={"port": self.port})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4096)  # a form with one field, or none
        app.router.add_route("GET", "/unsubscribe", self.confirm)
        app.router.add_route("POST", "/unsubscribe", self.handle)
        return app

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._producer is not None:
            await self._producer.stop()

    def _token(self, request: web.Request, now: datetime) -> Token | None:
        try:
            return verify(
                self.settings.unsubscribe_secret,
                request.query.get("token", ""),
                now,
                self.settings.unsubscribe_token_max_age_days,
            )
        except BadToken as err:
            self.metrics.unsubscribes.labels("invalid").inc()
            log.info("unsubscribe link refused", extra={"error": str(err)})
            return None

    async def confirm(self, request: web.Request) -> web.Response:
        """GET: the confirmation page (nothing is recorded: mail scanners follow links)."""
        token = self._token(request, self.clock())
        if token is None:
            return _html(400, _BAD)
        return _html(200, confirmation(request.query["token"]))

    async def handle(self, request: web.Request) -> web.Response:
        """POST: the unsubscribe itself, from the confirmation form or a mail client."""
        now = self.clock()
        token = self._token(request, now)
        if token is None:
            return _html(400, _BAD)
        one_click = _ONE_CLICK in (await request.text())
        record = request_for(token, "ONE_CLICK" if one_click else "LINK", now)
        assert self._producer is not None
        try:
            await self._producer.send_and_wait(
                self.topic, self.codec.encode(record), key=token.advocate_id.encode()
            )
        except (KafkaError, TimeoutError, OSError):  # the broker is away: ask to try again
            self.metrics.unsubscribes.labels("failed").inc()
            log.exception("unsubscribe request not recorded")
            return web.Response(
                status=503, text="Please try again in a minute.\n", headers=_HEADERS
            )
        self.metrics.unsubscribes.labels("accepted").inc()
        log.info("unsubscribe requested", extra={"advocate_id": token.advocate_id})
        return _html(200, _DONE)


def _html(status: int, page: str) -> web.Response:
    return web.Response(status=status, text=page, content_type="text/html", headers=_HEADERS)
