"""Applying the followed topics' records to the store, and answering from it.

`apply` folds one record into the batch (see `view` for the rules) and returns the referral view
it changed, if any, so watchers hear of it in commit order. Programs are kept as the services
keep them (`ProgramCatalog`: the newest valid version), and stored so a restart has them at once.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

import services.api.portal.view as v
from referrals.contract.records import (
    AdvocateProfile,
    PayoutCommand,
    PayoutResult,
    ProgramConfig,
    Record,
    ReferralStatusChanged,
)
from referrals.contract.topics import ADVOCATES, PAYOUT_RESULTS, PAYOUTS_V2, PROGRAMS, STATUS
from referrals.platform.errors import InvalidRecord
from referrals.programs.catalog import ProgramCatalog
from referrals.programs.model import ProgramDocument
from services.api.portal.store import Batch, Store, key, newest_first

FOLLOWED = (ADVOCATES, PROGRAMS, STATUS, PAYOUTS_V2, PAYOUT_RESULTS)
DEFAULT_PAGE = 50
MAX_PAGE = 500


class BadPageToken(ValueError):
    """A page token this service did not hand out."""


@dataclass(frozen=True, slots=True)
class Summary:
    """Everything GetAdvocate answers."""

    advocate_id: str
    program_id: str
    display_name: str
    erased: bool
    referrals_total: int
    referrals_won_in_period: int
    rewards: tuple[v.Money, ...]
    next_tier: v.NextTier | None
    updated_at: datetime | None


class ReadModel:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.catalog = ProgramCatalog()
        for config in store.programs():
            self._program(config)

    def _program(self, config: ProgramConfig) -> bool:
        try:
            before = self.catalog.get(config.program_id)
            return self.catalog.apply(config) is not before
        except InvalidRecord:  # the services dead-letter it; the version in force stays
            return False

    def program(self, program_id: str) -> ProgramDocument | None:
        found = self.catalog.get(program_id)
        return None if found is None else found.document

    def apply(
        self, batch: Batch, topic: str, record_key: str | None, record: Record | None, at: datetime
    ) -> v.ReferralView | None:
        """Folds one record in; returns the referral view it changed (for watchers)."""
        if topic == ADVOCATES and record_key is not None and record is None:
            self._erased(batch, record_key, at)
        elif isinstance(record, AdvocateProfile):
            adv = v.AdvocateView(
                record.advocate_id, record.program_id, record.display_name, False, record.updated_at
            )
            batch.put(key(b"a", record.advocate_id), adv)
        elif isinstance(record, ProgramConfig):
            if self._program(record):
                batch.put(key(b"g", record.program_id), record)
        elif isinstance(record, ReferralStatusChanged):
            return self._status(batch, record)
        elif isinstance(record, PayoutCommand):
            k = key(b"p", record.advocate_id, record.payout_id)
            payout = v.fold_payout(batch.get(k, v.PayoutView), record)
            if payout is not None:
                batch.put(k, payout)
        elif isinstance(record, PayoutResult):
            k = key(b"x", record.payout_id)
            result = v.fold_result(batch.get(k, v.ResultView), record)
            if result is not None:
                batch.put(k, result)
        return None

    def _erased(self, batch: Batch, advocate_id: str, at: datetime) -> None:
        k = key(b"a", advocate_id)
        before = batch.get(k, v.AdvocateView)
        batch.put(k, v.AdvocateView(advocate_id, before.program_id if before else "", "", True, at))

    def _status(self, batch: Batch, s: ReferralStatusChanged) -> v.ReferralView | None:
        k = key(b"r", s.advocate_id, s.referral_id)
        before = batch.get(k, v.ReferralView)
        after = v.fold_status(before, s)
        if after is None:
            return None
        batch.put(k, after)
        if before is None:
            batch.put_raw(newest_first(s.advocate_id, after.created_at, s.referral_id), b"")
        return after

    # -- answers --------------------------------------------------------------------------

    def known(self, advocate_id: str) -> bool:
        """An id with a profile, a tombstone or any referral."""
        if self.store.advocate(advocate_id) is not None:
            return True
        return next(self.store.scan(key(b"r", advocate_id)), None) is not None

    def summary(self, advocate_id: str, now: datetime) -> Summary | None:
        adv = self.store.advocate(advocate_id)
        referrals = self.store.referrals(advocate_id)
        if adv is None and not referrals:
            return None
        program_id = (adv.program_id if adv else "") or (
            referrals[0].program_id if referrals else ""
        )
        program = self.program(program_id)
        payouts = self.store.payouts(advocate_id)
        results = {p.payout_id: r for p in payouts if (r := self.store.result(p.payout_id))}
        won = v.won_in_period(referrals, now, program)
        return Summary(
            advocate_id=advocate_id,
            program_id=program_id,
            display_name="" if adv is None or adv.erased else adv.display_name,
            erased=adv is not None and adv.erased,
            referrals_total=len(referrals),
            referrals_won_in_period=won,
            rewards=v.money(payouts, results, referrals, program.currency if program else None),
            next_tier=v.next_tier(won, program),
            updated_at=v.latest(
                adv.updated_at if adv else None,
                *(r.updated_at for r in referrals),
                *(p.issued_at for p in payouts),
                *(r.occurred_at for r in results.values()),
            ),
        )

    def page(self, advocate_id: str, size: int, token: str) -> tuple[list[v.ReferralView], str]:
        """One page of the advocate's referrals, newest first, and the next page's token ("" on
        the last page). The token is the index position of the page's last referral, so pages
        stay stable while new referrals arrive (they sort before it)."""
        size = DEFAULT_PAGE if size <= 0 else min(size, MAX_PAGE)
        prefix = key(b"n", advocate_id)
        after = _position(token, prefix)
        out: list[v.ReferralView] = []
        last = b""
        for index_key, _ in self.store.scan(prefix, after):
            if index_key == after:
                continue
            if len(out) == size:
                return out, _token(last, prefix)
            referral_id = _referral_of(index_key, len(prefix))
            found = self.store.referral(advocate_id, referral_id)
            if found is not None:
                out.append(found)
                last = index_key
        return out, ""

    def current(self, advocate_id: str) -> list[v.ReferralView]:
        """Every referral of the advocate, newest first (WatchReferrals' opening state)."""
        prefix = key(b"n", advocate_id)
        views = (
            self.store.referral(advocate_id, _referral_of(k, len(prefix)))
            for k, _ in self.store.scan(prefix)
        )
        return [found for found in views if found is not None]


def _referral_of(index_key: bytes, prefix_len: int) -> str:
    return index_key[prefix_len + 8 + 2 :].decode("utf-8")


def _token(index_key: bytes, prefix: bytes) -> str:
    return base64.urlsafe_b64encode(index_key[len(prefix) :]).decode("ascii")


def _position(token: str, prefix: bytes) -> bytes | None:
    if not token:
        return None
    try:
        suffix = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as err:
        raise BadPageToken("page_token was not handed out by this service") from err
    if len(suffix) < 10:
        raise BadPageToken("page_token was not handed out by this service")
    return prefix + suffix
