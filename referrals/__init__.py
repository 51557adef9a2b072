"""The referral engine's shared runtime: contract records, Avro codec, Kafka helpers, settings,
metrics, logging and the `referrals` operator CLI. Services under `services/` build on it."""

__version__ = "0.1.0"
