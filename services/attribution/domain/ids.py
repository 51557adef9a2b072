"""Deterministic ids: a referral's id derives from (program, prospect); a status id from the
state change it announces, so a status re-emitted after a crash carries the id consumers saw.
"""

from __future__ import annotations

import hashlib
import json

from referrals.contract.records import ReferralStatus

# Namespaces the hashed material so attribution's status ids never collide with rewards'.
_STATUS_NAMESPACE = "attribution.status.v1"


def referral_id(program_id: str, prospect_id: str) -> str:
    digest = hashlib.sha256(f"{program_id}|{prospect_id}".encode()).hexdigest()
    return "rf-" + digest[:32]


def status_id(
    referral_id: str,
    advocate_id: str,
    status: ReferralStatus,
    *,
    reason: str | None = None,
    deal_id: str | None = None,
    event_id: str | None = None,
    lead: int = 0,
) -> str:
    """`event_id` is the event the status is about; `lead` is the referral's LEAD ordinal, so
    the same deal event shown again to a re-instated advocate is a new change, not a repeat."""
    # JSON, not a joined string: ids may contain any separator we could pick.
    facts = [referral_id, advocate_id, status.value, reason, deal_id, event_id, lead]
    material = _compact_json([_STATUS_NAMESPACE, *facts])
    return "st-" + hashlib.sha256(material.encode()).hexdigest()[:32]


def _compact_json(items: list[str | int | None]) -> str:
    """`json.dumps(items, separators=(",", ":"))`: written directly when every string is one
    JSON keeps as it is (printable ASCII, no quote or backslash), else by `json.dumps`."""
    parts: list[str] = []
    for item in items:
        if item is None:
            parts.append("null")
        elif type(item) is int:
            parts.append(str(item))
        elif isinstance(item, str) and _plain(item):
            parts.append('"' + item + '"')
        else:
            return json.dumps(items, separators=(",", ":"))
    return "[" + ",".join(parts) + "]"


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text
