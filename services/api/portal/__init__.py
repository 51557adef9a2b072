"""The advocate portal: a read model of the topics every API instance keeps, and the
`Advocates` service answering from it (GetAdvocate, ListReferrals, WatchReferrals) plus
EraseAdvocate. `Portal` is what the API server owns."""

from services.api.portal.portal import Portal

__all__ = ["Portal"]
