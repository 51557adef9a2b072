"""Turn a decided `View` into the status records the world has not seen yet.

The state remembers what was said (`winner`, `shown`, `rejected`), so re-deciding the same
view says nothing new. Order of records in one step: the dethroned winner's REJECTED, the new
winner's LEAD and then the current status of each deal (stages it never visibly held are
skipped), then every other claimant's REJECTED. LEAD carries the advocate's `owner_rep_id`.

Each advocate is told each rejection reason once: claiming again does not repeat it. The one
exception is an advocate re-instated as winner (a new LEAD) that loses again: it is told again,
so that its last status is never a stale LEAD.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from referrals.contract.records import DealStage, ReferralStatus, ReferralStatusChanged
from referrals.platform.evolve import replace
from services.attribution.domain.decide import View
from services.attribution.domain.ids import status_id
from services.attribution.domain.model import Directory
from services.attribution.domain.state import (
    Claim,
    Deal,
    Reason,
    ReferralState,
    Rejection,
    from_ms,
)

WON = ReferralStatus.WON
STATUS_OF_STAGE = {
    DealStage.OPEN: ReferralStatus.IN_PROGRESS,
    DealStage.QUALIFIED: ReferralStatus.IN_PROGRESS,
    DealStage.WON: ReferralStatus.WON,
    DealStage.LOST: ReferralStatus.LOST,
    DealStage.REVERSED: ReferralStatus.REVERSED,
}


@dataclass(slots=True)
class Emitter:
    """Collects one step's records and counters; `version` is the rules' config version."""

    directory: Directory
    version: int
    outputs: list[ReferralStatusChanged] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    def publish(self, state: ReferralState, view: View) -> ReferralState:
        state = self._crown(state, view)
        state = self._deal_statuses(state)
        for advocate_id in sorted(view.verdicts):
            state = self._reject(state, view.verdicts[advocate_id])
        return state

    def _crown(self, state: ReferralState, view: View) -> ReferralState:
        old, new = state.winner, view.winner
        if old is not None and (new is None or new.advocate_id != old.advocate_id):
            told = view.verdict(old.advocate_id)
            if new is None and told is None:
                return state  # nobody better and nothing against it: it keeps the referral
            state = self._reject(state, told or Rejection(old, Reason.ALREADY_REFERRED))
            state = replace(state, winner=None, shown=())
        if new is None:
            return state
        if state.winner is not None:  # same advocate: keep its best claim for later statuses
            return state if state.final else replace(state, winner=new)
        return self._lead(state, new)

    def _lead(self, state: ReferralState, claim: Claim) -> ReferralState:
        state = replace(
            state,
            winner=claim,
            shown=(),
            leads=state.leads + 1,
            rejected=tuple(r for r in state.rejected if r[0] != claim.advocate_id),
        )
        advocate = self.directory.advocate(claim.advocate_id)
        owner = advocate.owner_rep_id if advocate is not None else None
        self._emit(state, claim, ReferralStatus.LEAD, owner_rep_id=owner)
        self.count(f"matched_{claim.matched_by.lower()}")
        return state

    def _deal_statuses(self, state: ReferralState) -> ReferralState:
        claim = state.winner
        if claim is None:
            return state
        shown = dict(state.shown)
        credited = state.credited_deal
        for deal in sorted(state.deals, key=lambda d: (d.occurred_ms, d.deal_id)):
            status = STATUS_OF_STAGE[deal.stage]
            other_deal = credited is not None and deal.deal_id != credited
            if other_deal or shown.get(deal.deal_id) == status:
                continue  # once WON, the referral follows the credited deal only
            won_id, won_ms = deal.won_event_id, deal.won_ms
            if credited is None and won_id and won_ms is not None and status is not WON:
                # Won, then reversed, before the referral had its advocate: the win first.
                won = replace(deal, stage=DealStage.WON, event_id=won_id, occurred_ms=won_ms)
                self._emit(state, claim, WON, deal=won)
                credited = deal.deal_id
            self._emit(state, claim, status, deal=deal)
            shown[deal.deal_id] = status
            if status is ReferralStatus.WON:
                credited = deal.deal_id
        now_shown = tuple(sorted(shown.items()))
        if now_shown == state.shown and credited == state.credited_deal:
            return state
        return replace(state, shown=now_shown, credited_deal=credited)

    def _reject(self, state: ReferralState, rejection: Rejection) -> ReferralState:
        key = (rejection.claim.advocate_id, rejection.reason)
        if key in state.rejected:
            return state
        self._emit(state, rejection.claim, ReferralStatus.REJECTED, reason=rejection.reason)
        self.count(f"rejected_{rejection.reason.lower()}")
        return replace(state, rejected=(*state.rejected, key))

    def _emit(
        self,
        state: ReferralState,
        claim: Claim,
        status: ReferralStatus,
        *,
        reason: Reason | None = None,
        deal: Deal | None = None,
        owner_rep_id: str | None = None,
    ) -> None:
        """A record about `claim` (LEAD / REJECTED) or about a deal event of the winner."""
        event_id = deal.event_id if deal is not None else claim.source_id
        occurred_ms = deal.occurred_ms if deal is not None else claim.source_ms
        deal_id = deal.deal_id if deal is not None else None
        self.outputs.append(
            ReferralStatusChanged(
                status_id=_status_id(state, claim, status, reason, deal_id, event_id),
                referral_id=state.referral_id,
                program_id=state.program_id,
                advocate_id=claim.advocate_id,
                prospect_id=state.prospect_id,
                channel=claim.channel,
                matched_by=claim.matched_by,
                status=status,
                config_version=self.version,
                occurred_at=from_ms(occurred_ms),
                reason=reason.value if reason is not None else None,
                owner_rep_id=owner_rep_id,
                deal_id=deal_id,
                amount_minor=deal.amount_minor if deal is not None else None,
                currency=deal.currency if deal is not None else None,
            )
        )


def _status_id(
    state: ReferralState,
    claim: Claim,
    status: ReferralStatus,
    reason: Reason | None,
    deal_id: str | None,
    event_id: str,
) -> str:
    return status_id(
        state.referral_id,
        claim.advocate_id,
        status,
        reason=reason,
        deal_id=deal_id,
        event_id=event_id,
        lead=state.leads,
    )
