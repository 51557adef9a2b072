"""Leads to sales: the signed JSON POST of a new lead to the program's `sales_webhook`.

Signed exactly like the advocate webhook (`webhook`: `X-Referrals-Timestamp`,
`X-Referrals-Signature` = `sha256=` + hex HMAC-SHA256 of `<timestamp>.<body>` under the secret in
the environment variable `sales_webhook.secret_env` names), with the LEAD's status_id as
`Idempotency-Key`, and answered like it (2xx accepted; 408, 425, 429, 5xx and network errors
retried until the delivery deadline; any other status dead-lettered). The body:

    {"type": "lead.created", "program_id": ..., "referral_id": ..., "prospect_id": ...,
     "advocate_id": ..., "owner_rep_id": ... or null, "channel": ..., "matched_by": ...,
     "occurred_at": "2026-03-02T09:15:00.000Z"}

The message is planned by `domain.leads`; this only words and posts it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from urllib.parse import urlsplit

from referrals.programs.model import ProgramDocument
from services.notifications.adapters import webhook
from services.notifications.adapters.failures import PermanentFailure
from services.notifications.domain.messages import Message

LEAD_CREATED = "lead.created"


def body(message: Message) -> bytes:
    """The JSON document sales receives for a lead message (`domain.leads.message`)."""
    facts = message.context
    document = {
        "type": LEAD_CREATED,
        "program_id": facts["program_id"],
        "referral_id": message.referral_id,
        "prospect_id": facts["prospect_id"],
        "advocate_id": message.advocate_id,
        "owner_rep_id": facts["owner_rep_id"],
        "channel": facts["channel"],
        "matched_by": facts["matched_by"],
        "occurred_at": message.trigger_time.isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"
        ),
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def prepare(
    message: Message,
    program: ProgramDocument,
    transport: webhook.WebhookTransport,
    clock: Callable[[], datetime],
) -> tuple[Callable[[], Awaitable[None]], str]:
    """(one attempt, its destination's name); PermanentFailure if it cannot be sent at all."""
    hook = program.notifications.sales_webhook
    if hook is None:
        raise PermanentFailure("SALES_WEBHOOK_NOT_CONFIGURED", "the program has no sales webhook")
    secret = webhook.secret_for(hook)
    payload = body(message)

    async def post() -> None:
        await transport.post(hook, payload, webhook.headers(message, payload, secret, clock()))

    return post, f"sales:{urlsplit(hook.url).netloc}"
