"""The rewards service's settings (environment prefix `REWARDS_`), read once in `main`."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from referrals.platform.settings import ServiceSettings

THIRTY_DAYS_S = 30 * 24 * 3600.0


class RewardsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REWARDS_")

    group_id: str = "referrals-rewards"
    metrics_port: int = 9202
    # Hold releases and parked inputs are checked this often. A check with nothing due costs a
    # heap peek and no transaction, so a quarter second keeps releases prompt for free.
    punctuate_ms: int = 250
    # A payout result (or operator command) naming a payout this service never issued waits
    # this long for the payout's owner record, then goes to the DLQ with UNKNOWN_PAYOUT.
    unknown_payout_wait_s: float = THIRTY_DAYS_S
    # At most this many advocates' due rewards are released per task per punctuation, so a
    # backlog of releases (after a long outage) is spread over several bounded transactions.
    max_releases: int = 1000
    # A payout's owner entry (payout -> advocate, `routing`) is kept this long after the
    # payout is settled for good (its PAID applied), so a repeated PAID is still routed to
    # the ledger and ignored as a duplicate; then it is pruned, and a later repeat waits
    # `unknown_payout_wait_s` and goes to the DLQ with UNKNOWN_PAYOUT.
    owner_retention_days: float = 30.0


def rewards_settings(settings: ServiceSettings) -> RewardsSettings:
    """`settings` as RewardsSettings (the rewards defaults fill what a base object lacks)."""
    if isinstance(settings, RewardsSettings):
        return settings
    return RewardsSettings(**settings.model_dump())
