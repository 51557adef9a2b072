"""Deterministic ids: the same state change always gets the same id, even after a crash.

`payout_id` depends only on (program, referral, rule) for an advocate's payout, and on the kind
and recipient too for the rest of rewards.payouts.v2 (friend rewards, clawbacks), so one
referral can never produce two different payouts of one kind for one recipient.
`status_id` hashes everything that distinguishes one state change of a
referral from another, so a status re-emitted after a crash carries the id consumers already saw.
"""

from __future__ import annotations

import hashlib
import json

from referrals.contract.records import PayoutKind, Recipient, ReferralStatus

# Namespaces the hashed material so rewards' status ids can never collide with another service's.
_STATUS_NAMESPACE = "rewards.status.v1"


def payout_id(
    program_id: str,
    referral_id: str,
    rule_id: str,
    kind: PayoutKind = PayoutKind.PAYOUT,
    recipient: Recipient = Recipient.ADVOCATE,
) -> str:
    if kind is PayoutKind.PAYOUT and recipient is Recipient.ADVOCATE:  # as v1 always had it
        material = f"{program_id}|{referral_id}|{rule_id}"
    else:
        material = json.dumps(
            [program_id, referral_id, rule_id, kind.value, recipient.value], separators=(",", ":")
        )
    return "po-" + hashlib.sha256(material.encode()).hexdigest()[:32]


def status_id(
    referral_id: str,
    status: ReferralStatus,
    payout_id: str,
    attempt: int,
    reason: str | None,
    repeat: int = 0,
) -> str:
    """`repeat`: the n-th hold of the referral, from the second on (0 and 1 leave the id as it
    always was)."""
    # JSON, not a joined string: ids may contain any separator we could pick.
    parts: list[object] = [_STATUS_NAMESPACE, referral_id, status.value, payout_id, attempt, reason]
    if repeat > 1:
        parts.append(repeat)
    material = json.dumps(parts, separators=(",", ":"))
    return "st-" + hashlib.sha256(material.encode()).hexdigest()[:32]
