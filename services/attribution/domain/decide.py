"""Decide a referral from all its claims: who has it, and what every other claimant is told.

The winner is a pure function of the set of claims (never of their arrival order): each
advocate's best claim by the policy, then the best of those (FIRST_TOUCH: earliest touch;
LAST_TOUCH: latest; ties: the stronger match, then advocate id). Once the referral is WON the
winner is frozen. Every other claimant's verdict: SELF_REFERRAL if its profile is the prospect's,
else ALREADY_REFERRED if it has a valid claim, else OUTSIDE_WINDOW if all its touches are stale.

A referral that does not exist yet cannot be created in an ended program (`ended`): nobody wins,
and each claimant with a valid claim is told PROGRAM_ENDED instead (the others as above).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.attribution.domain.model import Policy
from services.attribution.domain.state import Claim, Reason, Rejection, Source


@dataclass(frozen=True, slots=True)
class View:
    winner: Claim | None
    verdicts: dict[str, Rejection]  # advocate -> what it is told; never the winner

    def verdict(self, advocate_id: str) -> Rejection | None:
        return self.verdicts.get(advocate_id)


def decide(
    sources: Iterable[Source], policy: Policy, frozen: Claim | None, *, ended: bool = False
) -> View:
    """`frozen` is the winner of a WON referral: final, whatever the claims say now. `ended`:
    the program ended and this referral has no advocate yet, so it gets none."""
    sources = tuple(sources)
    best = _best_per_advocate((c for s in sources for c in s.claims), policy)
    stale: dict[str, Rejection] = {}
    selfish: dict[str, Rejection] = {}
    for source in sources:
        for rejection in source.rejections:
            into = selfish if rejection.reason is Reason.SELF_REFERRAL else stale
            into.setdefault(rejection.claim.advocate_id, rejection)
    contenders = [claim for adv, claim in best.items() if adv not in selfish]
    winner = frozen or min(contenders, key=lambda c: c.rank(policy), default=None)
    verdicts = dict(stale)
    if ended and frozen is None:
        winner = None
        for adv, claim in best.items():
            verdicts[adv] = Rejection(claim, Reason.PROGRAM_ENDED)
    elif winner is not None:
        for adv, claim in best.items():
            verdicts[adv] = Rejection(claim, Reason.ALREADY_REFERRED)
    else:
        for adv in best:
            verdicts.pop(adv, None)  # valid somewhere: not stale, and nobody to lose to yet
    verdicts.update(selfish)
    if winner is not None:
        verdicts.pop(winner.advocate_id, None)
    return View(winner, verdicts)


def _best_per_advocate(claims: Iterable[Claim], policy: Policy) -> dict[str, Claim]:
    best: dict[str, Claim] = {}
    for claim in claims:
        held = best.get(claim.advocate_id)
        if held is None or claim.rank(policy) < held.rank(policy):
            best[claim.advocate_id] = claim
    return best
