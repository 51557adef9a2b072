"""How notifications' stored values become bytes: one typed codec per kind (`StateCodec`).

Store `advocates`: the core's per-advocate `State`. Store `index`, prefix `o`: the outbox's
`OutboxEntry`. Values written before these codecs (positional JSON) are not readable; a
corrupt value raises ValueError naming its kind and key.
"""

from __future__ import annotations

from referrals.streams.statecodec import StateCodec
from services.notifications.adapters.storage import OutboxEntry
from services.notifications.domain.state import State

STATES: StateCodec[State] = StateCodec("notifications state", State)
OUTBOX_ENTRIES: StateCodec[OutboxEntry] = StateCodec("outbox entry", OutboxEntry)
