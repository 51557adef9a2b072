"""The global directory attribution looks up: every share as a touch, every advocate profile.

Every instance holds all of it (`referral.shares.v1` and `referral.advocates.v1` are global
topics). It lives in RocksDB under the state directory, not in Python objects, so millions of
shares and a million advocates fit in a bounded memory (block cache and write buffers below).

Keys (ids may hold any character, so each variable part is length-prefixed) and values (typed,
`codec`: TOUCHES, ADVOCATES, CHANGES):
    t <event_id>                          share already indexed (duplicates have no effect)
    c <program> <code> <event_id>   -> touch     touches by referral code
    e <program> <email> <event_id>  -> touch     touches by prospect email hash
    a <advocate_id>                 -> advocate (after an erasure: the erased marker, id only)
    p <topic> <partition>           -> next offset: where a restart resumes
    w <topic> <partition> <end>     -> wait keys the records before `end` may satisfy
    f <topic> <partition>           -> the change log's floor: entries up to it are pruned
    x <occurred_at ms> <event_id>   -> touch     every indexed share by event time
    n                               -> newest occurred_at (ms) of any share indexed
    !touch-index                    -> present once every touch has its `x` entry

`w` is the change log: a task whose wakeups were lost (a crash) or noted elsewhere (a task that
moved) finds what arrived after its own watermark, a global offset every instance agrees on.
It is pruned, so it does not grow with every poll forever: once a partition's position is
`CHANGE_LOG_RETAIN` records past the floor plus `CHANGE_LOG_PRUNE_EVERY`, the entries ending
more than `CHANGE_LOG_RETAIN` records back are deleted and the floor moves up. A watermark
below the floor gets `None` from `changes_since`, and the task re-decides every waiting
referral instead: always correct, and by then cheaper than replaying that many arrivals
(the processor already does the same past `MAX_CATCH_UP` keys).

Touches are pruned too (`prune_touches`, called by the processor's punctuation, so only once
the program configs are loaded): a share whose `occurred_at` is more than the retention
(the longest attribution window of any known program, default 90 days, plus
`ATTRIBUTION_TOUCH_RETENTION_MARGIN_DAYS`, default 365) older than the newest share indexed
loses its `t`, `c`, `e` and `x` keys. Event time, not the wall clock: a backfill of old
history replayed in order still finds its shares. `x` orders the touches by time, so a prune
step reads the expired entries and the first one that is not (at most `limit` per step, and
no read at all while the oldest touch is known to be inside the retention). A redelivered
share that was pruned is indexed again and pruned again at the next step. What a referral
already matched stays matched (`domain/resolve`); what is lost: a conversion more than the
margin older (in event time) than the newest share cannot match shares past the retention,
and a program that widens its window beyond the retention cannot reach touches already
pruned. Directories written before `x` existed get it built once, at open.

Reads go through two small LRU caches of decoded values (`Recent`): touches by code or email
hash, and advocates (absent ones too). A record is looked up several times in quick succession
(a conversion, its deal, the wakeup after a share), and a RocksDB read plus a decode costs far
more than a dictionary hit. Every write drops the entries it changes (a share: its code and
email keys; a profile or erasure: the advocate; a pruned touch: its code and email keys), so
a read always returns what RocksDB holds. The caches hold at most `TOUCH_CACHE` and
`ADVOCATE_CACHE` entries however large the directory grows.

Writes collect in one batch per global poll and go to RocksDB with the partition's position
(`mark`). A read flushes a pending batch first, so lookups always see every record handed over;
such a flush writes records without their position, which is harmless: re-reading them after
a crash finds shares already indexed and rewrites profiles with the same values.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, Options, Rdict, WriteBatch

from referrals.contract.records import AdvocateProfile, ShareEvent
from referrals.platform.errors import ConfigError
from services.attribution.adapters.codec import ADVOCATES, CHANGES, TOUCHES
from services.attribution.adapters.keys import WaitKey, advocate_wait, code_wait, email_wait
from services.attribution.domain.model import Advocate, Rules, Touch, erased_advocate

Positions = dict[str, dict[int, int]]  # logical topic -> partition -> next offset
V = TypeVar("V")
_MISS = object()
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
# Memory bounds: what RocksDB may hold in RAM however large the directory grows on disk.
BLOCK_CACHE_BYTES = 32 * 1024 * 1024
WRITE_BUFFER_BYTES = 16 * 1024 * 1024
# The change log keeps the wait keys of at least this many records per partition.
CHANGE_LOG_RETAIN = 1_000_000
CHANGE_LOG_PRUNE_EVERY = 10_000  # prune in steps, not on every poll
TOUCH_PRUNE_LIMIT = 10_000  # touches deleted per prune step at most
TOUCH_CACHE = 2048  # prefixes (a code or email hash of a program) whose touches are cached
ADVOCATE_CACHE = 8192
NEWEST = b"n"
TOUCH_INDEXED = b"!touch-index"


def _lp(text: str) -> bytes:
    """A length-prefixed part: no id can run into the next one."""
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def _ms(touch: Touch) -> int:
    """The touch's occurred_at in epoch ms (never before 2000: the contract's checks)."""
    return max(0, int(touch.occurred_at.timestamp() * 1000))


def _touch_keys(touch: Touch) -> list[bytes]:
    """The keys a touch is found by: `t` (seen), `c` (by code), `e` (by email, if any)."""
    program, event = _lp(touch.program_id), touch.event_id.encode()
    keys = [b"t" + event, b"c" + program + _lp(touch.referral_code) + event]
    if touch.prospect_email_sha256 is not None:
        keys.append(b"e" + program + _lp(touch.prospect_email_sha256) + event)
    return keys


def _lookup_prefixes(touch: Touch) -> list[bytes]:
    """The prefixes `touches_by_code` and `touches_by_email` read that find `touch`."""
    program = _lp(touch.program_id)
    found = [b"c" + program + _lp(touch.referral_code)]
    if touch.prospect_email_sha256 is not None:
        found.append(b"e" + program + _lp(touch.prospect_email_sha256))
    return found


class Recent(Generic[V]):
    """The `size` most recently used values by key (a bounded LRU dictionary)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: dict[bytes, V] = {}

    def get(self, key: bytes) -> V | object:
        """The value, or `_MISS`."""
        value = self._items.pop(key, _MISS)
        if value is not _MISS:
            self._items[key] = value  # type: ignore[assignment]  # not _MISS: a V
        return value

    def put(self, key: bytes, value: V) -> None:
        self._items.pop(key, None)
        self._items[key] = value
        if len(self._items) > self.size:
            del self._items[next(iter(self._items))]

    def drop(self, key: bytes) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


def _time_key(touch: Touch) -> bytes:
    return b"x" + _U64.pack(_ms(touch)) + touch.event_id.encode()


def _options() -> Options:
    """Partitioned index and filters: their 4 KB partitions live in the (bounded) block cache
    and only the small top level is pinned. Whole-file filters of a large directory would not
    fit a cache shard and would be re-read on every lookup (measured: ~0.8 ms a lookup at 2M
    shares, against ~70 us for a code lookup plus a profile lookup with these options)."""
    table = BlockBasedOptions()
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    table.set_bloom_filter(10, False)
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_metadata_block_size(4096)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_top_level_index_and_filter(True)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_block_based_table_factory(table)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    return options


class RocksDirectory:
    """`Directory` over RocksDB; `rules` comes from the program catalogue (kept in memory)."""

    def __init__(
        self,
        path: Path,
        rules: Callable[[str], Rules],
        *,
        retain: int = CHANGE_LOG_RETAIN,
        prune_every: int = CHANGE_LOG_PRUNE_EVERY,
    ) -> None:
        path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = Rdict(str(path), _options())
        except Exception as err:  # rocksdict raises a bare Exception, e.g. for a held lock
            raise ConfigError(f"cannot open the attribution directory {path}: {err}") from err
        self._rules = rules
        self._batch = WriteBatch(raw_mode=True)
        self._batch_size = 0
        self._batch_ids: set[str] = set()
        self._changes: list[WaitKey] = []  # handed over, not yet marked with a position
        self._positions: Positions = self._load_positions(b"p")
        self._floors: Positions = self._load_positions(b"f")
        self._retain = retain
        self._prune_every = prune_every
        raw = self._db.get(NEWEST)
        self._newest_ms = _U64.unpack(raw)[0] if isinstance(raw, bytes) else 0
        self._oldest_ms: int | None = None  # of the touches indexed; None: not read yet
        self._touch_cache: Recent[tuple[Touch, ...]] = Recent(TOUCH_CACHE)
        self._advocate_cache: Recent[Advocate | None] = Recent(ADVOCATE_CACHE)
        if self._db.get(TOUCH_INDEXED) is None:
            self._index_touches()

    # -- writes (global records, in order per partition) ----------------------------------------
    def add_share(self, share: ShareEvent) -> list[WaitKey]:
        """Indexes a share's touch; returns the wait keys it may satisfy ([] for a duplicate)."""
        if share.event_id in self._batch_ids or self._db.get(b"t" + share.event_id.encode()):
            return []
        touch = Touch.from_share(share)
        value = TOUCHES.encode(touch)
        for prefix in _lookup_prefixes(touch):
            self._touch_cache.drop(prefix)
        for key in _touch_keys(touch):
            self._put(key, b"1" if key[:1] == b"t" else value)
        self._put(_time_key(touch), value)
        at = _ms(touch)
        if at > self._newest_ms:
            self._newest_ms = at
            self._put(NEWEST, _U64.pack(at))
        if self._oldest_ms is not None:
            self._oldest_ms = min(self._oldest_ms, at)
        keys = [code_wait(touch.program_id, touch.referral_code)]
        email = touch.prospect_email_sha256
        if email is not None:
            keys.append(email_wait(touch.program_id, email))
        self._batch_ids.add(touch.event_id)
        self._changes.extend(keys)
        return keys

    def add_profile(self, profile: AdvocateProfile) -> list[WaitKey]:
        """Inserts or replaces an advocate (compacted topic: the latest profile wins)."""
        advocate = Advocate.from_profile(profile)
        key = b"a" + advocate.advocate_id.encode()
        self._advocate_cache.drop(key)
        self._put(key, ADVOCATES.encode(advocate))
        keys = [advocate_wait(advocate.advocate_id)]
        self._changes.extend(keys)
        return keys

    def erase(self, advocate_id: str) -> list[WaitKey]:
        """An erasure (a tombstone): the profile is overwritten by the erased marker, which
        holds the id only, and RocksDB's compaction drops the old value from its files."""
        marker = erased_advocate(advocate_id)
        key = b"a" + advocate_id.encode()
        self._advocate_cache.drop(key)
        self._put(key, ADVOCATES.encode(marker))
        keys = [advocate_wait(advocate_id)]
        self._changes.extend(keys)
        return keys

    def mark(self, topic: str, partition: int, next_offset: int) -> None:
        """Records before `next_offset` of a partition are handed over: log their changes and
        the position, in the same write as the records."""
        part = _lp(topic) + _U32.pack(partition)
        if self._changes:
            unique = sorted(set(self._changes))
            self._put(b"w" + part + _U64.pack(next_offset), CHANGES.encode(unique))
            self._changes = []
        self._put(b"p" + part, _U64.pack(next_offset))
        self._positions.setdefault(topic, {})[partition] = next_offset
        self._prune(topic, partition, next_offset)
        self.flush()

    def _prune(self, topic: str, partition: int, next_offset: int) -> None:
        """Deletes the change log entries of a partition ending `retain` records back."""
        floor = self._floors.get(topic, {}).get(partition, 0)
        if next_offset - floor < self._retain + self._prune_every:
            return
        new_floor = next_offset - self._retain
        part = _lp(topic) + _U32.pack(partition)
        prefix = b"w" + part
        for key, _ in self._scan(prefix):
            if _U64.unpack(key[-8:])[0] > new_floor:
                break
            self._put_delete(key)
        self._put(b"f" + part, _U64.pack(new_floor))
        self._floors.setdefault(topic, {})[partition] = new_floor

    def prune_touches(self, retention_ms: int, limit: int = TOUCH_PRUNE_LIMIT) -> int:
        """Deletes up to `limit` touches more than `retention_ms` older than the newest share,
        oldest first; returns how many."""
        horizon = self._newest_ms - retention_ms
        if self._oldest_ms is not None and self._oldest_ms >= horizon:
            return 0
        self.flush()
        pruned = 0
        self._oldest_ms = None
        for key, value in self._scan(b"x"):
            at = _U64.unpack(key[1:9])[0]
            if at >= horizon or pruned >= limit:
                self._oldest_ms = at
                break
            touch = TOUCHES.decode(value, key)
            for prefix in _lookup_prefixes(touch):
                self._touch_cache.drop(prefix)
            for gone in (*_touch_keys(touch), key):
                self._put_delete(gone)
            pruned += 1
        else:
            self._oldest_ms = 2**63 - 1  # nothing indexed: nothing to prune until a share
        self.flush()
        return pruned

    def _index_touches(self) -> None:
        """Builds `x` (and `n`) for touches indexed before they existed: once, at open."""
        for key, value in self._scan(b"c"):
            touch = TOUCHES.decode(value, key)
            self._put(_time_key(touch), value)
            self._newest_ms = max(self._newest_ms, _ms(touch))
        self._put(NEWEST, _U64.pack(self._newest_ms))
        self._put(TOUCH_INDEXED, b"1")
        self.flush()

    def flush(self) -> None:
        if self._batch_size:
            self._db.write(self._batch)
            self._batch = WriteBatch(raw_mode=True)
            self._batch_size = 0
            self._batch_ids.clear()

    def _put(self, key: bytes, value: bytes) -> None:
        self._batch.put(key, value)
        self._batch_size += 1

    def _put_delete(self, key: bytes) -> None:
        self._batch.delete(key)
        self._batch_size += 1

    # -- positions and the change log -----------------------------------------------------------
    def position(self, topic: str, partition: int) -> int | None:
        return self._positions.get(topic, {}).get(partition)

    def positions(self) -> Positions:
        return {topic: dict(parts) for topic, parts in self._positions.items()}

    def changes_since(self, watermark: Positions, limit: int) -> set[WaitKey] | None:
        """Wait keys of every record handed over at or after `watermark` (a partition missing
        from it: from the beginning), including those not yet marked; None if more than
        `limit` or if the change log was pruned past the watermark (then re-deciding every
        waiting referral is the cheaper catch-up)."""
        self.flush()
        found: set[WaitKey] = set(self._changes)
        for topic, parts in self._positions.items():
            for partition in parts:
                prefix = b"w" + _lp(topic) + _U32.pack(partition)
                start = watermark.get(topic, {}).get(partition, 0)
                if start < self._floors.get(topic, {}).get(partition, 0):
                    return None
                for key, value in self._scan(prefix, prefix + _U64.pack(start + 1)):
                    found.update(CHANGES.decode(value, key))
                    if len(found) > limit:
                        return None
        return found

    def _load_positions(self, kind: bytes) -> Positions:
        out: Positions = {}
        for key, value in self._scan(kind):
            size = struct.unpack(">H", key[1:3])[0]
            topic = key[3 : 3 + size].decode()
            partition = _U32.unpack(key[3 + size : 7 + size])[0]
            out.setdefault(topic, {})[partition] = _U64.unpack(value)[0]
        return out

    # -- Directory (the core's port) ------------------------------------------------------------
    def touches_by_code(self, program_id: str, code: str) -> Sequence[Touch]:
        return self._touches(b"c" + _lp(program_id) + _lp(code))

    def touches_by_email(self, program_id: str, email_sha256: str) -> Sequence[Touch]:
        return self._touches(b"e" + _lp(program_id) + _lp(email_sha256))

    def advocate(self, advocate_id: str) -> Advocate | None:
        key = b"a" + advocate_id.encode()
        cached = self._advocate_cache.get(key)
        if cached is not _MISS:
            return cached  # type: ignore[return-value]  # not _MISS: an Advocate or None
        self.flush()
        raw = self._db.get(key)
        # raw mode: bytes, or None when absent
        found = ADVOCATES.decode(raw, key) if isinstance(raw, bytes) else None
        self._advocate_cache.put(key, found)
        return found

    def rules(self, program_id: str) -> Rules:
        return self._rules(program_id)

    def _touches(self, prefix: bytes) -> tuple[Touch, ...]:
        cached = self._touch_cache.get(prefix)
        if cached is not _MISS:
            return cached  # type: ignore[return-value]  # not _MISS: a tuple of touches
        self.flush()
        found = tuple(TOUCHES.decode(value, key) for key, value in self._scan(prefix))
        self._touch_cache.put(prefix, found)
        return found

    def _scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with `prefix`, in key order, from `start` (or the first)."""
        for key, value in self._db.items(from_key=start or prefix):
            assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
            if not key.startswith(prefix):
                return
            yield key, value

    def close(self) -> None:
        self.flush()
        self._db.close()
