"""The deterministic message id: one per (advocate, referral, kind, schedule step).

Transactional messages (thank-yous) use step 0; the i-th "refer again" message after a WON uses
step i, counting from 1. The same id is the email `Message-ID` and the webhook idempotency key,
so a resend after a crash can be dropped by the receiver.

The advocate is part of the id because one referral can concern two advocates: under
LAST_TOUCH a later claimant takes the referral over, and both get a LEAD thank-you for it. With
the referral alone their messages would share an id, and a receiver de-duplicating by it would
drop the second advocate's message.
"""

from __future__ import annotations

import hashlib

from referrals.programs.model import MessageKind


def notification_id(advocate_id: str, referral_id: str, kind: MessageKind, step: int) -> str:
    # "|" cannot be confused across fields: ids are free text, so the lengths are hashed too.
    key = f"{len(advocate_id)}:{advocate_id}|{referral_id}|{kind.value}|{step}"
    return "nt-" + hashlib.sha256(key.encode()).hexdigest()[:32]
