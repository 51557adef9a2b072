"""How attribution's stored values become bytes: one typed codec per kind (`StateCodec`).

Task store `referrals` (changelog-backed, see `table`): referral states, the wait index's
lists of referrals, the global watermark. The global directory (local RocksDB, see
`directory`): touches, advocates and the change log's wait keys. Values written before these
codecs (positional JSON) are not readable; a corrupt value raises ValueError naming its kind.
"""

from __future__ import annotations

from referrals.streams.statecodec import StateCodec
from services.attribution.domain.model import Advocate, Touch
from services.attribution.domain.state import ReferralState

REFERRALS: StateCodec[ReferralState] = StateCodec("referral state", ReferralState)
# The referral keys waiting for one wait key, sorted.
WAITING: StateCodec[list[str]] = StateCodec("wait index entry", list[str])
# logical topic -> partition -> next offset (callers sort it, so equal positions: equal bytes).
POSITIONS: StateCodec[dict[str, dict[int, int]]] = StateCodec(
    "watermark", dict[str, dict[int, int]]
)
TOUCHES: StateCodec[Touch] = StateCodec("directory touch", Touch)
ADVOCATES: StateCodec[Advocate] = StateCodec("directory advocate", Advocate)
# The wait keys the records before a position may satisfy (`keys.WaitKey`).
CHANGES: StateCodec[list[tuple[str, ...]]] = StateCodec(
    "directory change log entry", list[tuple[str, ...]]
)
