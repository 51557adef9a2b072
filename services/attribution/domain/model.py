"""What attribution looks up: touches (shares), advocates and program rules, behind a port.

The adapter builds these read-only tables from *all* shares, advocate profiles and program
configs and exposes them through `Directory`; `DictDirectory` is the in-memory implementation
used by the tests and a reference for the adapter. Lookups may return more than the core
uses: the core filters by program, code, email and channel itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from referrals.contract.records import AdvocateProfile, Channel, ShareEvent

# Only a share sent to the prospect's address can be matched by the prospect's email hash.
EMAIL_MATCH_CHANNELS = frozenset({Channel.EMAIL, Channel.LEAD_FORM})


class Policy(StrEnum):
    """How conflicting claims are decided, by the time of each claim's touch."""

    FIRST_TOUCH = "FIRST_TOUCH"
    LAST_TOUCH = "LAST_TOUCH"


@dataclass(frozen=True, slots=True)
class Touch:
    """One share of an advocate: the moment a prospect may have been reached."""

    event_id: str
    program_id: str
    advocate_id: str
    channel: Channel
    referral_code: str
    occurred_at: datetime
    prospect_email_sha256: str | None = None

    @classmethod
    def from_share(cls, share: ShareEvent) -> Touch:
        return cls(
            event_id=share.event_id,
            program_id=share.program_id,
            advocate_id=share.advocate_id,
            channel=share.channel,
            referral_code=share.referral_code,
            occurred_at=share.occurred_at,
            prospect_email_sha256=share.prospect_email_sha256,
        )


@dataclass(frozen=True, slots=True)
class Advocate:
    """What attribution needs of a profile: self-referral check and lead routing.

    `erased`: the person was erased (a tombstone on the advocates topic). The entry is then a
    marker holding nothing but the id (`erased_advocate`): a referral claimed for them later is
    REJECTED with ADVOCATE_ERASED, while the referrals they already had go on."""

    advocate_id: str
    program_id: str
    email_sha256: str
    owner_rep_id: str | None = None
    erased: bool = False

    @classmethod
    def from_profile(cls, profile: AdvocateProfile) -> Advocate:
        return cls(
            advocate_id=profile.advocate_id,
            program_id=profile.program_id,
            email_sha256=profile.email_sha256,
            owner_rep_id=profile.owner_rep_id,
        )


def erased_advocate(advocate_id: str) -> Advocate:
    """The marker an erasure leaves: the id only, no email hash, program or account owner."""
    return Advocate(advocate_id, program_id="", email_sha256="", erased=True)


@dataclass(frozen=True, slots=True)
class Rules:
    """The attribution part of a program's config; `version` is stamped on every status.
    `ended`: the program's status is ENDED, so it takes no new referrals."""

    program_id: str
    version: int
    window_days: int = 90
    policy: Policy = Policy.FIRST_TOUCH
    ended: bool = False

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.window_days)


class Directory(Protocol):
    """Global read-only lookups the adapter maintains from all shares, profiles and configs."""

    def touches_by_code(self, program_id: str, code: str) -> Sequence[Touch]: ...

    def touches_by_email(self, program_id: str, email_sha256: str) -> Sequence[Touch]: ...

    def advocate(self, advocate_id: str) -> Advocate | None: ...

    def rules(self, program_id: str) -> Rules:
        """The program's rules; the adapter only calls the core once they are known."""
        ...


class DictDirectory:
    """An in-memory `Directory`: dictionaries filled by `add_*`, shares de-duplicated by id."""

    def __init__(
        self,
        rules: Iterable[Rules] = (),
        advocates: Iterable[Advocate] = (),
        touches: Iterable[Touch] = (),
    ) -> None:
        self._rules: dict[str, Rules] = {}
        self._advocates: dict[str, Advocate] = {}
        self._touch_ids: set[str] = set()
        self._by_code: dict[tuple[str, str], list[Touch]] = {}
        self._by_email: dict[tuple[str, str], list[Touch]] = {}
        for rule in rules:
            self.set_rules(rule)
        for advocate in advocates:
            self.add_advocate(advocate)
        for touch in touches:
            self.add_touch(touch)

    def set_rules(self, rules: Rules) -> None:
        self._rules[rules.program_id] = rules

    def add_advocate(self, advocate: Advocate) -> None:
        """Insert or replace (a compacted topic: the latest profile wins)."""
        self._advocates[advocate.advocate_id] = advocate

    def add_profile(self, profile: AdvocateProfile) -> Advocate:
        advocate = Advocate.from_profile(profile)
        self.add_advocate(advocate)
        return advocate

    def erase(self, advocate_id: str) -> Advocate:
        """The advocate's profile is replaced by the erased marker (idempotent)."""
        marker = erased_advocate(advocate_id)
        self.add_advocate(marker)
        return marker

    def add_touch(self, touch: Touch) -> bool:
        """Index a touch; False if its event_id was already indexed (a redelivered share)."""
        if touch.event_id in self._touch_ids:
            return False
        self._touch_ids.add(touch.event_id)
        code_key = (touch.program_id, touch.referral_code)
        self._by_code.setdefault(code_key, []).append(touch)
        if touch.prospect_email_sha256 is not None:
            email_key = (touch.program_id, touch.prospect_email_sha256)
            self._by_email.setdefault(email_key, []).append(touch)
        return True

    def add_share(self, share: ShareEvent) -> Touch:
        touch = Touch.from_share(share)
        self.add_touch(touch)
        return touch

    def touches_by_code(self, program_id: str, code: str) -> Sequence[Touch]:
        return tuple(self._by_code.get((program_id, code), ()))

    def touches_by_email(self, program_id: str, email_sha256: str) -> Sequence[Touch]:
        return tuple(self._by_email.get((program_id, email_sha256), ()))

    def advocate(self, advocate_id: str) -> Advocate | None:
        return self._advocates.get(advocate_id)

    def rules(self, program_id: str) -> Rules:
        return self._rules[program_id]
