"""The rewards task's one durable store, split into keyspaces by a one-byte key prefix.

Why one store and not one per kind of state: the runtime restores each store of each task from
its changelog inside the consumer group's rebalance callback, one partition at a time, and the
group's heartbeat pauses meanwhile; every extra store adds a restore per task to that pause
(see the final report of issue 4). One store keeps start-up and rebalances short.

Layout (prefixes sort the small, scanned index first):
    0x01 waiting inputs  (scanned on assignment; 0x01 S for programs, 0x01 P for owners)
    0x02 due timers      (scanned on assignment)
    0x03 settled owners by prune time (read from the start up to the first one not due)
    0x10 payout owners   (point lookups only)
    0x11 ledgers         (point lookups only: tallies, never every win; see `domain/ledger`)
    0x12 entries         (one per referral won; `archive`)
    0x13 payout -> referral, 0x14 PENDING by due time, 0x15 TAX_INFO_REQUIRED holds
                         (indexes of the archived entries, scanned per advocate)
    0x16 settled owners  (payout -> its prune time; point lookups only; `routing`)
    0x17 PROGRAM_PAUSED holds (per advocate), 0x18 advocates with such holds (per program),
    0x19 WONs per advocate and local day (fraud velocity), 0x1A programs with paused holds
    0x1B holds by reason and start, 0x1C hold per referral, 0x1D holds now per reason and
                         currency (`holds`: the held-rewards gauges)
RocksDB iterates in key order, so scanning a low keyspace stops at the first key past it
instead of reading every ledger.
"""

from __future__ import annotations

STORE = "state"
PARKED = b"\x01"
TIMERS = b"\x02"
OWNERS_BY_PRUNE = b"\x03"
OWNERS = b"\x10"
LEDGERS = b"\x11"
ENTRIES = b"\x12"
PAYOUT_INDEX = b"\x13"
DUE = b"\x14"
TAX_HELD = b"\x15"
SETTLED = b"\x16"
PAUSED_HELD = b"\x17"
PAUSED_BY_PROGRAM = b"\x18"
DAYS = b"\x19"
PAUSED_PROGRAMS = b"\x1a"
HOLDS_BY_REASON = b"\x1b"
HOLDS_BY_REFERRAL = b"\x1c"
HOLD_TOTALS = b"\x1d"
