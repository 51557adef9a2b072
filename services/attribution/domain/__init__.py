"""The attribution service's pure core: which advocate a referral belongs to, and its statuses.

Standard library and `referrals.contract.records` only. The Kafka adapter routes every
conversion and deal of one referral (program, prospect) to one place in order, keeps the global
read-only lookups behind `model.Directory`, persists the `ReferralState` the commands return
(the core never serializes), re-invokes `referral.on_dependency` when something a referral waits
for arrives, and produces what the commands return. Start reading at `referral.py`."""
