"""The rewards service's pure core: reward rules, the per-advocate ledger and the decisions.

Standard library, `referrals.contract.records`, `referrals.platform.money` and the error
classes of `referrals.platform.errors` only. The operator commands' rules (`commands`: what may
be approved or retried, reconciliation totals) live here too. The Kafka adapter feeds the core
WON / REVERSED statuses, profiles, payout results, operator commands and a wall-clock tick,
then persists the returned ledger and produces the returned records in one transaction."""
