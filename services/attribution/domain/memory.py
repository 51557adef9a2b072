"""The adapter's loop without Kafka: an executable reference for `services/attribution/app`.

It does what the contract asks of the adapter around the core: route each conversion and deal
to its referral (program, prospect); keep the global directory; index what each referral waits
for and call `on_dependency` when a share or profile it waits for arrives; track stream time
(the largest occurred_at seen) for `expire`; keep each state as the store would (`persist`:
what storing and loading does to a state; the tests pass the adapter codec's round trip, to
show that persisting changes nothing). Used by the tests; not used in production.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from referrals.contract.records import (
    AdvocateProfile,
    ConversionEvent,
    DealEvent,
    ReferralStatusChanged,
    ShareEvent,
)
from services.attribution.domain.model import DictDirectory, Touch
from services.attribution.domain.referral import expire, on_conversion, on_deal, on_dependency
from services.attribution.domain.state import ReferralState, Step, Waits

Key = tuple[str, str]  # (program_id, prospect_id)
_Wants = Callable[[Key, Waits], bool]
_Persist = Callable[[ReferralState], ReferralState]


class InMemoryAttribution:
    def __init__(self, directory: DictDirectory, *, persist: _Persist | None = None) -> None:
        self.directory = directory
        self.persist = persist
        self.outputs: list[ReferralStatusChanged] = []
        self.counters: Counter[str] = Counter()
        self.stream_time: datetime | None = None
        self._states: dict[Key, ReferralState] = {}
        self._waits: dict[Key, Waits] = {}

    def conversion(self, event: ConversionEvent) -> list[ReferralStatusChanged]:
        key = (event.program_id, event.prospect_id)
        self._tick(event.occurred_at)
        return self._apply(key, on_conversion(self.state(key), event, self.directory))

    def deal(self, event: DealEvent) -> list[ReferralStatusChanged]:
        key = (event.program_id, event.prospect_id)
        self._tick(event.occurred_at)
        return self._apply(key, on_deal(self.state(key), event, self.directory))

    def share(self, event: ShareEvent) -> list[ReferralStatusChanged]:
        self._tick(event.occurred_at)
        touch = Touch.from_share(event)
        if not self.directory.add_touch(touch):
            return []
        return self._wake(lambda key, w: key[0] == touch.program_id and _wants(w, touch))

    def profile(self, profile: AdvocateProfile) -> list[ReferralStatusChanged]:
        self.directory.add_profile(profile)
        return self._wake(lambda _key, w: profile.advocate_id in w.advocates)

    def erase(self, advocate_id: str) -> list[ReferralStatusChanged]:
        """A tombstone for the advocate: the directory keeps the erased marker only."""
        self.directory.erase(advocate_id)
        return self._wake(lambda _key, w: advocate_id in w.advocates)

    def expire(self, stream_time: datetime | None = None) -> None:
        now = stream_time or self.stream_time
        if now is None:
            return
        for key in sorted(self._states):
            state = self.state(key)
            assert state is not None
            self._apply(key, expire(state, now))

    def state(self, key: Key) -> ReferralState | None:
        return self._states.get(key)

    def waits(self, key: Key) -> Waits:
        return self._waits.get(key, Waits())

    def _wake(self, wants: _Wants) -> list[ReferralStatusChanged]:
        outputs: list[ReferralStatusChanged] = []
        for key in sorted(k for k, w in self._waits.items() if wants(k, w)):
            state = self.state(key)
            assert state is not None
            outputs += self._apply(key, on_dependency(state, self.directory))
        return outputs

    def _apply(self, key: Key, step: Step) -> list[ReferralStatusChanged]:
        if step.state is None:
            self._states.pop(key, None)
        else:
            self._states[key] = self.persist(step.state) if self.persist else step.state
        self._waits[key] = step.waits
        if not step.waits:
            del self._waits[key]
        self.outputs += step.outputs
        self.counters.update(step.counters)
        return step.outputs

    def _tick(self, occurred_at: datetime) -> None:
        if self.stream_time is None or occurred_at > self.stream_time:
            self.stream_time = occurred_at


def _wants(waits: Waits, touch: Touch) -> bool:
    email = touch.prospect_email_sha256
    return touch.referral_code in waits.codes or (email is not None and email in waits.emails)
