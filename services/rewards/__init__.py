"""Rewards: escalating reward rules; payout commands for finance, exactly once."""
