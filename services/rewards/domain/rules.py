"""Reward rules of one program version, in minor units, independent of the program document.

The adapter maps a validated program document to `RewardRules`; the core never parses YAML.
Construction checks the invariants the decisions rely on, so an impossible rule set fails loudly
at the edge instead of producing a wrong payout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from referrals.contract.records import RewardType


class Period(StrEnum):
    CALENDAR_YEAR = "CALENDAR_YEAR"
    ROLLING_365_DAYS = "ROLLING_365_DAYS"
    LIFETIME = "LIFETIME"


@dataclass(frozen=True, slots=True)
class Tier:
    """From the `from_referral`-th successful referral: a fixed amount or a percent of the deal."""

    from_referral: int
    reward_type: RewardType
    amount_minor: int | None = None
    percent: Decimal | None = None

    def __post_init__(self) -> None:
        if self.from_referral < 1:
            raise ValueError(f"tier from_referral must be >= 1, got {self.from_referral}")
        if (self.amount_minor is None) == (self.percent is None):
            raise ValueError("a tier has exactly one of amount_minor and percent")
        if self.amount_minor is not None and self.amount_minor < 0:
            raise ValueError(f"tier amount must not be negative, got {self.amount_minor}")
        if self.percent is not None and not Decimal(0) <= self.percent <= Decimal(100):
            raise ValueError(f"tier percent must be within 0..100, got {self.percent}")


class Lifecycle(StrEnum):
    """The program's `status`: paused programs hold new rewards; ended ones take no new
    referrals (attribution rejects them) but pay what was earned."""

    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ENDED = "ENDED"


@dataclass(frozen=True, slots=True)
class FriendReward:
    """Two-sided rewards: what the referred prospect (the friend) gets when the referral wins."""

    amount_minor: int
    reward_type: RewardType
    rule_id: str = "friend"

    def __post_init__(self) -> None:
        if self.amount_minor < 0:
            raise ValueError(f"friend reward amount must not be negative, got {self.amount_minor}")


@dataclass(frozen=True, slots=True)
class RewardRules:
    program_id: str
    config_version: int
    currency: str
    tiers: tuple[Tier, ...]
    time_zone: str = "UTC"
    period: Period = Period.CALENDAR_YEAR
    rule_id: str = "referral-reward"
    period_cap_minor: int | None = None
    approval_threshold_minor: int | None = None
    hold_days: int = 0
    tax_threshold_minor: int | None = None
    friend_reward: FriendReward | None = None
    clawback: bool = False  # a deal REVERSED after its reward was issued is clawed back
    lifecycle: Lifecycle = Lifecycle.ACTIVE
    max_wins_per_day: int | None = None  # fraud velocity: further WONs that day are reviewed

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError("rules need at least one tier")
        starts = [tier.from_referral for tier in self.tiers]
        if starts != sorted(set(starts)):
            raise ValueError(f"tiers must be strictly ordered by from_referral, got {starts}")
        if self.hold_days < 0:
            raise ValueError(f"hold_days must not be negative, got {self.hold_days}")
        if self.max_wins_per_day is not None and self.max_wins_per_day < 1:
            raise ValueError(f"max_wins_per_day must be at least 1, got {self.max_wins_per_day}")
        for name in ("period_cap_minor", "approval_threshold_minor", "tax_threshold_minor"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {self.time_zone!r}") from err

    def tier_for(self, ordinal: int) -> Tier | None:
        """The tier with the largest from_referral <= ordinal (None below the first tier)."""
        chosen = None
        for tier in self.tiers:
            if tier.from_referral > ordinal:
                break
            chosen = tier
        return chosen

    def local_year(self, moment: datetime) -> int:
        """The calendar (and tax) year of an instant in the program's time zone."""
        return moment.astimezone(ZoneInfo(self.time_zone)).year

    def local_day(self, moment: datetime) -> int:
        """The day of an instant in the program's time zone, as a proleptic ordinal (fraud
        velocity counts WONs per local day)."""
        return moment.astimezone(ZoneInfo(self.time_zone)).date().toordinal()
