"""The notifications service's pure core: which advocate messages go out, when, and why not.

Standard library plus `referrals.contract.records`, `referrals.programs.model` and
`referrals.platform.money` only (templates are rendered by the adapter). The Kafka adapter feeds
one advocate's statuses, profiles, shares and a wall-clock tick to `plan`, persists the
returned `State` (the core never serializes), delivers the returned `Message`s (rendered by
`adapters.rendering.render`) and reports each accepted delivery back."""
