"""How rewards' stored values become bytes: the advocate's `Ledger` in store `ledgers`.

One typed codec (`StateCodec`: JSON, one array per entry, fields in declaration order). A
ledger written before it (positional JSON) is not readable; a corrupt one raises ValueError
naming the rewards ledger and its key, rather than paying from a misread entry.
"""

from __future__ import annotations

from referrals.streams.statecodec import StateCodec
from services.rewards.domain.ledger import Ledger

LEDGERS: StateCodec[Ledger] = StateCodec("rewards ledger", Ledger)
