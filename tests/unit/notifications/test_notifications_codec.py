"""The adapter's stored values: an advocate's state and an outbox entry come back exactly, and
anything else is refused loudly, naming what was corrupt and where."""

from __future__ import annotations

import msgspec
import pytest
from notifications_builders import ADVOCATE, known_advocate

from referrals.programs.model import MessageKind, NotificationChannel
from services.notifications.adapters.codec import OUTBOX_ENTRIES, STATES
from services.notifications.adapters.storage import OutboxEntry, Tries
from services.notifications.domain.state import Facts, Pending, Profile, State, new_state

_JSON = msgspec.json.encode


def test_a_busy_state_survives_encode_and_decode_unchanged() -> None:
    state = State(
        advocate_id=ADVOCATE,
        profile=Profile("acme-b2b", "zoë@example.com", "Zoë Ünal", "de-DE"),
        messaged=(("r0", 0b100011), ("r3", 1 << 40)),
        pending=(
            Pending("r1", MessageKind.NURTURE, 1, 5_000, won_at=1_000),
            Pending("r2", MessageKind.REWARDED, 0, 3_000, facts=Facts("REWARDED", 5_000, "USD")),
        ),
        outbox=(
            Pending(
                "r3",
                MessageKind.PAYOUT_FAILED,
                0,
                4_000,
                facts=Facts("PAYOUT_FAILED", None, None, "CHECK", "po-1", "ACCOUNT_CLOSED", 3),
            ),
        ),
        sends=(4_000,),
        last_share_at=2_500,
    )
    assert STATES.decode(STATES.encode(state)) == state
    assert STATES.encode(STATES.decode(STATES.encode(state))) == STATES.encode(state)


@pytest.mark.parametrize(
    "state",
    [new_state(ADVOCATE), State(ADVOCATE, opted_out_at=123), known_advocate()],
)
def test_simple_states_survive_the_round_trip(state: State) -> None:
    assert STATES.decode(STATES.encode(state)) == state


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        _JSON([]),
        _JSON([99, [ADVOCATE, None, None, [], [], [], [], None]]),  # an unknown format version
        _JSON([1, [ADVOCATE, None, None, [], [], [], ["x"], None]]),
        _JSON([1, [ADVOCATE, None, None, [], [["r", "NOPE", 0, 1, None, None]], [], [], None]]),
        b'[1,"adv-1",null,null,[],[],[],[],null]',  # the positional JSON of before
    ],
)
def test_anything_else_is_refused_with_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="corrupt notifications state at key b'adv-1'"):
        STATES.decode(data, b"adv-1")


def test_an_outbox_entry_round_trips_and_a_corrupt_one_is_named() -> None:
    entry = OutboxEntry("adv-1", "acme", (NotificationChannel.EMAIL, NotificationChannel.WEBHOOK))
    assert OUTBOX_ENTRIES.decode(OUTBOX_ENTRIES.encode(entry)) == entry
    with pytest.raises(ValueError, match="corrupt outbox entry at key b'nt-1'"):
        OUTBOX_ENTRIES.decode(_JSON([1, ["adv-1", "acme", ["CARRIER_PIGEON"]]]), b"nt-1")


def test_an_outbox_entry_keeps_its_failed_tries_and_reads_entries_written_before_them() -> None:
    email = NotificationChannel.EMAIL
    entry = OutboxEntry("adv-1", "acme", (email,), 1_700_000_000_000)
    waiting = entry.with_failure(email, True, "CONNECTION: refused").with_failure(email, False, "")
    assert OUTBOX_ENTRIES.decode(OUTBOX_ENTRIES.encode(waiting)) == waiting
    assert waiting.tries(email) == Tries(email, 2, 1, "CONNECTION: refused")
    assert waiting.without(email).failed == ()
    # Written before deadlines existed: no first due time (set when next tried), no tries.
    old = OUTBOX_ENTRIES.decode(_JSON([1, ["adv-1", "acme", ["EMAIL"]]]))
    assert (old.first_due_ms, old.failed) == (None, ())
