"""Webhooks to the company's own systems: a signed JSON POST per message.

The receiver authenticates and de-duplicates with three headers:
- `X-Referrals-Timestamp`: Unix seconds when the attempt was made;
- `X-Referrals-Signature`: `sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` under the
  secret held in the environment variable the program names (`webhook.secret_env`). Signing the
  timestamp with the body lets the receiver refuse replays older than it tolerates;
- `Idempotency-Key`: the notification_id, the same on every retry and resend.

2xx is acceptance. 408, 425, 429 and 5xx are transient (429/503 honour `Retry-After`), like a
refused connection or a timeout; any other status is permanent (3xx included: redirects are not
followed, a moved endpoint is a configuration to fix, not to guess).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from datetime import datetime

import aiohttp

from referrals.programs.model import Webhook
from services.notifications.adapters.failures import PermanentFailure, TransientFailure
from services.notifications.domain.messages import Message, RenderedMessage

SIGNATURE = "X-Referrals-Signature"
TIMESTAMP = "X-Referrals-Timestamp"
IDEMPOTENCY_KEY = "Idempotency-Key"
_TRANSIENT_STATUSES = {408, 425, 429}
_MAX_RETRY_AFTER_S = 300.0


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (used by the tests): recompute and compare in constant time."""
    if not timestamp.isdigit():
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
    """The signing secret; unsigned webhooks are never sent, so a missing one is permanent."""
    value = (os.environ if env is None else env).get(webhook.secret_env, "")
    if not value:
        raise PermanentFailure(
            "WEBHOOK_SECRET_MISSING", f"environment variable {webhook.secret_env} is not set"
        )
    return value


class WebhookTransport:
    """POSTs with one shared aiohttp session (connection reuse per endpoint)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, webhook: Webhook, payload: bytes, request_headers: Mapping[str, str]
    ) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=webhook.timeout_s)
        try:
            async with self._session.post(
                webhook.url,
                data=payload,
                headers=dict(request_headers),
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                await response.read()  # let the connection be reused
                status, retry_after = response.status, response.headers.get("Retry-After")
        except TimeoutError as err:
            raise TransientFailure("TIMEOUT", f"no answer within {webhook.timeout_s} s") from err
        except aiohttp.ClientError as err:
            raise TransientFailure("CONNECTION", f"{type(err).__name__}: {err}"[:300]) from err
        _check(status, retry_after)


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
