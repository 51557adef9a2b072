"""The `rewards` section: tiers by rank of the successful referral, caps and thresholds."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated

from pydantic import ConfigDict, Field, ValidatorFunctionWrapHandler, field_validator
from pydantic_core import PydanticCustomError

from referrals.contract.records import RewardType
from referrals.platform.money import to_minor
from referrals.programs import model
from referrals.programs.model import RewardPeriod
from referrals.programs.schema.checks import (
    FLAG,
    PERCENT,
    Found,
    Money,
    Section,
    choice,
    collect,
    report,
    text,
    whole,
)

ID = re.compile(r"[A-Za-z0-9._-]{1,256}")
ID_RULE = "1 to 256 letters, digits, '.', '_' or '-'"
_FROM_REFERRAL = whole(1, 1_000_000)


class Tier(Section):
    """From the `from_referral`-th successful referral of a period on: a fixed amount or a
    percent of the deal."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["amount"]}, {"required": ["percent"]}]}
    )
    from_referral: Annotated[int, _FROM_REFERRAL]
    """The tier applies from this successful referral on: 1 for the first tier, then increasing."""
    amount: Annotated[str, Money()] | None = None
    """A fixed reward in major units, in quotes ("50.00"). Either amount or percent."""
    percent: Annotated[Decimal, PERCENT] | None = None
    """A share of the deal's amount, more than 0 and at most 100, in quotes ("2.5")."""
    reward_type: Annotated[RewardType, choice(RewardType)]
    """How the reward is paid."""

    @classmethod
    def _across(cls, given: Mapping[str, object]) -> list[Found]:
        if ("amount" in given) == ("percent" in given):
            return [((), "needs either an amount or a percent (not both, not neither)")]
        return []

    def build(self, currency: str) -> model.Tier:
        amount = None if self.amount is None else to_minor(self.amount, currency)
        return model.Tier(self.from_referral, self.reward_type, amount, self.percent)


class FriendReward(Section):
    """Two-sided rewards: what the referred prospect (the friend) gets when the referral wins."""

    amount: Annotated[str, Money()]
    """A fixed reward in major units, in quotes ("25.00")."""
    reward_type: Annotated[RewardType, choice(RewardType)]
    """How the friend's reward is paid."""

    def build(self, currency: str) -> model.FriendReward:
        return model.FriendReward(to_minor(self.amount, currency), self.reward_type)


class Rewards(Section):
    """What a successful referral earns its advocate."""

    tiers: list[Tier] = Field(min_length=1)
    """The rewards by rank of the successful referral in its period; at least one."""
    period: Annotated[RewardPeriod, choice(RewardPeriod)] = RewardPeriod.CALENDAR_YEAR
    """The period in which successful referrals are counted (and period_cap applies)."""
    rule_id: Annotated[str, text(ID, ID_RULE)] = "referral-reward"
    """Part of every payout id: change it only to pay the same referrals again."""
    period_cap: Annotated[str, Money()] | None = None
    """At most this much per advocate and period; the rest is held (none: no cap)."""
    approval_threshold: Annotated[str, Money()] | None = None
    """A reward this large waits for finance's approval (none: none waits)."""
    hold_days: Annotated[int, whole(0, 365)] = 0
    """Days to wait after the deal was won before paying (a refund window)."""
    tax_threshold: Annotated[str, Money()] | None = None
    """From this total per year on, the advocate's tax form is needed (none: never)."""
    friend_reward: FriendReward | None = None
    """The referred prospect's own reward when the referral wins (none: one-sided rewards)."""
    clawback: Annotated[bool, FLAG] = False
    """true: a deal reversed after its reward was issued claws the reward back."""

    @field_validator("tiers", mode="wrap")
    @classmethod
    def _in_order(cls, tiers: object, handler: ValidatorFunctionWrapHandler) -> list[Tier]:
        if not isinstance(tiers, list) or not tiers:
            report([((), "must be a list of at least one tier")])
        # Each tier's own problems come after the ordering problem of its from_referral.
        return collect(handler, tiers, _order_problems(tiers), lambda item: int(item[0][0]))

    def build(self, currency: str) -> model.Rewards:
        def minor(amount: str | None) -> int | None:
            return None if amount is None else to_minor(amount, currency)

        return model.Rewards(
            tuple(tier.build(currency) for tier in self.tiers),
            self.period,
            self.rule_id,
            minor(self.period_cap),
            minor(self.approval_threshold),
            self.hold_days,
            minor(self.tax_threshold),
            None if self.friend_reward is None else self.friend_reward.build(currency),
            self.clawback,
        )


def _order_problems(tiers: list[object]) -> list[Found]:
    """Tiers start at the first referral and strictly increase, so each n has exactly one."""
    found: list[Found] = []
    previous = 0
    for index, tier in enumerate(tiers):
        given = tier.get("from_referral") if isinstance(tier, Mapping) else None
        try:
            start = _FROM_REFERRAL.check(given)
        except PydanticCustomError:
            continue  # the tier reports it
        where = (index, "from_referral")
        if index == 0 and start > 1:
            found.append((where, f"the first tier must start at 1, not {start}"))
        elif start == previous:
            found.append((where, f"another tier already starts at {start}"))
        elif start < previous:
            found.append((where, f"tiers must be in order: {start} after {previous}"))
        previous = start
    return found
