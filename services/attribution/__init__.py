"""Attribution: joins shares, conversions and deals to advocates; emits referral statuses."""
