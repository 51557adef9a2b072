"""A prolific advocate: 10,000 wins through the core and the codec, the ledger stays small.

The adapter archives every entry between inputs (`adapters/archive.py`): the stored ledger holds
tallies only, and each input brings back the entries it names. Here a dict plays the archive.
The expected rewards come from an independent running total, not from the core.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rewards_builders import ADVOCATE, PROGRAM, profile, reversal, rules, won

from referrals.contract.records import PayoutCommand, ReferralStatus, RewardType
from services.rewards.adapters.codec import LEDGERS
from services.rewards.domain.decide import new_ledger, on_profile, on_reversed, on_won
from services.rewards.domain.ledger import DETAIL_DAYS, Entry, Ledger, Reason, State
from services.rewards.domain.rules import Period, Tier

BOUND = 64 * 1024
START = datetime(2025, 1, 1, 6, tzinfo=UTC)
TIERS = (
    Tier(1, RewardType.GIFT_CARD, amount_minor=1_000),
    Tier(10, RewardType.GIFT_CARD, amount_minor=2_000),
    Tier(100, RewardType.GIFT_CARD, amount_minor=3_000),
)
CAP = 5_000_000
TAX = 4_000_000


def _tier_amount(n: int) -> tuple[int, int]:
    chosen = [t for t in TIERS if t.from_referral <= n][-1]
    assert chosen.amount_minor is not None
    return chosen.from_referral, chosen.amount_minor


class Store:
    """The advocate's stored ledger (bytes) and archived entries, as the adapter keeps them."""

    def __init__(self) -> None:
        self.raw = LEDGERS.encode(new_ledger(PROGRAM, ADVOCATE))
        self.entries: dict[str, Entry] = {}
        self.largest = 0

    def load(self, *names: str) -> Ledger:
        book = LEDGERS.decode(self.raw)
        return book.revive(self.entries[n] for n in names if n in self.entries)

    def keep(self, book: Ledger) -> None:
        stored, entries = book.archive()
        self.entries.update((e.referral_id, e) for e in entries)
        self.raw = LEDGERS.encode(stored)
        self.largest = max(self.largest, len(self.raw))


def test_ten_thousand_wins_keep_the_ledger_small_and_every_decision_right() -> None:
    """UTC calendar years, one win every 70 minutes (two years), no tax form on file."""
    book_rules = rules(tiers=TIERS, time_zone="UTC", period_cap_minor=CAP, tax_threshold_minor=TAX)
    store = Store()
    counts: dict[int, int] = {}
    reserved: dict[int, int] = {}
    held_for_tax: list[str] = []
    for i in range(10_000):
        at = START + timedelta(minutes=70 * i)
        name = f"r{i}"
        decision = on_won(store.load(name), book_rules, won(name, at), at)
        store.keep(decision.ledger)
        # the independent model: count, tier, cap remainder, tax hold
        year = at.year
        counts[year] = counts.get(year, 0) + 1
        tier, amount = _tier_amount(counts[year])
        used = reserved.get(year, 0)
        [first, *rest] = decision.outputs
        assert first.tier == tier and first.referral_id == name
        if used >= CAP:
            assert (first.status, first.reason) == (ReferralStatus.REWARD_HELD, "CAP_REACHED")
            continue
        amount = min(amount, CAP - used)
        assert first.amount_minor == amount
        reserved[year] = used + amount
        if used + amount >= TAX:
            assert (first.status, first.reason) == (ReferralStatus.REWARD_HELD, "TAX_INFO_REQUIRED")
            held_for_tax.append(name)
        else:
            assert [o.status for o in (first, *rest) if not isinstance(o, PayoutCommand)] == [
                ReferralStatus.REWARD_PENDING,
                ReferralStatus.REWARDED,
            ]
            assert [o.amount_minor for o in rest if isinstance(o, PayoutCommand)] == [amount]
    assert set(counts) == {2025, 2026} and all(r <= CAP for r in reserved.values())
    assert held_for_tax and any(o.reason == "CAP_REACHED" for o in decision.outputs)
    assert store.largest < BOUND
    assert len(store.entries) == 10_000

    # the tax form arrives: every held reward is brought back and released, exactly once
    tax_held = [
        e.referral_id
        for e in store.entries.values()
        if e.state is State.HELD and e.reason == Reason.TAX_INFO_REQUIRED
    ]
    assert sorted(tax_held) == sorted(held_for_tax)
    later = START + timedelta(days=800)
    released = on_profile(store.load(*tax_held), profile(tax_form_on_file=True), later)
    store.keep(released.ledger)
    paid = [o for o in released.outputs if isinstance(o, PayoutCommand)]
    assert sorted(p.referral_id for p in paid) == sorted(held_for_tax)
    assert store.largest < BOUND

    # a reversal of a long-settled reward finds it, and a later win still counts right
    # issued long ago: the referral keeps counting, nothing is emitted
    gone = on_reversed(store.load("r3"), reversal("r3", START), later)
    assert gone.outputs == () and gone.changed


def test_tallies_far_behind_the_newest_win_merge_per_year() -> None:
    """One win a day for six years, rolling period: the ledger stays bounded and the n of each
    win is the wins of the 365 days up to it, archived or not."""
    book_rules = rules(tiers=TIERS, time_zone="UTC", period=Period.ROLLING_365_DAYS)
    store = Store()
    days = 6 * 365
    for i in range(days):
        at = START + timedelta(days=i)
        decision = on_won(store.load(f"r{i}"), book_rules, won(f"r{i}", at), at)
        store.keep(decision.ledger)
        n = min(i + 1, 365)  # this one and the ones of the 364 days before
        assert decision.outputs[0].tier == _tier_amount(n)[0]
    stored = LEDGERS.decode(store.raw)
    assert len(stored.tallies) <= DETAIL_DAYS + 10
    assert sum(t.counted for t in stored.tallies) == days
    assert store.largest < BOUND
