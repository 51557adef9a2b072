"""The read model's views as the API's messages (enums `<TYPE>_<SYMBOL>`, Timestamps)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from services.api.portal.explain import explain
from services.api.portal.readmodel import Summary
from services.api.portal.view import NextTier, ReferralView
from services.api.proto import referrals_pb2 as pb


def _set(field: Any, moment: datetime | None) -> None:
    """Sets a google.protobuf.Timestamp field (left unset for None)."""
    if moment is not None:
        field.FromDatetime(moment)


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _tier(tier: NextTier) -> pb.NextTier:
    message = pb.NextTier(
        from_referral=tier.from_referral,
        referrals_to_go=tier.referrals_to_go,
        reward_type=pb.RewardType.Value(f"REWARD_TYPE_{tier.reward_type}"),
    )
    if tier.amount_minor is not None:
        message.amount_minor = tier.amount_minor
    elif tier.percent is not None:
        message.percent = _percent(tier.percent)
    return message


def advocate_message(s: Summary) -> pb.Advocate:
    message = pb.Advocate(
        advocate_id=s.advocate_id,
        program_id=s.program_id,
        display_name=s.display_name,
        erased=s.erased,
        referrals_total=s.referrals_total,
        referrals_won_in_period=s.referrals_won_in_period,
        rewards=[
            pb.Rewards(
                currency=m.currency,
                issued_minor=m.issued_minor,
                paid_minor=m.paid_minor,
                held_minor=m.held_minor,
                failed_minor=m.failed_minor,
            )
            for m in s.rewards
        ],
    )
    _set(message.updated_at, s.updated_at)
    if s.next_tier is not None:
        message.next_tier.CopyFrom(_tier(s.next_tier))
    return message


def referral_message(r: ReferralView) -> pb.Referral:
    message = pb.Referral(
        referral_id=r.referral_id,
        program_id=r.program_id,
        advocate_id=r.advocate_id,
        prospect_id=r.prospect_id,
        channel=pb.Channel.Value(f"CHANNEL_{r.channel}"),
        matched_by=pb.MatchedBy.Value(f"MATCHED_BY_{r.matched_by}"),
        status=pb.ReferralStatus.Value(f"REFERRAL_STATUS_{r.status}"),
        reason=r.reason,
        explanation=explain(r.status, r.reason),
        payout_id=r.payout_id,
        amount_minor=r.amount_minor,
        currency=r.currency,
    )
    _set(message.updated_at, r.updated_at)
    for h in r.history:
        entry = message.history.add(
            status=pb.ReferralStatus.Value(f"REFERRAL_STATUS_{h.status}"), reason=h.reason
        )
        _set(entry.occurred_at, h.occurred_at)
    return message
