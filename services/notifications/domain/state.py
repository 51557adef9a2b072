"""One advocate's notification state: small, immutable, stored by the adapter per advocate.

The adapter encodes it (`adapters/codec.py`); the core never serializes. Times are epoch
milliseconds (compact, exact). Every collection stays bounded whatever the advocate's history,
so a store of a million advocates stays small:

- `messaged`: per referral, one bit per (kind, step) already decided on (planned, or dropped as
  RATE_LIMITED / NO_CHANNEL), the most recently touched referral last, at most `MAX_REFERRALS`.
  It is kept for the referral's lifetime, not just the staleness limit, because the same kind
  can recur for a referral with a NEW trigger much later (a second PAYOUT_FAILED after an
  operator's retry, a LEAD for a re-instated advocate): forgetting by trigger age would send
  the same notification_id twice. About 45 bytes per referral, like the rewards ledger's entry.
- `pending`: nurture steps not yet due or deferred by the rate limit, and messages held until
  the advocate's profile arrives; dropped once stale;
- `outbox`: messages planned but not yet confirmed delivered, for a resend after a crash;
  dropped once delivered or dead-lettered (the adapter's delivery deadline guarantees one or
  the other), or on an opt-out. Staleness does not drop them: it decides whether a message is
  planned at all, and a message planned then waiting for a relay that is down is sent when the
  relay is back, within the delivery deadline;
- `sends`: when the messages of the last 24 hours were planned (at most the rate limit);
- `leads`: LEADs for the program's sales webhook, not yet posted or not yet stale.

ERASURE (a tombstone on the advocates topic, `erasure`): the profile (the only personal data
here: address and name) is dropped, with every waiting and unconfirmed message; `erased_at`
marks the state so that statuses arriving later are dropped (ADVOCATE_ERASED) rather than held
for a profile. What stays names no person: ids, bits, times. A profile published afterwards
enrols the advocate again (`erased_at` cleared); messages dropped meanwhile stay dropped.

There is no list of recent status_ids: a repeated status names the same (referral, kind, step)
as the original, so `messaged` and `pending` already recognise it (DUPLICATE).

The opt-out is STICKY: once a profile says `opted_out` or the advocate unsubscribes,
`opted_out_at` is set for good. A later profile with `opted_out=false` does not undo it, because
profiles are written by other systems that may simply not know about the unsubscribe; opting in
again is a deliberate operator action (a new state), not a side effect of a profile update.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from referrals.platform.evolve import replace
from referrals.platform.timestamps import from_ms as from_ms
from referrals.platform.timestamps import to_ms as to_ms
from referrals.programs.model import MessageKind
from services.notifications.domain.ids import notification_id

# An advocate with more referrals than this is a partner or a bot; evicting the least recently
# messaged referral only matters if that referral produces a status again afterwards.
MAX_REFERRALS = 2_000
DAY_MS = 24 * 3600 * 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Profile:
    """What messages need from the advocate's profile (the rest of it is not kept)."""

    program_id: str
    email: str
    display_name: str
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """What a status said that its message shows, kept while the message waits."""

    status: str
    amount_minor: int | None = None
    currency: str | None = None
    reward_type: str | None = None
    payout_id: str | None = None
    reason: str | None = None
    period_referrals: int | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """A message decided on but not yet out: a nurture step, or a thank-you awaiting a profile.

    `trigger_at` is the status's `occurred_at`, or for NURTURE its due time (WON + delay).
    """

    referral_id: str
    kind: MessageKind
    step: int
    trigger_at: int
    won_at: int | None = None  # NURTURE: the WON it follows; a later share cancels it
    facts: Facts | None = None  # transactional kinds only

    def notification_id(self, advocate_id: str) -> str:
        """This message's id for `advocate_id` (the state's advocate)."""
        return notification_id(advocate_id, self.referral_id, self.kind, self.step)

    @property
    def is_nurture(self) -> bool:
        return self.kind is MessageKind.NURTURE

    @property
    def bit(self) -> int:
        """This message's bit in `State.messaged`: one per transactional kind, then per step."""
        if self.is_nurture:
            return 1 << (4 + self.step)
        if self.kind in _LATER:  # after every possible nurture step: stored bits keep meaning
            return 1 << (5 + MAX_NURTURE_STEPS + _LATER.index(self.kind))
        return 1 << _FIRST.index(self.kind)

    def same_message(self, other: Pending) -> bool:
        return (self.referral_id, self.kind, self.step) == (
            other.referral_id,
            other.kind,
            other.step,
        )


# The bits of `messaged`: the first five kinds 0-4, NURTURE step s (1 to 365) 4 + s, kinds added
# later from 370 on. Only their referrals' masks get that long (denials and clawbacks are rare).
_FIRST = (
    MessageKind.LEAD,
    MessageKind.WON,
    MessageKind.REWARDED,
    MessageKind.PAID,
    MessageKind.PAYOUT_FAILED,
)
_LATER = (MessageKind.REWARD_DENIED, MessageKind.REWARD_CLAWED_BACK)
MAX_NURTURE_STEPS = 365  # `nurture_days` holds at most the days 1 to 365


@dataclass(frozen=True, slots=True)
class Lead:
    """A LEAD to POST to the program's sales webhook (`domain.leads`), kept until it is posted
    (or dead-lettered) and then, to recognise a repeat, until it is stale."""

    status_id: str  # the Idempotency-Key
    program_id: str
    referral_id: str
    prospect_id: str
    owner_rep_id: str | None
    channel: str
    matched_by: str
    occurred_at: int
    posted: bool = False


@dataclass(frozen=True, slots=True)
class State:
    advocate_id: str
    profile: Profile | None = None
    opted_out_at: int | None = None
    messaged: tuple[tuple[str, int], ...] = ()
    pending: tuple[Pending, ...] = ()
    outbox: tuple[Pending, ...] = ()
    sends: tuple[int, ...] = ()
    last_share_at: int | None = None
    erased_at: int | None = None  # when the advocate was erased; None again on re-enrolment
    leads: tuple[Lead, ...] = ()  # for sales, whatever the opt-out (`domain.leads`)

    @property
    def opted_out(self) -> bool:
        return self.opted_out_at is not None

    @property
    def erased(self) -> bool:
        return self.erased_at is not None

    def knows(self, entry: Pending) -> bool:
        """Whether this message was already decided on, or is waiting."""
        bits = next((bits for ref, bits in self.messaged if ref == entry.referral_id), 0)
        return bool(bits & entry.bit) or any(entry.same_message(e) for e in self.pending)

    def with_decided(self, entry: Pending) -> State:
        return replace(self, messaged=self.decided(entry))

    def decided(self, entry: Pending) -> tuple[tuple[str, int], ...]:
        """`messaged` with `entry`'s bit set, its referral now the most recently touched."""
        bits = next((bits for ref, bits in self.messaged if ref == entry.referral_id), 0)
        others = tuple(pair for pair in self.messaged if pair[0] != entry.referral_id)
        return (*others, (entry.referral_id, bits | entry.bit))[-MAX_REFERRALS:]

    def sends_near(self, now: int) -> int:
        """Messages planned less than 24 hours before or after `now` (the clock may step back)."""
        return sum(1 for sent in self.sends if abs(sent - now) < DAY_MS)

    def forget_before(self, cutoff: int, now: int) -> State:
        """Drops what can no longer matter: sends over a day old.

        Pending entries are left to the planner, which reports each one it drops; outbox entries
        wait for their delivery's outcome however old their trigger (see the module's notes).
        """
        sends = tuple(sent for sent in self.sends if sent > now - DAY_MS)
        return self if sends == self.sends else replace(self, sends=sends)


def new_state(advocate_id: str) -> State:
    return State(advocate_id)
