"""Leads to sales: each referral that becomes LEAD is POSTed once to the program's sales webhook.

The rules (contract: "Leads to sales"):
- Only with the program's `notifications.sales_webhook`, and only for a LEAD status.
- Whatever the advocate's opt-out, profile or rate limit: the lead goes to the company's sales
  team (for the advocate's account owner to follow up), not to the advocate.
- Subject to the staleness limit like any message: a LEAD older than `staleness_days` by the
  wall clock is STALE, so replaying history floods no CRM.
- Once: the message's id, and so its `Idempotency-Key`, is the LEAD's status_id. A repeated
  LEAD for a referral whose lead this advocate's state still holds (unposted, or posted and not
  yet stale) is DUPLICATE; an older repeat would be stale anyway.
- Durable: a planned lead stays in the state until the adapter reports it delivered or
  dead-lettered (`settle`); `unsent` rebuilds it for a retry or a resend after a crash.

The message carries the lead's facts in its context; `adapters.sales` turns it into the JSON
document the webhook receives.
"""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType

from referrals.contract.records import ReferralStatus, ReferralStatusChanged
from referrals.platform.evolve import replace
from referrals.programs.model import MessageKind, NotificationChannel, ProgramDocument
from services.notifications.domain.messages import Message, Plan, Reason, Suppressed
from services.notifications.domain.state import DAY_MS, Lead, State, from_ms, to_ms

SALES = NotificationChannel.SALES_WEBHOOK
# Posted leads kept to recognise a repeat, beyond those still within the staleness limit: an
# advocate with more new leads than this in a week is a partner or a bot.
MAX_POSTED = 500


def on_lead(
    state: State, status: ReferralStatusChanged, program: ProgramDocument, now: datetime
) -> tuple[State, Plan]:
    """The lead a status gives sales, if it is a new LEAD and the program has a sales webhook."""
    if status.status is not ReferralStatus.LEAD or program.notifications.sales_webhook is None:
        return state, Plan()
    cut = to_ms(now) - program.notifications.staleness_days * DAY_MS
    state = _forget_before(state, cut)
    lead = Lead(
        status_id=status.status_id,
        program_id=status.program_id,
        referral_id=status.referral_id,
        prospect_id=status.prospect_id,
        owner_rep_id=status.owner_rep_id,
        channel=status.channel.value,
        matched_by=status.matched_by.value,
        occurred_at=to_ms(status.occurred_at),
    )
    if any(known.referral_id == lead.referral_id for known in state.leads):
        return state, _suppressed(lead, Reason.DUPLICATE)
    if lead.occurred_at < cut:
        return state, _suppressed(lead, Reason.STALE)
    state = replace(state, leads=(*state.leads, lead))
    return state, Plan(messages=(message(state.advocate_id, lead),))


def unsent(state: State) -> tuple[Message, ...]:
    """Leads planned and not yet reported delivered or dead-lettered, to send again."""
    return tuple(message(state.advocate_id, lead) for lead in state.leads if not lead.posted)


def settle(state: State, notification_id: str) -> State:
    """The lead with this id (its status_id) was delivered or dead-lettered: not sent again."""
    if not any(lead.status_id == notification_id for lead in state.leads):
        return state
    leads = tuple(
        replace(lead, posted=True) if lead.status_id == notification_id else lead
        for lead in state.leads
    )
    return replace(state, leads=leads)


def message(advocate_id: str, lead: Lead) -> Message:
    """The lead as a message on the SALES_WEBHOOK channel, its id the LEAD's status_id."""
    return Message(
        notification_id=lead.status_id,
        advocate_id=advocate_id,
        referral_id=lead.referral_id,
        kind=MessageKind.LEAD,
        step=0,
        channels=(SALES,),
        locale="",
        email="",
        display_name="",
        trigger_time=from_ms(lead.occurred_at),
        context=MappingProxyType(
            {
                "program_id": lead.program_id,
                "prospect_id": lead.prospect_id,
                "owner_rep_id": lead.owner_rep_id,
                "channel": lead.channel,
                "matched_by": lead.matched_by,
            }
        ),
    )


def _forget_before(state: State, cut: int) -> State:
    """Drops posted leads that went stale, and the oldest posted ones beyond MAX_POSTED."""
    posted = [lead for lead in state.leads if lead.posted and lead.occurred_at >= cut]
    kept = set(map(id, posted[-MAX_POSTED:]))
    leads = tuple(lead for lead in state.leads if not lead.posted or id(lead) in kept)
    return state if leads == state.leads else replace(state, leads=leads)


def _suppressed(lead: Lead, reason: Reason) -> Plan:
    return Plan(
        suppressed=(Suppressed(lead.status_id, lead.referral_id, MessageKind.LEAD, 0, reason),)
    )
