"""The deterministic message id: one per (referral, kind, schedule step).

Transactional messages (thank-yous) use step 0; the i-th "refer again" message after a WON uses
step i, counting from 1. The same id is the email `Message-ID` and the webhook idempotency key,
so a resend after a crash can be dropped by the receiver.
"""

from __future__ import annotations

import hashlib

from referrals.program_model import MessageKind


def notification_id(referral_id: str, kind: MessageKind, step: int) -> str:
    digest = hashlib.sha256(f"{referral_id}|{kind.value}|{step}".encode()).hexdigest()
    return "nt-" + digest[:32]
