"""The rewards service's pure core: reward rules, the per-advocate ledger and the decisions.

Standard library, `referrals.contract.records`, `referrals.platform.money` and the error
classes of `referrals.platform.errors` only. Finance's reports are pure folds here too
(`reconcile`: totals and consistency checks over the payouts topics; `tax_report`: what each
advocate was paid in a calendar year). The Kafka adapter feeds the core
WON / REVERSED statuses, profiles, payout results, operator commands and a wall-clock tick,
then persists the returned ledger and produces the returned records in one transaction."""
