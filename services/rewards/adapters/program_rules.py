"""Marketing's program document -> the rewards core's `RewardRules`, once per program version.

The catalogue (`referrals.programs.catalog`) holds validated, typed documents; this module only
translates their `rewards` section (and currency, time zone, version, status and fraud limits)
into the core's terms.
"""

from __future__ import annotations

from referrals.platform.errors import PermanentError
from referrals.programs.catalog import Program, ProgramCatalog
from services.rewards.domain.rules import FriendReward, Lifecycle, Period, RewardRules, Tier


def rules_for(program: Program) -> RewardRules:
    """The reward rules a program version defines; a version's rules never change."""
    doc = program.document
    rewards = doc.rewards
    tiers = tuple(
        Tier(
            from_referral=tier.from_referral,
            reward_type=tier.reward_type,
            amount_minor=tier.amount_minor,
            percent=tier.percent,
        )
        for tier in rewards.tiers
    )
    friend = rewards.friend_reward
    return RewardRules(
        program_id=program.program_id,
        config_version=program.version,
        currency=doc.currency,
        tiers=tiers,
        time_zone=doc.time_zone,
        period=Period(rewards.period.value),
        rule_id=rewards.rule_id,
        period_cap_minor=rewards.period_cap_minor,
        approval_threshold_minor=rewards.approval_threshold_minor,
        hold_days=rewards.hold_days,
        tax_threshold_minor=rewards.tax_threshold_minor,
        friend_reward=None
        if friend is None
        else FriendReward(amount_minor=friend.amount_minor, reward_type=friend.reward_type),
        clawback=rewards.clawback,
        lifecycle=Lifecycle(doc.status.value),
        max_wins_per_day=doc.fraud.max_wins_per_day,
    )


class RulesCache:
    """Rules of the version in force of each program, built once per (program, version)."""

    def __init__(self, catalog: ProgramCatalog) -> None:
        self.catalog = catalog
        self._rules: dict[str, RewardRules] = {}

    def get(self, program_id: str) -> RewardRules | None:
        """The rules in force for `program_id`, or None while its config has not arrived."""
        program = self.catalog.get(program_id)
        if program is None:
            return None
        cached = self._rules.get(program_id)
        if cached is not None and cached.config_version == program.version:
            return cached
        try:
            rules = rules_for(program)
        except ValueError as err:  # the catalogue validated it; the core is stricter still
            raise PermanentError(
                f"program {program_id} version {program.version} has unusable reward rules: {err}",
                reason="BAD_PROGRAM_RULES",
            ) from err
        self._rules[program_id] = rules
        return rules
