"""`referrals simulate`: a business referral program's year as its platform teams publish it.

`simulate(advocates, seed, now, program)` is deterministic for a seed (one `random.Random`, no
clock: `now` is passed in) and scales with the number of advocates (an average program has
5,850). It reproduces the published figures in `simulate_model` and emits every enrolled
advocate's profile, then shares, conversions and deals in arrival order: mostly chronological,
over the 365 days up to `now`, with deliberate disorder and duplicates. The ground truth
(`Simulation.truth`) is kept apart and follows the contract's rules by construction:

- Each referral has one advocate. VERBAL: the conversion, or (40%) only the deals, name a
  declared advocate. SOCIAL / SHARE_URL / PRINT_CARD: a share, then a conversion carrying the
  advocate's code for that channel (codes are per advocate and channel, so any share a code
  matches has the channel of the referral). EMAIL / LEAD_FORM: a share to the prospect's
  address, then a conversion carrying its hash (and for 30% the code: matched by CODE). Every
  share is inside the program's window before its conversion.
- Won deals are allocated per channel by its conversion rate; 4% of them are REVERSED (refunded)
  3 to 40 days later, after their reward was paid: with the program's `clawback` each is
  clawed back, the advocate's reward and the friend's. The others are LOST (55%), still
  IN_PROGRESS (20%) or never got a deal (LEAD, 25%).
- Money events (`simulate_money`, which also says why each compared figure is exact): with
  `fraud.max_wins_per_day`, fraud bursts (one per 1,500 advocates, at least two when there are
  won deals enough): quiet advocates given won deals (moved from busier advocates, so channel
  quotas hold) all on one local day, more than the limit; the operator denies the held rewards
  of every other burst's advocate and approves the rest. Refunds fall on advocates' single won
  deals. Each won referral that is not denied earns its friend's reward (`friend_reward`). The
  program is PAUSED for 14 days from day 230 (by arrival; the replay publishes the versions):
  rewards decided then are held PROGRAM_PAUSED and paid when it is active again.
- Rejections, ~3% of referrals: conflicts (1.5%), a second advocate emailing an EMAIL/LEAD_FORM
  prospect whose conversion carries only the email, after the first one (FIRST_TOUCH; before
  it under LAST_TOUCH), so the planned advocate wins and the rival is ALREADY_REFERRED;
  self-referrals (1%), a conversion carrying the advocate's own code and email hash; and
  claims outside the window (0.5%), an email share older than the window.
- Disorder that cannot change an outcome: a share arriving after its conversion (3%), a deal's
  OPEN arriving before its conversion (3%), and 1% of events delivered twice (same event_id),
  later. Conflicted prospects keep their order (every claim arrives before the deal is won:
  once WON, the advocate is final). Stages of one deal always arrive in order.
- Profiles are dated before the year (enrolment) and arrive first. Every advocate who can be
  credited or claim (bursts' advocates included) has a tax form on file, so no reward is held
  for it; other advocates have one three times in four; 4% opted out of messages.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import sys
from dataclasses import fields
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from referrals.contract.jsonio import to_json
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    ShareEvent,
)
from referrals.contract.topics import ADVOCATES, CONVERSIONS, DEALS, SHARES
from referrals.platform.money import exponent
from referrals.platform.timestamps import from_ms as from_ms
from referrals.platform.timestamps import to_ms as to_ms
from referrals.programs.model import AttributionPolicy, ProgramDocument
from referrals.tools.simulate_model import (
    ACTIVE_SHARE,
    CHANNEL_MIX,
    EMAIL_CHANNELS,
    Advocate,
    Arrival,
    InputRecord,
    Plan,
    ProspectTruth,
    Simulation,
    build_truth,
    half_up,
    plan_referrals,
    sha256_hex,
)
from referrals.tools.simulate_money import (
    Burst,
    Win,
    burst_count,
    burst_day,
    money_truth,
    near_pause,
    pause_span,
    plan_bursts,
    plan_refunds,
)

MINUTE_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000
YEAR_MS = 365 * DAY_MS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INPUT_TOPICS = (ADVOCATES, SHARES, CONVERSIONS, DEALS)
DEMO_PROGRAM = Path(__file__).resolve().parents[2] / "deploy/programs/demo-compressed.yaml"

SELF_REFERRALS, OUTSIDE_WINDOW, DUPLICATES = 0.01, 0.005, 0.01  # of planned referrals, events
_FIRST = "Ada Ben Chloe Dara Eli Fatima Gus Hana Ivan Jo Kai Lena Milo Nia Omar Priya Quinn Rosa"
_LAST = "Ng Smith Okafor Berg Rossi Haddad Kim Novak Silva Dubois Meyer Tanaka Walsh Costa Ali"
_COMPANY = "Northwind Contoso Globex Initech Umbrella Hooli Vandelay Acme-Supply Stark Wayne"
_LOCALES = (("en-US", 0.8), ("en-GB", 0.08), ("de-DE", 0.06), ("fr-FR", 0.06))


def simulate(advocates: int, seed: int, now: datetime, program: ProgramDocument) -> Simulation:
    """A program year of `advocates` enrolled advocates, up to `now` (see the module docstring)."""
    if advocates < 1:
        raise ValueError(f"advocates must be at least 1, got {advocates}")
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (UTC)")
    return _Year(seed, now, program).run(advocates)


class _Year:
    """Builds one simulation; every random draw goes through `self.rng`, in a fixed order."""

    def __init__(self, seed: int, now: datetime, program: ProgramDocument) -> None:
        self.rng = random.Random(seed)
        self.seed, self.program = seed, program
        self.now_ms = to_ms(now)
        self.start_ms = self.now_ms - YEAR_MS
        self.window_ms = program.attribution.window_days * DAY_MS
        self.tag = sha256_hex(f"{program.program_id}|{seed}")[:6]
        self.queue: list[tuple[int, int, Arrival]] = []  # (arrival time, sequence, record)
        self.prospects: list[ProspectTruth] = []
        self.serial = 0
        self.disorder = {"duplicates": 0, "late_shares": 0, "early_deals": 0}
        self.bursts: list[Burst] = []
        self.burst_days: list[int] = []  # local midnight (ms) of each burst's day
        self.wins: list[Win] = []

    def run(self, count: int) -> Simulation:
        roster = [self._advocate(i) for i in range(count)]
        referrers = self.rng.sample(roster, half_up(ACTIVE_SHARE * count))
        plans = plan_referrals(self.rng, referrers)
        self._money(roster, referrers, plans, count)
        claimants = {a.advocate_id for a in referrers} | {
            b.advocate.advocate_id for b in self.bursts
        }
        for advocate in roster:
            self._profile(advocate, advocate.advocate_id in claimants)
        for plan in plans:
            self._referral(plan)
        self._rejected_claims(referrers, len(plans))
        self._idle_shares(roster, plans)
        self._duplicates()
        return self._finish(count)

    # -- ids, time, emission ----------------------------------------------------------------
    def _id(self, kind: str) -> str:
        self.serial += 1
        return f"{kind}-{self.tag}-{self.serial:07d}"

    def _span(self, low: int, high: int) -> int:
        """A duration in [low, high], skewed towards `low` (most things happen soon)."""
        return low + int(max(0, high - low) * self.rng.random() ** 2)

    def _emit(self, topic: str, key: str, record: InputRecord, arrives_ms: int) -> None:
        self.queue.append((arrives_ms, len(self.queue), Arrival(topic, key, record)))

    def _advocate(self, index: int) -> Advocate:
        first, last = self.rng.choice(_FIRST.split()), self.rng.choice(_LAST.split())
        company = self.rng.choice(_COMPANY.split())
        return Advocate(
            index=index,
            advocate_id=f"adv-{self.tag}-{index:06d}",
            email=f"{first}.{last}{index}@{company}.example",
            code=f"R{self.tag.upper()}{index:06d}",
        )

    def _profile(self, advocate: Advocate, claims: bool) -> None:
        rng = self.rng
        first, last = advocate.email.split("@")[0].split(".")
        locale = rng.choices([loc for loc, _ in _LOCALES], [w for _, w in _LOCALES])[0]
        profile = AdvocateProfile(
            program_id=self.program.program_id,
            advocate_id=advocate.advocate_id,
            email=advocate.email,
            display_name=f"{first} {last.rstrip('0123456789')}",
            email_sha256=advocate.email_sha256,
            opted_out=rng.random() < 0.04,
            tax_form_on_file=claims or rng.random() < 0.75,
            updated_at=from_ms(self.start_ms - self._span(DAY_MS, 180 * DAY_MS)),
            owner_rep_id=f"rep-{rng.randint(1, 25):02d}" if rng.random() < 0.7 else None,
            locale=locale,
        )
        self._emit(ADVOCATES, advocate.advocate_id, profile, -1)  # the roster comes first

    def _money(
        self, roster: list[Advocate], referrers: list[Advocate], plans: list[Plan], count: int
    ) -> None:
        """Fraud bursts (quiet advocates given won deals on one day) and refunds after payment."""
        limit = self.program.fraud.max_wins_per_day
        if limit is not None:
            active = {a.advocate_id for a in referrers}
            quiet = [a for a in roster if a.advocate_id not in active]
            fraudsters = self.rng.sample(quiet, min(len(quiet), burst_count(count)))
            self.bursts = plan_bursts(self.rng, plans, fraudsters, limit)
            zone = self.program.time_zone
            self.burst_days = [
                burst_day(self.rng, self.start_ms, self.now_ms, zone) for _ in self.bursts
            ]
        plan_refunds(self.rng, plans)

    # -- one referral ------------------------------------------------------------------------
    def _timeline(self, plan: Plan) -> tuple[int, int, list[tuple[DealStage, int]]]:
        """(share, conversion, deal stages) in ms, all inside the year and before `now`: a
        burst's WON on its day, a refund's WON and REVERSED away from the pause."""
        while True:
            shared, converted, stages = self._draw_timeline(plan.outcome)
            if plan.burst is not None:
                won = (
                    self.burst_days[plan.burst]
                    + 3 * HOUR_MS
                    + int(self.rng.random() * 18 * HOUR_MS)
                )
                shift = won - stages[-1][1]  # a burst's deal ends WON
                return shared + shift, converted + shift, [(st, at + shift) for st, at in stages]
            moved = [at for st, at in stages if st in (DealStage.WON, DealStage.REVERSED)]
            if plan.outcome != "REVERSED" or not any(near_pause(at, self.start_ms) for at in moved):
                return shared, converted, stages

    def _draw_timeline(self, outcome: str) -> tuple[int, int, list[tuple[DealStage, int]]]:
        conversion = self._span(HOUR_MS, min(21 * DAY_MS, self.window_ms - HOUR_MS))
        opened = conversion + self._span(HOUR_MS, 5 * DAY_MS)
        qualified = opened + self._span(DAY_MS, 20 * DAY_MS) if self.rng.random() < 0.6 else None
        closed = (qualified or opened) + self._span(5 * DAY_MS, 55 * DAY_MS)
        reversal = closed + self._span(3 * DAY_MS, 40 * DAY_MS)
        stages: list[tuple[DealStage, int]] = []
        if outcome != "LEAD":
            stages.append((DealStage.OPEN, opened))
            if qualified is not None:
                stages.append((DealStage.QUALIFIED, qualified))
        if outcome in ("WON", "REVERSED"):
            stages.append((DealStage.WON, closed))
        if outcome == "REVERSED":
            stages.append((DealStage.REVERSED, reversal))
        if outcome == "LOST":
            stages.append((DealStage.LOST, closed))
        span = max([conversion, *(at for _, at in stages)])
        low = self.start_ms
        if outcome == "IN_PROGRESS":  # open deals are recent ones
            low = max(low, self.now_ms - span - 120 * DAY_MS)
        base = low + int(self.rng.random() * max(0, self.now_ms - MINUTE_MS - span - low))
        return base, base + conversion, [(stage, base + at) for stage, at in stages]

    def _referral(self, plan: Plan) -> None:
        shared, converted, stages = self._timeline(plan)
        prospect_id, deal_id = self._id("prospect"), self._id("deal")
        email = sha256_hex(f"buyer@{prospect_id}.example")
        if plan.channel is not Channel.VERBAL:
            to = email if plan.channel in EMAIL_CHANNELS else None
            late = converted + 1 if plan.late_share else None
            self.disorder["late_shares"] += plan.late_share
            self._share(plan.advocate, plan.channel, shared, to, late)
        rejected: tuple[tuple[str, str], ...] = ()
        rival_at = self._rival_time(shared, converted) if plan.rival is not None else None
        if plan.rival is not None and rival_at is not None:
            self._share(plan.rival, Channel.EMAIL, rival_at, email)
            rejected = ((plan.rival.advocate_id, "ALREADY_REFERRED"),)
        if not plan.declared_on_deals:
            self._conversion(
                prospect_id,
                converted,
                code=plan.advocate.code_for(plan.channel) if plan.code_on_conversion else None,
                email=email if plan.email_on_conversion else None,
                declared=plan.advocate.advocate_id if plan.channel is Channel.VERBAL else None,
            )
        amount = self._deals(plan, prospect_id, deal_id, converted, stages)
        at = dict(stages)
        if DealStage.WON in at:
            advocate_id, won, back = (
                plan.advocate.advocate_id,
                at[DealStage.WON],
                at.get(DealStage.REVERSED),
            )
            self.wins.append(Win(advocate_id, prospect_id, won, back, amount))
        self.prospects.append(
            ProspectTruth(
                prospect_id=prospect_id,
                advocate_id=plan.advocate.advocate_id,
                channel=plan.channel,
                matched_by=plan.matched_by,
                status=plan.outcome,
                rejected=rejected,
                deal_id=deal_id if stages else None,
            )
        )

    def _rival_time(self, shared: int, converted: int) -> int | None:
        """When the rival emails the prospect so that the planned advocate wins by policy."""
        if self.program.attribution.policy is AttributionPolicy.FIRST_TOUCH:
            low, high = shared + MINUTE_MS, converted - MINUTE_MS
        else:  # LAST_TOUCH: earlier than the planned share, still inside the window
            low = max(self.start_ms, converted - self.window_ms + MINUTE_MS)
            high = shared - MINUTE_MS
        return low + int(self.rng.random() * (high - low)) if high > low else None

    def _deals(
        self,
        plan: Plan,
        prospect_id: str,
        deal_id: str,
        converted: int,
        stages: list[tuple[DealStage, int]],
    ) -> int:
        """Publishes the deal's stages; returns its amount (minor units)."""
        major = min(500_000, max(1_500, round(self.rng.lognormvariate(math.log(24_000), 0.8))))
        amount: int = major * 10 ** exponent(self.program.currency)
        declared = plan.advocate.advocate_id if plan.declared_on_deals else None
        for index, (stage, at) in enumerate(stages):
            event = DealEvent(
                event_id=self._id("dl"),
                program_id=self.program.program_id,
                deal_id=deal_id,
                prospect_id=prospect_id,
                stage=stage,
                occurred_at=from_ms(at),
                amount_minor=amount,
                currency=self.program.currency,
                declared_advocate_id=declared,
            )
            early = index == 0 and plan.early_deal  # the CRM's OPEN before the conversion
            self.disorder["early_deals"] += early
            self._emit(DEALS, deal_id, event, converted - 1 if early else at)
        return amount

    def _share(
        self,
        advocate: Advocate,
        channel: Channel,
        at: int,
        to: str | None,
        arrives: int | None = None,
    ) -> None:
        event = ShareEvent(
            event_id=self._id("sh"),
            program_id=self.program.program_id,
            advocate_id=advocate.advocate_id,
            channel=channel,
            referral_code=advocate.code_for(channel),
            occurred_at=from_ms(at),
            prospect_email_sha256=to,
        )
        self._emit(SHARES, advocate.advocate_id, event, at if arrives is None else arrives)

    def _conversion(
        self,
        prospect_id: str,
        at: int,
        *,
        code: str | None = None,
        email: str | None = None,
        declared: str | None = None,
    ) -> None:
        event = ConversionEvent(
            event_id=self._id("cv"),
            program_id=self.program.program_id,
            prospect_id=prospect_id,
            occurred_at=from_ms(at),
            referral_code=code,
            prospect_email_sha256=email,
            declared_advocate_id=declared,
        )
        self._emit(CONVERSIONS, prospect_id, event, at)

    # -- claims that must be rejected, shares that lead nowhere, duplicates ------------------
    def _rejected_claims(self, referrers: list[Advocate], planned: int) -> None:
        if not referrers:
            return
        for _ in range(half_up(SELF_REFERRALS * planned)):
            self._self_referral(self.rng.choice(referrers))
        if self.window_ms + 31 * DAY_MS < YEAR_MS - DAY_MS:  # room for a share that old
            for _ in range(half_up(OUTSIDE_WINDOW * planned)):
                self._stale_claim(self.rng.choice(referrers))

    def _self_referral(self, advocate: Advocate) -> None:
        """The advocate signs up through their own link, with their own email address."""
        channel = self.rng.choice((Channel.SHARE_URL, Channel.SOCIAL))
        shared = self.start_ms + int(self.rng.random() * (YEAR_MS - 4 * DAY_MS))
        converted = shared + self._span(HOUR_MS, min(3 * DAY_MS, self.window_ms - HOUR_MS))
        self._share(advocate, channel, shared, None)
        prospect_id = self._id("prospect")
        code, email = advocate.code_for(channel), advocate.email_sha256
        self._conversion(prospect_id, converted, code=code, email=email)
        reason = ((advocate.advocate_id, "SELF_REFERRAL"),)
        self.prospects.append(ProspectTruth(prospect_id, None, None, None, "REJECTED", reason))

    def _stale_claim(self, advocate: Advocate) -> None:
        """A prospect who converts longer than the window after the advocate's email."""
        channel = self.rng.choice(EMAIL_CHANNELS)
        late = self.window_ms + self._span(HOUR_MS, 30 * DAY_MS)
        shared = self.start_ms + int(self.rng.random() * (YEAR_MS - late - MINUTE_MS))
        prospect_id = self._id("prospect")
        email = sha256_hex(f"buyer@{prospect_id}.example")
        self._share(advocate, channel, shared, email)
        self._conversion(prospect_id, shared + late, email=email)
        reason = ((advocate.advocate_id, "OUTSIDE_WINDOW"),)
        self.prospects.append(ProspectTruth(prospect_id, None, None, None, "REJECTED", reason))

    def _idle_shares(self, roster: list[Advocate], plans: list[Plan]) -> None:
        """Shares that bring nobody: about one per two referrals, and some quiet advocates'."""
        planned: dict[str, int] = {}
        for plan in plans:
            planned[plan.advocate.advocate_id] = planned.get(plan.advocate.advocate_id, 0) + 1
        mix = {ch: w for ch, w in CHANNEL_MIX.items() if ch is not Channel.VERBAL}
        for advocate in roster:
            count = planned.get(advocate.advocate_id, 0) // 2 + (self.rng.random() < 0.12)
            for _ in range(count):
                channel = self.rng.choices(list(mix), list(mix.values()))[0]
                at = self.start_ms + int(self.rng.random() * (YEAR_MS - MINUTE_MS))
                to = sha256_hex(f"nobody@{self._id('lost')}.example")
                self._share(advocate, channel, at, to if channel in EMAIL_CHANNELS else None)

    def _duplicates(self) -> None:
        """Producers retry: some events arrive twice (same event_id), minutes to days later."""
        events = [(at, arrival) for at, _, arrival in self.queue if arrival.topic != ADVOCATES]
        chosen = self.rng.sample(events, half_up(DUPLICATES * len(events)))
        self.disorder["duplicates"] = len(chosen)
        for at, arrival in chosen:
            self._emit(
                arrival.topic, arrival.key, arrival.record, at + self._span(MINUTE_MS, 3 * DAY_MS)
            )

    def _finish(self, count: int) -> Simulation:
        ordered = sorted(self.queue, key=lambda q: q[:2])
        arrivals = tuple(arrival for _, _, arrival in ordered)
        self.arrival_ms = [at for at, _, _ in ordered]
        events = {topic: sum(1 for a in arrivals if a.topic == topic) for topic in INPUT_TOPICS}
        events |= self.disorder
        header = {
            "program_id": self.program.program_id,
            "seed": self.seed,
            "advocates": count,
            "now": to_json(from_ms(self.now_ms)),
            "window_days": self.program.attribution.window_days,
            "policy": self.program.attribution.policy.value,
        }
        without_form = {
            a.record.advocate_id
            for a in arrivals
            if isinstance(a.record, AdvocateProfile) and not a.record.tax_form_on_file
        }
        money = money_truth(self.program, self.wins, self.bursts, self._pause(arrivals))
        truth = build_truth(header, count, self.prospects, without_form, events, money)
        return Simulation(
            self.program.program_id, self.seed, count, from_ms(self.now_ms), arrivals, truth
        )

    def _pause(self, arrivals: tuple[Arrival, ...]) -> dict[str, Any]:
        """The paused stretch: its times, the arrivals it covers ([first, end) indices: the
        replay publishes PAUSED before `first` and ACTIVE before `end`), and the WONs then."""
        begin, until = pause_span(self.start_ms)
        first = bisect.bisect_left(self.arrival_ms, begin)
        end = bisect.bisect_left(self.arrival_ms, until)
        return {
            "from": to_json(from_ms(begin)),
            "until": to_json(from_ms(until)),
            "first_arrival": first,
            "end_arrival": end,
            "held_expected": sum(1 for w in self.wins if begin <= w.won_ms < until),
        }


# -- files and command line ------------------------------------------------------------------
def datum(record: InputRecord) -> dict[str, Any]:
    """The record as an Avro datum (field name -> value; enums as their symbols)."""
    return {
        f.name: value.value if isinstance(value, Enum) else value
        for f in fields(record)
        for value in (getattr(record, f.name),)
    }


def write_simulation(sim: Simulation, out_dir: Path) -> list[Path]:
    """DIR/<topic>.jsonl per input topic (arrival order), DIR/arrival.jsonl, DIR/truth.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_topic = sim.by_topic()
    written = []
    for topic in INPUT_TOPICS:
        lines = [json.dumps(to_json(datum(a.record))) for a in by_topic.get(topic, [])]
        written.append(_write_lines(out_dir / f"{topic}.jsonl", lines))
    arrival = [
        json.dumps({"topic": a.topic, "key": a.key, "record": to_json(datum(a.record))})
        for a in sim.arrivals
    ]
    written.append(_write_lines(out_dir / "arrival.jsonl", arrival))
    truth = out_dir / "truth.json"
    truth.write_text(sim.truth_json(), encoding="utf-8")
    return [*written, truth]


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def parse_instant(text: str) -> datetime:
    """An ISO 8601 time with a zone (`Z` or an offset), in UTC; ValueError names the problem."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add Z or an offset")
    return moment.astimezone(UTC)


def run_simulate(
    *, advocates: int, seed: int, out: Path, program: Path, now: datetime | None
) -> int:
    """Simulates, writes the files, prints what it wrote; 2 on a bad argument."""
    from referrals.programs.put import load_program  # Kafka clients: only when run as a command

    if advocates < 1:
        print("referrals simulate: --advocates must be at least 1", file=sys.stderr)
        return 2
    now = now or datetime.now(UTC).replace(microsecond=0)
    sim = simulate(advocates, seed, now, load_program(program))
    paths = write_simulation(sim, out)
    truth = sim.truth
    figures = truth["figures"]
    print(
        f"simulated {sim.program_id}: {sim.advocates} advocates, {figures['active']} active,"
        f" {figures['referrals_attributed']} referrals ({figures['referrals_won']} won),"
        f" {sum(truth['rejections'].values())} rejected claims, up to {truth['now']}"
    )
    for topic in INPUT_TOPICS:
        print(f"  {truth['events'][topic]:>7} {topic}")
    print(f"wrote {len(paths)} files to {out} (truth: {paths[-1]})")
    return 0
