"""What a document would have issued beside what was issued, and whose outcome changes.

Money: each payout counts once by payout_id (a retry is the same payout), under its recipient
(the advocate, or the friend of a two-sided program), tier, reward type and currency; clawbacks
apart. "Issued" is what rewards.payouts.v2 holds (v1 for a program v2 knows nothing of);
"would issue" the payout commands of the replay.

A referral's outcome, per (referral, advocate), folds its statuses so that it does not depend on
how the two services' statuses interleave on the topic: the latest of attribution's (LEAD,
IN_PROGRESS, WON, LOST, REVERSED, REJECTED with its reason) and, once rewards said anything, the
latest of rewards' (a payout issued, paid or failed is `REWARDED tier n amount`: finance's
results are not the document's doing; `HELD reason`, `PENDING`, `REJECTED DENIED`,
`CLAWED_BACK tier n amount`, `REVERSED CANCELLED`). Recorded statuses give the outcome before,
the replay's after.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from referrals.contract.records import (
    PayoutCommand,
    PayoutKind,
    Recipient,
    ReferralStatus,
    ReferralStatusChanged,
)
from referrals.platform.money import to_major
from services.rewards.adapters.processor import is_reward_input
from services.rewards.domain.ledger import Reason
from services.rewards.domain.reconcile import Totals as Tally  # count and amount, as reconcile's

__all__ = ["Change", "Preview", "Tally", "compare", "money", "outcomes", "to_dict"]

# Statuses only the rewards service writes (and its REJECTED DENIED, REVERSED of its own).
_REWARDS_STATUSES = frozenset(
    {
        ReferralStatus.REWARD_PENDING,
        ReferralStatus.REWARD_HELD,
        ReferralStatus.REWARDED,
        ReferralStatus.PAID,
        ReferralStatus.PAYOUT_FAILED,
    }
)
_ISSUED = frozenset({ReferralStatus.REWARDED, ReferralStatus.PAID, ReferralStatus.PAYOUT_FAILED})
Key = tuple[str, str]  # (referral_id, advocate_id)
Row = tuple[str, int, str, str]  # (recipient, tier, reward_type, currency)


@dataclass(frozen=True, slots=True)
class Change:
    referral_id: str
    advocate_id: str
    before: str
    after: str


@dataclass
class Preview:
    program_id: str
    document: str  # the file previewed
    version: int  # the version it would be put as
    now: datetime
    since: datetime | None
    events: int  # recorded inputs replayed
    rows: dict[Row, tuple[Tally, Tally]] = field(default_factory=dict)  # (would issue, issued)
    clawbacks: dict[str, tuple[Tally, Tally]] = field(default_factory=dict)  # by currency
    held: dict[str, tuple[int, int]] = field(default_factory=dict)  # reason -> (would, held)
    changes: list[Change] = field(default_factory=list)

    def totals(self) -> dict[str, tuple[Tally, Tally]]:
        """Per currency, all payouts (advocates' and friends')."""
        out: dict[str, tuple[Tally, Tally]] = {}
        for (_, _, _, currency), (would, issued) in self.rows.items():
            total = out.setdefault(currency, (Tally(), Tally()))
            for into, part in zip(total, (would, issued), strict=True):
                into.count += part.count
                into.amount_minor += part.amount_minor
        return out


def compare(
    *,
    recorded_statuses: Iterable[ReferralStatusChanged],
    recorded_payouts: Iterable[PayoutCommand],
    statuses: Iterable[ReferralStatusChanged],
    payouts: Iterable[PayoutCommand],
    referrals: Collection[str] | None,
    preview: Preview,
) -> Preview:
    """Fills `preview` with the money table and the changed outcomes of `referrals` (None:
    every referral)."""
    kept = (lambda r: True) if referrals is None else referrals.__contains__
    for side, records in enumerate((payouts, recorded_payouts)):
        for payout in _once(p for p in records if kept(p.referral_id)):
            if payout.kind is PayoutKind.CLAWBACK:
                pair = preview.clawbacks.setdefault(payout.currency, (Tally(), Tally()))
            else:
                row = (_recipient(payout), payout.tier, payout.reward_type.value, payout.currency)
                pair = preview.rows.setdefault(row, (Tally(), Tally()))
            pair[side].add(payout.amount_minor)
    after = outcomes(s for s in statuses if kept(s.referral_id))
    before = outcomes(s for s in recorded_statuses if kept(s.referral_id))
    for side, folded in enumerate((after, before)):
        for label in folded.values():
            if label.startswith("HELD "):
                reason = label.split()[1]
                would, held = preview.held.get(reason, (0, 0))
                preview.held[reason] = (would + 1, held) if side == 0 else (would, held + 1)
    preview.changes = [
        Change(key[0], key[1], before.get(key, "-"), after.get(key, "-"))
        for key in sorted(before.keys() | after.keys(), key=lambda k: (k[1], k[0]))
        if before.get(key) != after.get(key)
    ]
    return preview


def _once(payouts: Iterable[PayoutCommand]) -> Iterable[PayoutCommand]:
    seen: set[str] = set()
    for payout in payouts:
        if payout.payout_id not in seen:
            seen.add(payout.payout_id)
            yield payout


def _recipient(payout: PayoutCommand) -> str:
    return "friend" if payout.recipient is Recipient.FRIEND else "advocate"


def outcomes(statuses: Iterable[ReferralStatusChanged]) -> dict[Key, str]:
    """(referral, advocate) -> its outcome in words (module doc), statuses in topic order."""
    attribution: dict[Key, ReferralStatusChanged] = {}
    rewards: dict[Key, ReferralStatusChanged] = {}
    for status in statuses:
        key = (status.referral_id, status.advocate_id)
        (rewards if _from_rewards(status) else attribution)[key] = status
    return {
        key: _words(attribution.get(key), rewards.get(key))
        for key in attribution.keys() | rewards.keys()
    }


def _from_rewards(status: ReferralStatusChanged) -> bool:
    if status.status in _REWARDS_STATUSES:
        return True
    if status.status is ReferralStatus.REJECTED:
        return status.reason == Reason.DENIED.value
    return status.status is ReferralStatus.REVERSED and not is_reward_input(status)


def _words(attribution: ReferralStatusChanged | None, rewards: ReferralStatusChanged | None) -> str:
    if rewards is None:
        assert attribution is not None
        return _plain(attribution)
    status, reason = rewards.status, rewards.reason
    if status in _ISSUED:
        said = f"REWARDED {_reward(rewards)}"
        reversed_ = attribution is not None and attribution.status is ReferralStatus.REVERSED
        return said + " (deal REVERSED)" if reversed_ else said
    if status is ReferralStatus.REVERSED and reason == Reason.CLAWED_BACK.value:
        return f"CLAWED_BACK {_reward(rewards)}"
    if status is ReferralStatus.REWARD_HELD:
        return f"HELD {reason} {_reward(rewards)}".rstrip()
    if status is ReferralStatus.REWARD_PENDING:
        return f"PENDING {_reward(rewards)}".rstrip()
    return _plain(rewards)


def _plain(status: ReferralStatusChanged) -> str:
    return f"{status.status.value} {status.reason}" if status.reason else status.status.value


def _reward(status: ReferralStatusChanged) -> str:
    if status.tier is None or status.amount_minor is None or status.currency is None:
        return ""
    return f"tier {status.tier} {money(status.amount_minor, status.currency)}"


def money(amount_minor: int, currency: str) -> str:
    return f"{to_major(amount_minor, currency)} {currency}"


# -- output -------------------------------------------------------------------------------------
def to_dict(preview: Preview) -> dict[str, Any]:
    """The preview as JSON-ready data (`--json`): every changed referral, amounts in minor
    units and in major units."""
    return {
        "program_id": preview.program_id,
        "document": preview.document,
        "version": preview.version,
        "now": preview.now.isoformat(),
        "since": preview.since.isoformat() if preview.since else None,
        "events_replayed": preview.events,
        "rewards": [
            {
                "recipient": recipient,
                "tier": tier,
                "reward_type": reward_type,
                "currency": currency,
                **_pair(would, issued, currency),
            }
            for (recipient, tier, reward_type, currency), (would, issued) in _ordered(preview.rows)
        ],
        "totals": [
            {"currency": c, **_pair(w, i, c)} for c, (w, i) in sorted(preview.totals().items())
        ],
        "clawbacks": [
            {"currency": c, **_pair(w, i, c)} for c, (w, i) in sorted(preview.clawbacks.items())
        ],
        "held": [
            {"reason": reason, "would_hold": would, "held": held}
            for reason, (would, held) in sorted(preview.held.items())
        ],
        "changes": {
            "count": len(preview.changes),
            "referrals": [
                {
                    "referral_id": c.referral_id,
                    "advocate_id": c.advocate_id,
                    "before": c.before,
                    "after": c.after,
                }
                for c in preview.changes
            ],
        },
    }


def _ordered(rows: Mapping[Row, tuple[Tally, Tally]]) -> list[tuple[Row, tuple[Tally, Tally]]]:
    """Advocates' tiers first, by tier, then the friends' rewards."""
    return sorted(rows.items(), key=lambda item: (item[0][0] != "advocate", *item[0][1:]))


def _pair(would: Tally, issued: Tally, currency: str) -> dict[str, Any]:
    def side(tally: Tally) -> dict[str, Any]:
        amount = to_major(tally.amount_minor, currency)
        return {"count": tally.count, "amount_minor": tally.amount_minor, "amount": amount}

    return {
        "would_issue": side(would),
        "issued": side(issued),
        "difference": {
            "count": would.count - issued.count,
            "amount_minor": would.amount_minor - issued.amount_minor,
        },
    }
