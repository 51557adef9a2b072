"""One plain sentence per referral: why it has its status, and for a rejection or a hold why
there is no credit yet and what, if anything, releases it.

Every status has a sentence, and so has every reason code the services write (the contract's
list: attribution's rejections, the rewards service's holds, denials and reversals). A reason
without a sentence of its own (finance's free-text PAYOUT_FAILED reason, a code added later)
gets its status's sentence with the reason quoted, never nothing.
"""

from __future__ import annotations

from referrals.contract.records import ReferralStatus as S

BY_STATUS: dict[S, str] = {
    S.LEAD: "Your referral signed up; you earn credit once their deal is won.",
    S.IN_PROGRESS: "Your referral's deal is in progress; you earn credit once it is won.",
    S.WON: "Your referral became a customer; your reward is being worked out now.",
    S.REWARD_PENDING: (
        "Your reward is earned and waits out the program's holding period; it is issued"
        " automatically when that ends."
    ),
    S.REWARD_HELD: "Your reward is on hold and is not issued until the hold is cleared.",
    S.REWARDED: "Your reward has been issued and is on its way to you.",
    S.PAID: "Your reward has been paid to you.",
    S.PAYOUT_FAILED: (
        "The payment of your reward did not go through; our team is on it and nothing is needed"
        " from you for now."
    ),
    S.LOST: "The referred deal did not go ahead, so this referral earns no reward.",
    S.REVERSED: (
        "The referred deal was refunded or cancelled after it was won, so this referral no"
        " longer earns a reward."
    ),
    S.REJECTED: "This referral was not accepted, so it earns no reward.",
}

BY_REASON: dict[tuple[S, str], str] = {
    # REJECTED (attribution, and the rewards service's denial)
    (S.REJECTED, "SELF_REFERRAL"): (
        "Not credited: the person referred is you (the same email), and you cannot refer yourself."
    ),
    (S.REJECTED, "ALREADY_REFERRED"): (
        "Not credited: another advocate's claim on this person came first under the program's"
        " rules, so the credit went to them."
    ),
    (S.REJECTED, "OUTSIDE_WINDOW"): (
        "Not credited: the person signed up longer after your share than the program's"
        " referral window allows, so it came too late to count."
    ),
    (S.REJECTED, "PROGRAM_ENDED"): (
        "Not credited: the referral program had ended when this referral arrived."
    ),
    (S.REJECTED, "DENIED"): (
        "Not credited: a program manager reviewed this reward and declined it, so it will not"
        " be issued."
    ),
    (S.REJECTED, "ADVOCATE_ERASED"): (
        "Not credited: your referral account had been erased when this referral arrived."
    ),
    # REWARD_HELD
    (S.REWARD_HELD, "NEEDS_APPROVAL"): (
        "Held for review: this reward is large enough to need a program manager's approval;"
        " it is issued once they approve it."
    ),
    (S.REWARD_HELD, "CAP_REACHED"): (
        "Held: you have reached the program's reward limit for this period, so this reward is"
        " not issued; ask the program team if you think that is wrong."
    ),
    (S.REWARD_HELD, "TAX_INFO_REQUIRED"): (
        "Held: this reward brings your rewards this year to the amount that needs a tax form;"
        " it is issued as soon as your tax form is on file."
    ),
    (S.REWARD_HELD, "MISSING_AMOUNT"): (
        "Held: this reward is a percentage of the deal, but the deal was recorded without an"
        " amount, so it cannot be worked out; ask the program team to look into it."
    ),
    (S.REWARD_HELD, "CURRENCY_MISMATCH"): (
        "Held: the deal was recorded in another currency than the program's, so the reward"
        " cannot be worked out; ask the program team to look into it."
    ),
    (S.REWARD_HELD, "FRAUD_REVIEW"): (
        "Held for review: more deals were won for you in one day than the program allows;"
        " a program manager will approve or decline it."
    ),
    (S.REWARD_HELD, "PROGRAM_PAUSED"): (
        "Held: the referral program is paused; your reward is released automatically when it"
        " is active again."
    ),
    # REVERSED (the rewards service's own reversals of a reward)
    (S.REVERSED, "REWARD_CANCELLED"): (
        "Cancelled: the deal was refunded or cancelled before the reward was issued, so no"
        " reward is due."
    ),
    (S.REVERSED, "CANCELLED"): (
        "Cancelled: the deal was refunded or cancelled after the payment of its reward had"
        " failed, so the reward will not be paid."
    ),
    (S.REVERSED, "CLAWED_BACK"): (
        "Clawed back: the deal was refunded or cancelled after the reward was issued, so the"
        " reward has been reversed."
    ),
}


def explain(status: S, reason: str | None) -> str:
    """The sentence for a referral whose latest status is `status` with `reason`."""
    if reason is None:
        return BY_STATUS[status]
    known = BY_REASON.get((status, reason))
    if known is not None:
        return known
    if status is S.PAYOUT_FAILED:
        return (
            f"The payment of your reward did not go through ({reason}); our team is on it and"
            " nothing is needed from you for now."
        )
    return f"{BY_STATUS[status][:-1]} (reason: {reason})."
