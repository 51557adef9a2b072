"""`referrals program preview FILE`: the recorded history replayed with FILE, compared.

Reads the program's history (`read`), replays it with the document (`replay`) at `now`, and
compares what it would write with what the services wrote (`compare`). `--since`: only the
referrals whose first conversion or deal occurred at or after that moment are reported (on
both sides alike); the whole history is still replayed, since a referral's tier depends on the
advocate's earlier wins in the period.
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from referrals.contract.records import ConversionEvent, DealEvent
from referrals.platform.errors import ConfigError
from referrals.platform.settings import AmountLimits, KafkaSettings
from referrals.programs.catalog import Program
from referrals.programs.model import ProgramDocument
from referrals.tools.preview.compare import Preview, compare
from referrals.tools.preview.read import read_history
from referrals.tools.preview.replay import History, replay
from services.attribution.domain.ids import referral_id


async def run_preview(
    settings: KafkaSettings,
    document: ProgramDocument,
    *,
    name: str,
    now: datetime,
    since: datetime | None,
    limits: AmountLimits,
) -> Preview:
    """The preview of `document` (read from the file `name`) over the program's topics."""
    read = await read_history(settings, document.program_id, limits)
    return preview_of(read.history, document, name=name, now=now, since=since)


def preview_of(
    history: History, document: ProgramDocument, *, name: str, now: datetime, since: datetime | None
) -> Preview:
    """The pure part: replay and comparison."""
    program = Program(document.program_id, history.version + 1, document)
    try:
        replayed = replay(history, program, now)
    except ValueError as err:  # a rule the rewards core refuses (the services would DLQ it)
        raise ConfigError(f"{name}: unusable rules: {err}") from err
    preview = Preview(
        program_id=document.program_id,
        document=name,
        version=program.version,
        now=now,
        since=since,
        events=len(history.arrivals),
    )
    return compare(
        recorded_statuses=(status for _, status in history.statuses),
        recorded_payouts=history.payouts,
        statuses=replayed.statuses,
        payouts=replayed.payouts,
        referrals=None if since is None else referrals_since(history, since),
        preview=preview,
    )


def referrals_since(history: History, since: datetime) -> set[str]:
    """The referrals whose first conversion or deal occurred at or after `since`."""
    first: dict[str, datetime] = {}
    for arrival in history.arrivals:
        event = arrival.record
        if isinstance(event, ConversionEvent | DealEvent):
            key = referral_id(event.program_id, event.prospect_id)
            if key not in first or event.occurred_at < first[key]:
                first[key] = event.occurred_at
    return {key for key, at in first.items() if at >= since}


def parse_since(text: str, time_zone: str) -> datetime:
    """`2026-01-31` (midnight in the program's time zone) or an ISO 8601 moment; one without
    an offset is taken in the program's time zone too."""
    try:
        moment = (
            datetime.combine(date.fromisoformat(text), time(0))
            if len(text) == 10
            else datetime.fromisoformat(text)
        )
    except ValueError as err:
        raise ConfigError(f"--since {text!r} is not a date (YYYY-MM-DD) or ISO 8601 time") from err
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(time_zone))
