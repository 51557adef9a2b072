"""How rewards' stored values become bytes: the advocate's `Ledger` (tallies and, between
reading and archiving, its working set) and each archived `Entry` (`archive`).

One typed codec (`StateCodec`: JSON, one array per entry, fields in declaration order). A
ledger written before it (positional JSON) is not readable; a corrupt one raises ValueError
naming the rewards ledger and its key, rather than paying from a misread entry.

A ledger is encoded on every input that changes it, and the stored one has no working set
(`Ledger.archive`): `LedgerCodec` writes that common shape straight from the tallies, the very
bytes `StateCodec` writes (a unit test holds the two to it), without building a row per tally.
"""

from __future__ import annotations

from referrals.streams.statecodec import StateCodec
from services.rewards.domain.ledger import Entry, Ledger


class LedgerCodec(StateCodec[Ledger]):
    def encode(self, value: Ledger) -> bytes:
        if value.entries:
            return super().encode(value)
        row = (
            value.program_id,
            value.advocate_id,
            value.tax_form_on_file,
            (),
            [(t.year, t.first_ms, t.last_ms, t.counted, t.reserved_minor) for t in value.tallies],
            value.wins,
            value.days,
        )
        return self._encoder.encode((self.version, row))


LEDGERS: StateCodec[Ledger] = LedgerCodec("rewards ledger", Ledger)
ENTRIES: StateCodec[Entry] = StateCodec("rewards entry", Entry)
