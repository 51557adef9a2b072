"""Webhooks to the company's own systems: a signed JSON POST per message.

The receiver authenticates and de-duplicates with three headers:
- `X-Referrals-Timestamp`: Unix seconds when the attempt was made (each retry signs anew);
- `X-Referrals-Signature`: `sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` under the
  secret held in the environment variable the program names (`webhook.secret_env`, which must
  start with `WEBHOOK_SECRET_`). Signing the timestamp with the body lets the receiver refuse a
  replay: `verify` (what a receiver does) accepts a timestamp within `TOLERANCE_S` of its clock;
- `Idempotency-Key`: the notification_id, the same on every retry and resend.

Where a webhook may go is `webhook_policy`'s: https to public addresses unless the operator
allows the host; a refused URL is permanent (WEBHOOK_URL_REFUSED). Of the answer, the status
and headers count and at most `MAX_RESPONSE_BYTES` of the body are read; the rest is dropped
with the connection. 2xx is acceptance. 408, 425, 429 and 5xx are transient (429/503 honour
`Retry-After`), like a refused connection or a timeout; any other status is permanent (3xx
included: redirects are not followed, a moved endpoint is a configuration to fix, not to guess).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from datetime import datetime

import aiohttp

from referrals.programs.model import SECRET_ENV_PREFIX, Webhook
from services.notifications.adapters.failures import PermanentFailure, TransientFailure
from services.notifications.adapters.webhook_policy import (
    AllowList,
    PublicOnlyResolver,
    Refused,
    check_url,
    refused_in,
)
from services.notifications.domain.messages import Message, RenderedMessage

SIGNATURE = "X-Referrals-Signature"
TIMESTAMP = "X-Referrals-Timestamp"
IDEMPOTENCY_KEY = "Idempotency-Key"
_TRANSIENT_STATUSES = {408, 425, 429}
_MAX_RETRY_AFTER_S = 300.0
TOLERANCE_S = 300  # how far a receiver should accept a timestamp from its own clock
MAX_RESPONSE_BYTES = 64 * 1024  # of a receiver's answer; the status is what counts
URL_REFUSED = "WEBHOOK_URL_REFUSED"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """What a receiver does: a timestamp within `tolerance_s` of its clock (a replay of an old
    request fails), and the signature recomputed and compared in constant time."""
    if not (timestamp.isascii() and timestamp.isdigit() and header.isascii()):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), header)


def body(message: Message, rendered: RenderedMessage, unsubscribe_url: str) -> bytes:
    """The JSON document: who, which referral, what happened, and the rendered wording."""
    document = {
        "type": "referrals.notification.v1",
        "notification_id": message.notification_id,
        "program_id": message.context.get("program_id"),
        "advocate_id": message.advocate_id,
        "referral_id": message.referral_id,
        "kind": message.kind.value,
        "step": message.step,
        "trigger_time": message.trigger_time.isoformat().replace("+00:00", "Z"),
        "advocate": {
            "email": message.email,
            "display_name": message.display_name,
            "locale": message.locale,
        },
        "data": dict(message.context),
        "subject": rendered.subject,
        "text": rendered.text,
        "unsubscribe_url": unsubscribe_url,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True, default=str).encode()


def headers(message: Message, payload: bytes, secret: str, now: datetime) -> Mapping[str, str]:
    timestamp = int(now.timestamp())
    return {
        "Content-Type": "application/json",
        "User-Agent": "referrals-notifications/1",
        TIMESTAMP: str(timestamp),
        SIGNATURE: signature(secret, timestamp, payload),
        IDEMPOTENCY_KEY: message.notification_id,
    }


def secret_for(webhook: Webhook, env: Mapping[str, str] | None = None) -> str:
    """The signing secret; unsigned webhooks are never sent, so a missing one is permanent. Only
    variables starting with WEBHOOK_SECRET_ are read (validation says so too)."""
    if not webhook.secret_env.startswith(SECRET_ENV_PREFIX):
        raise PermanentFailure(
            "WEBHOOK_SECRET_REFUSED",
            f"secret_env {webhook.secret_env} does not start with {SECRET_ENV_PREFIX}",
        )
    value = (os.environ if env is None else env).get(webhook.secret_env, "")
    if not value:
        raise PermanentFailure(
            "WEBHOOK_SECRET_MISSING", f"environment variable {webhook.secret_env} is not set"
        )
    return value


class WebhookTransport:
    """POSTs with one shared aiohttp session (connection reuse per endpoint), to the addresses
    `webhook_policy` allows."""

    def __init__(self, allow: AllowList | None = None) -> None:
        self.allow = allow or AllowList()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, webhook: Webhook, payload: bytes, request_headers: Mapping[str, str]
    ) -> None:
        try:
            check_url(webhook.url, self.allow)
        except Refused as err:
            raise PermanentFailure(URL_REFUSED, str(err)[:300]) from err
        if self._session is None:
            resolver = PublicOnlyResolver(self.allow)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=resolver), trust_env=False
            )
        timeout = aiohttp.ClientTimeout(total=webhook.timeout_s)
        try:
            async with self._session.post(
                webhook.url,
                data=payload,
                headers=dict(request_headers),
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                status, retry_after = response.status, response.headers.get("Retry-After")
                await _drain(response)
        except TimeoutError as err:
            raise TransientFailure("TIMEOUT", f"no answer within {webhook.timeout_s} s") from err
        except (aiohttp.ClientError, Refused) as err:
            refused = refused_in(err)
            if refused is not None:
                raise PermanentFailure(URL_REFUSED, str(refused)[:300]) from err
            raise TransientFailure("CONNECTION", f"{type(err).__name__}: {err}"[:300]) from err
        _check(status, retry_after)


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Reads at most MAX_RESPONSE_BYTES of the body: all of a short answer (the connection is
    then reused), else the connection is dropped with the rest."""
    read = 0
    while read <= MAX_RESPONSE_BYTES:
        chunk = await response.content.read(MAX_RESPONSE_BYTES + 1 - read)
        if not chunk:
            return
        read += len(chunk)
    response.close()


def _check(status: int, retry_after: str | None) -> None:
    if 200 <= status < 300:
        return
    if status >= 500 or status in _TRANSIENT_STATUSES:
        reason = "HTTP_429" if status == 429 else "HTTP_5XX" if status >= 500 else "HTTP_TRY_LATER"
        raise TransientFailure(reason, f"HTTP {status}", retry_after_s=_retry_after_s(retry_after))
    raise PermanentFailure("HTTP_3XX" if status < 400 else "HTTP_4XX", f"HTTP {status}")


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare for webhooks and is ignored)."""
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), _MAX_RETRY_AFTER_S)
