"""How rewards' stored values become bytes: the advocate's `Ledger` (tallies and, between
reading and archiving, its working set) and each archived `Entry` (`archive`).

One typed codec (`StateCodec`: JSON, one array per entry, fields in declaration order). A
ledger written before it (positional JSON) is not readable; a corrupt one raises ValueError
naming the rewards ledger and its key, rather than paying from a misread entry.
"""

from __future__ import annotations

from referrals.streams.statecodec import StateCodec
from services.rewards.domain.ledger import Entry, Ledger

LEDGERS: StateCodec[Ledger] = StateCodec("rewards ledger", Ledger)
ENTRIES: StateCodec[Entry] = StateCodec("rewards entry", Entry)
