"""The rewards service's pure core: reward rules, the per-advocate ledger and the decisions.

Standard library, `referrals.contract.records` and `referrals.platform.money` only. The Kafka
adapter feeds it WON / REVERSED statuses, profiles, payout results, operator commands and a
wall-clock tick, then persists the returned ledger and produces the returned records in one
transaction."""
