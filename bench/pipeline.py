"""The pipeline under load: the three services and the API as separate processes on the
project's own broker, exactly-once on, measured end to end (issue 11).

One broker, one set of topics, one set of service processes, in this order:

1. year mix: the simulator's program year (`referrals.tools.simulate`, 5,850 advocates at full
   scale) replayed as fast as it goes (`program_year.replay`, the planned pause included),
   finance paying every payout and the operator reviewing fraud holds as in `make demo`;
   input events/s until the last status and payout became readable read_committed, and until
   the last message was accepted by SMTP; CPU-seconds of every service process and the broker
   per 1,000 referrals over that stretch.
2. all-WON blast: N referrals (profile, share, conversion, WON deal each; 20,000 at full
   scale) published as fast as one producer goes; input events/s until every advocate payout
   is readable read_committed on rewards.payouts.v1. At full scale a second blast follows under
   py-spy (15 s per service), for the profile summary.
3. latency at fixed offered rates (500, 1,000, 2,000 input events/s): a paced producer sends
   each referral's profile, share and conversion, and its WON deal `LEAD_S` later, so WON deals
   are a quarter of the offered rate; WON -> advocate payout readable (read_committed) and
   WON -> WON thank-you accepted by SMTP (its Message-ID is the notification id, derived here
   with the notifications service's own function), p50/p90/p99.
4. state: a bulk loader (`bench/stateload.py`) writes 1,000,000 advocate profiles (and a share
   for one in ten) to the input topics, and rewards' and notifications' state for them (built
   by their own processors) to their changelogs while they are stopped; seconds from their
   start to every task restored; attribution reads the profiles as global tables meanwhile;
   then each service's peak RSS (VmHWM), and each is stopped (SIGTERM) and started again:
   seconds to every task open (and to /readyz).

    .venv/bin/python bench/pipeline.py [--scale smoke|full] [--bootstrap HOST:PORT]

Without --bootstrap it starts the project's own broker on free ports in a temporary directory.
Figures go to bench/results/pipeline.json (`bench/figures.py`), the py-spy summary to
bench/results/pipeline-profile.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry

from bench import stateload
from bench.figures import RESULTS, Part, save
from bench.pipeline_support import (
    TAIL_TOP,
    TAIL_WINDOW_S,
    Follower,
    Services,
    StampingCatcher,
    bucket_quantile,
    cpu_seconds,
    cpu_shares,
    jit_compiled,
    jvm_thread_cpu,
    percentiles,
    profile,
    show_shares,
    tail_in_windows,
    top_own,
    top_total,
    vm_hwm_mb,
)
from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    PayoutCommand,
    PayoutKind,
    Recipient,
    Record,
    ReferralStatusChanged,
    ShareEvent,
)
from referrals.contract.topics import (
    ADVOCATES,
    CONVERSIONS,
    DEALS,
    PAYOUTS,
    PAYOUTS_V2,
    SHARES,
    STATUS,
    TopicNames,
    create_topics,
)
from referrals.platform.metrics import CYCLE_PHASES
from referrals.platform.pauses import PAUSE_BUCKETS, PauseMetrics, watch_gc
from referrals.platform.settings import KafkaSettings
from referrals.programs.model import MessageKind
from referrals.programs.put import load_program, put
from referrals.streams.kafka import make_admin, make_consumer, make_producer
from referrals.tools import broker
from referrals.tools.cli import quiet_client_logs
from referrals.tools.program_year import (
    SERVICES,
    Progress,
    YearPlan,
    _quiet,
    pause_hooks,
    replay,
)
from referrals.tools.simulate import DEMO_PROGRAM, simulate
from referrals.tools.year_actors import Finance, Operator
from services.attribution.domain.ids import referral_id
from services.notifications.domain.ids import notification_id

PARTITIONS = 6
LEAD_S = 1.0  # a referral's WON deal follows its profile, share and conversion this much later
LATENCY_RATES = (500, 1_000, 2_000)
WON_TO_PAYOUT_P99_MS, WON_TO_SMTP_P99_MS = 250.0, 1_000.0  # targets at 1,000 input events/s
YEAR_FLOOR = 3_000.0  # events/s end to end: where 10,000 is missed, the year must reach this


@dataclass(frozen=True)
class Scale:
    year_advocates: int
    blast: int  # referrals
    rates: tuple[int, ...]
    rate_seconds: float
    advocates: int  # bulk-loaded for the state figures
    profile_s: int  # py-spy per service during a second blast (0: none)
    drain_s: float
    restarts: tuple[str, ...] = SERVICES  # the services restarted at the end
    # Referrals through the pipeline before anything is measured: a broker just started spends
    # its first minute compiling (measured: 9 of its 29 CPU-seconds in a 40 s run went to the
    # JIT compiler threads), which a running system paid long ago.
    warmup: int = 0
    # More rounds of it while the broker's JIT still compiles (a round compiling fewer than
    # JIT_QUIET methods ends it), up to this long.
    warmup_max_s: float = 0.0
    # Before the latency phases, rounds this long offered at a latency phase's rate, for the
    # code a steady paced load runs (the blast rounds leave it cold), up to warmup_max_s.
    paced_warmup_s: float = 0.0
    partitions: int = PARTITIONS  # of every topic: each service's tasks


WARMUP = "warmup"  # the warm-up rounds' tag, the start of their advocates' ids
JIT_QUIET = 150  # methods compiled in a warm-up round below which the broker counts as warm
# (a warm broker still compiles 50-150 in a round: deoptimised methods compiled again)

SCALES = {
    "smoke": Scale(60, 100, (200,), 2.0, 2_000, 0, 90.0, ("rewards",)),
    "full": Scale(
        5_850,
        20_000,
        LATENCY_RATES,
        20.0,
        1_000_000,
        15,
        300.0,
        warmup=3_000,
        warmup_max_s=180,
        paced_warmup_s=20.0,
    ),
}


def paced_referrals(rate: int, seconds: float) -> int:
    """Referrals offered in `seconds` at `rate` input events/s (four events each)."""
    return max(1, int(rate / 4 * seconds))


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Referral:
    advocate_id: str
    prospect_id: str
    referral_id: str
    setup: tuple[tuple[str, str, Record], ...]  # (topic, key, record): profile, share, conversion
    won: tuple[str, str, Record]

    @property
    def thank_you(self) -> str:
        return notification_id(self.advocate_id, self.referral_id, MessageKind.WON, 0)


def referrals(program_id: str, tag: str, n: int, now: datetime) -> Iterator[Referral]:
    """N referrals of N advocates (one WON each: no fraud limit reached), all matched by code."""
    for i in range(n):
        adv, prospect, code = f"{tag}-adv-{i}", f"{tag}-pr-{i}", f"{tag}-code-{i}"
        email = f"{adv}@bench.example"
        profile_ = AdvocateProfile(
            program_id=program_id,
            advocate_id=adv,
            email=email,
            display_name=f"Bench Advocate {i}",
            email_sha256=hashlib.sha256(email.encode()).hexdigest(),
            opted_out=False,
            tax_form_on_file=True,
            updated_at=now - timedelta(days=30),
        )
        share = ShareEvent(
            f"{tag}-sh-{i}", program_id, adv, Channel.SOCIAL, code, now - timedelta(minutes=10)
        )
        conversion = ConversionEvent(
            f"{tag}-cv-{i}", program_id, prospect, now - timedelta(minutes=5), referral_code=code
        )
        deal = DealEvent(
            event_id=f"{tag}-dl-{i}",
            program_id=program_id,
            deal_id=f"{tag}-deal-{i}",
            prospect_id=prospect,
            stage=DealStage.WON,
            occurred_at=now - timedelta(minutes=1),
            amount_minor=100_000,
            currency="USD",
        )
        yield Referral(
            adv,
            prospect,
            referral_id(program_id, prospect),
            ((ADVOCATES, adv, profile_), (SHARES, adv, share), (CONVERSIONS, prospect, conversion)),
            (DEALS, deal.deal_id, deal),
        )


class Run:
    """The broker's topics, the services, the catcher and the follower, shared by the phases."""

    def __init__(self, kafka: KafkaSettings, scale: Scale, work: Path, broker_pid: int | None):
        self.kafka, self.scale, self.work, self.broker_pid = kafka, scale, work, broker_pid
        self.names, self.codec = TopicNames(kafka.topic_prefix), AvroCodec()
        self.program = load_program(DEMO_PROGRAM)
        self.part = Part("pipeline")
        self.plan = YearPlan(
            work=work,
            program=DEMO_PROGRAM,
            metrics_ports={s: free_port() for s in SERVICES},
            api_port=free_port(),
            smtp_port=free_port(),
            unsubscribe_port=free_port(),
            show=say,
        )
        self.services = Services(self.plan, kafka)
        self.mail = StampingCatcher(self.plan.smtp_port)
        self.follower = Follower(kafka, (STATUS, PAYOUTS, PAYOUTS_V2))
        self.checks: dict[str, Any] = {}  # counts beside their ground truth, for the smoke test
        self.profile_lines: list[str] = []

    # -- helpers --------------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        return {name: self.services.pid(name) for name in SERVICES}

    def cpu(self) -> float:
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[str, float]:
        """CPU-seconds so far of each service process and the broker (when the bench runs it)."""
        pids = {**self.pids(), **({"broker": self.broker_pid} if self.broker_pid else {})}
        return {name: cpu_seconds(pid) for name, pid in pids.items()}

    async def until(
        self,
        check: Callable[[], bool],
        within: float,
        what: str,
        detail: Callable[[], str] = lambda: "",
    ) -> bool:
        deadline, shown = time.monotonic() + within, time.monotonic()
        while time.monotonic() < deadline:
            if check():
                return True
            if time.monotonic() - shown >= 5:
                say(f"  waiting for {what} ... {detail()}")
                shown = time.monotonic()
            await asyncio.sleep(0.05)
        ok = check()
        if not ok:
            say(f"  gave up waiting for {what} after {within:.0f} s")
        return ok

    async def settle(self, within: float = 60.0, still_s: float = 3.0) -> None:
        """Until nothing moves (services' records in and out, mail, what the follower reads)
        for `still_s` seconds."""
        deadline, last, since = time.monotonic() + within, None, time.monotonic()
        while time.monotonic() < deadline:
            await _quiet(self.services, within=min(10.0, within))
            now = (self.mail.count, *(len(v) for v in self.follower.seen.values()))
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= still_s:
                return
            await asyncio.sleep(0.5)

    def payouts_v1(self, since: int = 0) -> list[tuple[float, PayoutCommand]]:
        seen = self.follower.seen[PAYOUTS][since:]
        return [(t, r) for t, r in seen if isinstance(r, PayoutCommand)]

    def _jit(self) -> int | None:
        """Methods the broker's JIT has compiled so far; None when the bench does not run the
        broker or cannot ask."""
        return jit_compiled(self.broker_pid) if self.broker_pid else None

    async def warm_up(self) -> None:
        """Rounds of referrals through the pipeline, not measured, until the broker's JIT is
        quiet: a broker just started compiles for minutes, a C2 thread taking a quarter of a
        core at 1,000 events/s, which a running system paid long ago."""
        scale = self.scale

        async def one_round(n: int) -> None:
            say(f"warm-up round {n}: {scale.warmup:,} referrals through the pipeline, not measured")
            await self.blast(f"{WARMUP}{n}", scale.warmup, measure=False)
            await self.settle(within=scale.drain_s)

        await self._until_jit_quiet(one_round)

    async def _until_jit_quiet(self, one_round: Callable[[int], Awaitable[None]]) -> None:
        """Runs `one_round(n)` for n = 1, 2, ... until the broker's JIT compiles fewer than
        JIT_QUIET methods in a round or `warmup_max_s` has passed (one round when the bench
        does not run the broker, or cannot ask its JIT)."""
        deadline = time.monotonic() + self.scale.warmup_max_s
        compiled = self._jit()
        for n in itertools.count(1):
            await one_round(n)
            now = self._jit()
            if compiled is None or now is None:
                return
            say(f"  the broker's JIT compiled {now - compiled:,} methods in that round")
            if now - compiled < JIT_QUIET or time.monotonic() >= deadline:
                return
            compiled = now

    # -- phase 1: the year ------------------------------------------------------------------------
    async def year(self) -> None:
        scale = self.scale
        sim = simulate(scale.year_advocates, 1, datetime.now(UTC), self.program)
        truth = sim.truth
        n_events, n_referrals = len(sim.arrivals), len(truth["prospects"])
        owed, friends = int(truth["rewards_owed"]), int(truth["friend_rewards"]["count"])
        clawbacks = int(truth["clawbacks"]["count"])
        say(
            f"year mix: {scale.year_advocates:,} advocates, {n_events:,} events, "
            f"{n_referrals:,} referrals, {owed} rewards owed (ground truth)"
        )
        config = await put(self.kafka, self.program, "bench")
        stop = asyncio.Event()
        # Finance pays the year's payouts only: the warm-up's, on the same topic, paid here too
        # added a payout result and a PAID message per warm-up referral to the year's work.
        finance = Finance(self.kafka, pays=lambda p: not p.advocate_id.startswith(WARMUP))
        operator = Operator(self.kafka, config.program_id, truth["operator"]["deny"], say)
        actors = [asyncio.create_task(finance.run(stop)), asyncio.create_task(operator.run(stop))]
        hooks = pause_hooks(self.plan, self.kafka, self.services, sim)
        hook_time = [0.0]

        def timed(hook: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                began = time.monotonic()
                await hook()
                hook_time[0] += time.monotonic() - began

            return run

        timed_hooks = {i: [timed(h) for h in hs] for i, hs in hooks.items()}
        progress = Progress(total=n_events, owed=owed)
        mail0, v1_0 = len(self.mail.accepted), len(self.follower.seen[PAYOUTS])
        cpu0, t0 = self.cpu_by_process(), time.monotonic()
        await replay(self.kafka, sim, 0.0, progress, timed_hooks)
        say(f"  year published in {time.monotonic() - t0:.1f} s (pause hooks {hook_time[0]:.1f} s)")

        def v2(kind: PayoutKind, recipient: Recipient) -> int:
            return len(
                {
                    r.payout_id
                    for _, r in self.follower.seen[PAYOUTS_V2]
                    if isinstance(r, PayoutCommand) and r.kind is kind and r.recipient is recipient
                }
            )

        def settled() -> bool:
            return (
                v2(PayoutKind.PAYOUT, Recipient.ADVOCATE) >= owed
                and v2(PayoutKind.PAYOUT, Recipient.FRIEND) >= friends
                and v2(PayoutKind.CLAWBACK, Recipient.ADVOCATE)
                + v2(PayoutKind.CLAWBACK, Recipient.FRIEND)
                >= clawbacks
                and len(operator.decided) >= truth["fraud_holds"]
                and len(finance.paid) >= owed
            )

        done = await self.until(settled, scale.drain_s, "the year's payouts")
        if done:
            await self.settle(within=scale.drain_s)
        gave_up = time.monotonic()
        cpu1 = self.cpu_by_process()
        used = {name: cpu1[name] - cpu0.get(name, 0.0) for name in cpu1}
        stop.set()
        await asyncio.gather(*actors)
        last_status = max(self.follower.seen[STATUS].times, default=t0)
        last_payout = max(self.follower.seen[PAYOUTS_V2].times, default=t0)
        mails = self.mail.accepted[mail0:]
        last_mail = max((t for t, _, _ in mails), default=t0)
        if not done:  # unfinished: the time so far, so the rate is an upper bound
            last_status = last_payout = last_mail = gave_up
        note = (
            f"{n_events:,} input events, {scale.year_advocates:,} advocates, "
            f"{n_referrals:,} referrals, {len(mails):,} messages; includes the planned pause's "
            f"hooks ({hook_time[0]:.1f} s until attribution and rewards had caught up)"
        )
        if not done:
            note = f"NOT FINISHED within {gave_up - t0:.0f} s (an upper bound); " + note
        self.part.add(
            "year mix",
            n_events / (last_mail - t0),
            "events/s",
            target=10_000.0,
            note=f"to the last message ({last_mail - t0:.1f} s); " + note,
        )
        self.part.add(
            "year mix end to end, against the floor",
            n_events / (last_mail - t0),
            "events/s",
            target=YEAR_FLOOR,
            note="the same figure against issue 11's alternative to 10,000: the year's mix end "
            f"to end, to the last message, at {YEAR_FLOOR:,.0f} input events/s or more",
        )
        self.part.add(
            "year mix: statuses and payouts",
            n_events / (max(last_status, last_payout) - t0),
            "events/s",
            note=f"to the last status/payout ({max(last_status, last_payout) - t0:.1f} s); " + note,
        )
        self.part.add(
            "CPU-s per 1k referrals",
            sum(used.values()) / n_referrals * 1000,
            "cpu-s/1k referrals",
            better="lower",
            note=f"year mix, {n_referrals:,} referrals, {sum(used.values()):.1f} CPU-s of the "
            f"four service processes{' and the broker' if self.broker_pid else ''} "
            "(/proc utime+stime), replay start to settled: "
            + ", ".join(f"{name} {cpu:.1f}" for name, cpu in sorted(used.items())),
            detail={"cpu_s": {name: round(cpu, 2) for name, cpu in used.items()}},
        )
        self.checks["year"] = {
            "rewards_owed": owed,
            "advocate_payouts": v2(PayoutKind.PAYOUT, Recipient.ADVOCATE),
            "friend_rewards": friends,
            "friend_payouts": v2(PayoutKind.PAYOUT, Recipient.FRIEND),
            "messages": len(mails),
            "payouts_v1": len(self.payouts_v1(v1_0)),
            "finance_paid": len(finance.paid),
            "operator_decided": len(operator.decided),
            "fraud_holds": truth["fraud_holds"],
        }
        say(f"  year settled: {self.checks['year']}")
        paid = {
            r.referral_id
            for _, r in self.follower.seen[PAYOUTS_V2]
            if isinstance(r, PayoutCommand) and r.recipient is Recipient.ADVOCATE
        }
        missing = self.checks["year"]["won_without_payout"] = []
        for prospect, fact in truth["prospects"].items():
            rid = referral_id(self.program.program_id, prospect)
            if fact["won"] and rid not in paid:
                seen = [
                    (r.status.value, r.reason)
                    for _, r in self.follower.seen[STATUS]
                    if isinstance(r, ReferralStatusChanged) and r.referral_id == rid
                ]
                if ("REJECTED", "DENIED") not in seen:  # denied by the operator: none owed
                    missing.append(f"{prospect} {fact['advocate_id']} {seen}")
                    say(f"  won without a payout: {missing[-1]}")

    # -- phase 2: the all-WON blast -------------------------------------------------------------
    async def blast(self, tag: str, n: int, measure: bool = True) -> None:
        now = datetime.now(UTC)
        refs = list(referrals(self.program.program_id, tag, n, now))
        wanted = {r.referral_id for r in refs}
        thank_yous = {r.thank_you for r in refs}
        encoded = [
            (self.names(topic), key.encode(), self.codec.encode(record))
            for r in refs
            for topic, key, record in (*r.setup, r.won)
        ]
        seen0, mail0 = len(self.follower.seen[PAYOUTS]), len(self.mail.accepted)
        producer = make_producer(self.kafka, client_id=f"bench-{tag}", linger_ms=20)
        await producer.start()
        say(f"{tag}: {n:,} referrals, {len(encoded):,} events")
        t0 = time.monotonic()
        try:
            for topic, key, value in encoded:
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        sent_s = time.monotonic() - t0

        def got() -> set[str]:
            return {r.referral_id for _, r in self.payouts_v1(seen0)} & wanted

        if not measure:
            return
        done = await self.until(lambda: len(got()) >= n, self.scale.drain_s, "the blast's payouts")
        last = max(
            (t for t, r in self.payouts_v1(seen0) if r.referral_id in wanted), default=t0 + 1e-9
        )
        if not done:  # unfinished: the time so far, so the rate is an upper bound
            last = time.monotonic()
        self.part.add(
            "all-WON blast",
            len(encoded) / (last - t0),
            "events/s",
            note=f"{n:,} referrals (profile, share, conversion, WON deal each), {len(encoded):,} "
            f"input events, published in {sent_s:.1f} s; every advocate payout readable "
            f"read_committed on rewards.payouts.v1 after {last - t0:.1f} s"
            + ("" if done else f"; NOT FINISHED: {len(got()):,}/{n:,} (an upper bound)"),
        )
        await self.until(
            lambda: thank_yous <= {m for _, m, _ in self.mail.accepted[mail0:]},
            self.scale.drain_s,
            "the blast's thank-yous",
        )
        self.checks["blast"] = {
            "referrals": n,
            "payouts": len(got()),
            "thank_yous": len(thank_yous & {m for _, m, _ in self.mail.accepted[mail0:]}),
        }
        say(f"  blast settled: {self.checks['blast']}")

    async def profiled_blast(self, n: int) -> None:
        seconds = self.scale.profile_s
        out = self.work / "profile"
        spy = asyncio.create_task(asyncio.to_thread(profile, self.pids(), seconds, out))
        await asyncio.sleep(0.5)  # py-spy attached
        await self.blast("prof", n, measure=False)
        files = await spy
        for name, path in files.items():
            total, top = top_own(path)
            self.profile_lines.append(f"{name} ({total:,} samples, {seconds} s, all-WON blast):")
            self.profile_lines += [f"  {pct:5.1f}% own  {fn}" for fn, pct in top]
            self.profile_lines += [f"  {pct:5.1f}% incl {fn}" for fn, pct in top_total(path)]
        await self.settle(within=self.scale.drain_s)

    # -- phase 3: latency at fixed offered rates ------------------------------------------------
    async def _paced(
        self, rate: int, tag: str, n: int
    ) -> tuple[list[Referral], dict[str, float], dict[str, float], float]:
        """`n` referrals offered at `rate` input events/s: each one's profile, share and
        conversion, its WON deal LEAD_S later. Returns the referrals, when each WON was sent
        (monotonic and wall clock) and how long the offer took."""
        per_s = rate / 4
        refs = list(referrals(self.program.program_id, tag, n, datetime.now(UTC)))
        sent: dict[str, float] = {}  # referral_id -> WON sent
        sent_wall: dict[str, float] = {}  # the same, wall clock (beside records' timestamps)
        producer = make_producer(self.kafka, client_id=f"bench-{tag}")
        await producer.start()
        t0 = time.monotonic()
        setups = wons = 0
        try:
            while wons < n:
                elapsed = time.monotonic() - t0
                due_setups = min(n, int(elapsed * per_s) + 1)
                due_wons = min(n, max(0, int((elapsed - LEAD_S) * per_s) + 1))
                for r in refs[setups:due_setups]:
                    for topic, key, record in r.setup:
                        await producer.send(
                            self.names(topic), self.codec.encode(record), key=key.encode()
                        )
                setups = max(setups, due_setups)
                for r in refs[wons:due_wons]:
                    topic, key, record = r.won
                    value = self.codec.encode(record)
                    sent[r.referral_id] = time.monotonic()
                    sent_wall[r.referral_id] = time.time()
                    await producer.send(self.names(topic), value, key=key.encode())
                wons = max(wons, due_wons)
                await asyncio.sleep(0.002)
            await producer.flush()
        finally:
            await producer.stop()
        return refs, sent, sent_wall, time.monotonic() - t0

    async def paced_warm_up(self, rate: int) -> None:
        """Rounds offered at `rate` as the latency phases offer theirs, not measured, until the
        broker's JIT is quiet. The blast rounds of `warm_up` leave a steady paced load's code
        cold: a 30 s run at 1,000/s after them had the broker compile 1,078 methods, its C2
        compiler thread taking 5.4 of the broker's 21 CPU-seconds, a cost a running system
        paid long ago."""
        seconds = self.scale.paced_warmup_s
        if not seconds:
            return

        async def one_round(n: int) -> None:
            say(f"paced warm-up round {n}: {seconds:.0f} s at {rate:,}/s, not measured")
            await self._paced(rate, f"{WARMUP}-paced{n}", paced_referrals(rate, seconds))
            await self.settle(within=self.scale.drain_s, still_s=1.0)

        await self._until_jit_quiet(one_round)

    async def latency(self, rate: int) -> None:
        seconds = self.scale.rate_seconds
        n = paced_referrals(rate, seconds)
        say(f"latency @{rate}/s: {n:,} referrals over {seconds:.0f} s (WONs {LEAD_S:.0f} s later)")
        seen0, mail0 = len(self.follower.seen[PAYOUTS]), len(self.mail.accepted)
        status0 = len(self.follower.seen[STATUS])  # before the first WON: each one is counted
        commits0 = await asyncio.to_thread(self._commit_buckets)
        cycles0 = await asyncio.to_thread(self._cycle_buckets)
        jit0 = self._jit()
        cpu0, threads0, offered_at = self._cpu_all(), self._broker_threads(), time.monotonic()
        collected0 = full_collections()
        refs, sent, sent_wall, span = await self._paced(rate, f"r{rate}", n)
        self._cpu_while_offered(rate, cpu0, threads0, time.monotonic() - offered_at)
        thank = {r.thank_you: r.referral_id for r in refs}

        def payouts() -> dict[str, float]:
            return {r.referral_id: t for t, r in self.payouts_v1(seen0) if r.referral_id in sent}

        def won_statuses() -> dict[str, float]:
            """When each referral's WON status became readable: attribution's two hops (the
            deal re-keyed by prospect, then the status), the rest of WON -> payout is rewards'."""
            return {
                r.referral_id: t
                for t, r in self.follower.seen[STATUS][status0:]
                if isinstance(r, ReferralStatusChanged)
                and r.status.value == "WON"
                and r.referral_id in sent
            }

        def smtp() -> dict[str, float]:
            got: dict[str, float] = {}
            for t, mid, _ in self.mail.accepted[mail0:]:
                if mid in thank:
                    got.setdefault(thank[mid], t)
            return got

        await self.until(lambda: len(payouts()) >= n, self.scale.drain_s, "payouts")
        await self.until(lambda: len(smtp()) >= n, self.scale.drain_s, "thank-yous")
        count, ms, longest = collections_between(collected0, full_collections())
        say(
            f"  the bench's own full collections while measuring: {count}, {ms:.0f} ms in all"
            + (f", the longest <= {longest:g} ms" if longest is not None else "")
        )
        self.checks.setdefault("bench_full_collections", {})[rate] = [count, round(ms, 1)]
        commits1 = await asyncio.to_thread(self._commit_buckets)
        commit_ms = {
            name: [1000 * bucket_quantile(commits0[name], commits1[name], q) for q in (0.5, 0.99)]
            for name in commits1
        }
        say(
            "  transaction commit p50/p99 (bucket bounds): "
            + ", ".join(f"{n} {a:g}/{b:g} ms" for n, (a, b) in commit_ms.items())
        )
        self.checks.setdefault("commit_ms", {})[rate] = commit_ms
        cycles1 = await asyncio.to_thread(self._cycle_buckets)
        cycle_ms = {
            name: {
                phase: [
                    1000 * bucket_quantile(cycles0[name][phase], cycles1[name][phase], q)
                    for q in (0.5, 0.99)
                ]
                for phase in CYCLE_PHASES
            }
            for name in cycles1
        }
        for name, phases in cycle_ms.items():
            say(
                f"  cycles by phase, p50/p99 (bucket bounds) ms, {name}: "
                + ", ".join(f"{phase} {a:g}/{b:g}" for phase, (a, b) in phases.items())
            )
        self.checks.setdefault("cycle_ms", {})[rate] = cycle_ms
        jit1 = self._jit()
        if jit0 is not None and jit1 is not None:
            say(f"  the broker's JIT compiled {jit1 - jit0:,} methods during this phase")
        offered = 4 * n / max(span - LEAD_S, 1e-9)  # both streams run but for the lead
        note = (
            f"offered {offered:,.0f} input events/s for {span:.1f} s: per referral its profile, "
            f"share and conversion, its WON deal {LEAD_S:.0f} s later (WONs = 1/4 of the rate)"
        )
        for what, got, target in (
            ("WON→payout", payouts(), WON_TO_PAYOUT_P99_MS),
            ("WON→status WON", won_statuses(), None),
            ("WON→SMTP", smtp(), WON_TO_SMTP_P99_MS),
        ):
            by_won = {rid: (got[rid] - sent[rid]) * 1000 for rid in got}
            lat = list(by_won.values())
            if not lat:
                say(f"  no {what} measured at {rate}/s")
                continue
            if target is not None:
                slow, share = tail_in_windows(sent, by_won)
                say(
                    f"  {what}: {share:.0%} of the {slow} slowest 1% were sent within "
                    f"{TAIL_TOP} of the phase's {span / TAIL_WINDOW_S:.0f} windows of "
                    f"{TAIL_WINDOW_S * 1000:.0f} ms (high: stalls, not a spread)"
                )
                self.checks.setdefault("tail_in_4_windows", {})[f"{what} @{rate}"] = round(share, 3)
            for q, ms in zip(("p50", "p90", "p99"), percentiles(lat), strict=True):
                self.part.add(
                    f"{what} {q} @{rate}/s",
                    ms,
                    "ms",
                    better="lower",
                    target=target if (q == "p99" and rate == 1_000) else None,
                    note=f"{len(lat):,}/{n:,} WONs measured; " + note,
                )
        self._hops(rate, sent_wall, status0, seen0)
        self.checks.setdefault("latency", {})[rate] = {
            "wons": n,
            "payouts": len(payouts()),
            "thank_yous": len(smtp()),
        }
        await self.settle(within=self.scale.drain_s)

    def _hops(self, rate: int, sent: dict[str, float], status0: int, seen0: int) -> None:
        """Where WON -> payout goes, median by hop, from the records' producer timestamps:
        attribution (WON sent -> its status written), the status's commit and fetch (written
        -> readable), rewards (readable -> its payout written), the payout's commit and fetch."""
        status: dict[str, tuple[float, float]] = {}
        for (_, r), st in zip(
            self.follower.seen[STATUS][status0:],
            self.follower.stamps[STATUS][status0:],
            strict=True,
        ):
            if isinstance(r, ReferralStatusChanged) and r.status.value == "WON":
                status.setdefault(r.referral_id, (st[1], st[0]))
        hops: list[tuple[float, float, float, float]] = []
        for (_, r), (readable, written) in zip(
            self.follower.seen[PAYOUTS][seen0:], self.follower.stamps[PAYOUTS][seen0:], strict=True
        ):
            rid = getattr(r, "referral_id", None)
            if rid in sent and rid in status:
                s_written, s_readable = status[rid]
                hops.append(
                    (
                        s_written - sent[rid],
                        s_readable - s_written,
                        written - s_readable,
                        readable - written,
                    )
                )
        if not hops:
            return
        names = ("attribution", "status commit", "rewards", "payout commit")
        quantiles = {n: percentiles([h[i] for h in hops]) for i, n in enumerate(names)}
        medians = {n: 1000 * q[0] for n, q in quantiles.items()}
        p90s = {n: 1000 * q[1] for n, q in quantiles.items()}
        say(
            f"  WON→payout by hop, median/p90 ms ({len(hops):,} WONs): "
            + ", ".join(f"{n} {medians[n]:,.0f}/{p90s[n]:,.0f}" for n in names)
        )
        self.checks.setdefault("hops_ms", {})[rate] = medians

    # -- phase 4: a million advocates of state ------------------------------------------------
    async def state(self) -> None:
        """A million advocates of state: rewards and notifications stopped, their state
        written to their changelogs by `bench/stateload.py` (built by their own processors),
        then started: time to restore it; attribution reads the profiles and shares as global
        tables meanwhile. Then each service's peak RSS, and a clean restart of each."""
        n = self.scale.advocates
        say(f"state: bulk-loading {n:,} advocates (and a share for one in ten)")
        stateful = tuple(stateload.STATEFUL)
        for name in stateful:
            await asyncio.to_thread(self.services.stop_one, name)
        t0 = time.monotonic()
        groups = {name: f"{self.kafka.topic_prefix}referrals-{name}" for name in stateful}
        written = await stateload.load(
            self.kafka,
            self.program.program_id,
            n,
            groups,
            self.work,
            partitions=self.scale.partitions,
            show=say,
        )
        load_s = time.monotonic() - t0
        self.part.add(
            "bulk load: advocates of state written",
            n / load_s,
            "advocates/s",
            note=f"{n:,} profiles + {n // 10:,} shares to the input topics, then rewards' and "
            f"notifications' state built by their own processors and written to their "
            f"changelogs ({written}) in {load_s:.1f} s (bench/stateload.py)",
        )
        label = f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"
        for name in stateful:
            ready, restored = await asyncio.to_thread(self.services.start_one, name, 900.0)
            self._restart_figures(name, ready, restored, label, "restore", n)
        ends = await self._ends((ADVOCATES, SHARES))

        def caught_up() -> bool:
            try:
                return all(self.services.topic_in("attribution", t) >= ends[t] for t in ends)
            except OSError:
                return False

        def where() -> str:
            try:
                return ", ".join(
                    f"{t.split('.')[1]} {self.services.topic_in('attribution', t):,.0f}/{ends[t]:,}"
                    for t in ends
                )
            except OSError:
                return ""

        done = await self.until(
            caught_up, max(self.scale.drain_s, 900.0), "attribution's global tables", where
        )
        caught = time.monotonic() - t0
        unfinished = "" if done else f"; NOT CAUGHT UP ({where()}): an upper bound"
        self.part.add(
            "attribution: global tables read",
            n / caught,
            "advocates/s",
            note=f"{n:,} profiles + {n // 10:,} shares read into attribution's directory "
            f"after {caught:.1f} s" + unfinished,
        )
        await self.settle(within=60.0)
        hwm = {name: vm_hwm_mb(pid) for name, pid in self.pids().items()}
        for name in SERVICES:
            self.part.add(
                f"peak RSS {name}",
                hwm[name],
                "MB",
                better="lower",
                target=250.0,
                note=f"VmHWM with {n:,} bulk-loaded advocates of state (rewards and "
                "notifications: since their restart with it), after this run's earlier phases",
            )
        for name in self.scale.restarts:
            ready, restored = await asyncio.to_thread(self.services.restart, name)
            self._restart_figures(name, ready, restored, label, "restart", n)

    def _restart_figures(
        self, name: str, ready: float, restored: float, label: str, how: str, n: int
    ) -> None:
        what = (
            "started after the bulk load: every store restored from its changelog"
            if how == "restore"
            else "SIGTERM, started again with its local state kept"
        )
        self.part.add(
            f"{how} to ready @{label} advocates {name}",
            restored,
            "s",
            better="lower",
            target=30.0,
            note=f"{what}; seconds until it owns every task (its state restored); /readyz "
            f"answered after {ready:.1f} s; {n:,} advocates",
        )

    def _cycle_buckets(self) -> dict[str, dict[str, dict[float, float]]]:
        return {
            name: {
                phase: self.services.buckets(name, "referrals_cycle_seconds", phase=phase)
                for phase in CYCLE_PHASES
            }
            for name in ("attribution", "rewards", "notifications")
        }

    def _cpu_all(self) -> dict[str, float]:
        """CPU-seconds so far of the services, the broker, this bench and its SMTP relay."""
        out = {**self.cpu_by_process(), "bench": time.process_time()}
        if self.mail.pid is not None:
            out["relay"] = cpu_seconds(self.mail.pid)
        return out

    def _broker_threads(self) -> dict[str, float] | None:
        return jvm_thread_cpu(self.broker_pid) if self.broker_pid else None

    def _cpu_while_offered(
        self,
        rate: int,
        cpu0: dict[str, float],
        threads0: dict[str, float] | None,
        seconds: float,
    ) -> None:
        """Says how much CPU each process used while the load was offered (the machine's
        cores: the room there was), and the broker's by thread (requests, JIT, GC)."""
        cpu1, threads1 = self._cpu_all(), self._broker_threads()
        cores = os.cpu_count() or 1
        shares = cpu_shares(cpu0, cpu1, seconds)
        say(
            f"  CPU while offered, % of one core ({cores} cores: {100 * cores}%): "
            + show_shares(shares)
        )
        self.checks.setdefault("cpu_pct", {})[rate] = {n: round(v, 1) for n, v in shares.items()}
        if threads0 is not None and threads1 is not None:
            threads = cpu_shares(threads0, threads1, seconds)
            say("  the broker's CPU by thread: " + show_shares(threads))

    def _commit_buckets(self) -> dict[str, dict[float, float]]:
        return {
            name: self.services.buckets(name, "referrals_transaction_commit_seconds")
            for name in ("attribution", "rewards", "notifications")
        }

    async def _ends(self, topics: tuple[str, ...]) -> dict[str, int]:
        consumer = make_consumer(self.kafka, client_id="bench-ends")
        await consumer.start()
        try:
            from referrals.streams.kafka import partitions_of

            out = {}
            for t in topics:
                parts = await partitions_of(consumer, self.names(t))
                out[t] = sum((await consumer.end_offsets(parts)).values())
            return out
        finally:
            await consumer.stop()


PHASES = ("year", "blast", "latency", "state")
RUNS: list[Run] = []


# The bench's own collector, as the services keep theirs (`watch_gc`: survivors frozen after each
# full collection). The follower stamps each record when the bench's loop gets it, so a pause
# of the bench is a pause in every latency it measures: holding the year's and the blasts'
# records, the bench's full collections took 200-475 ms each, one every second or two, and
# showed as "stalls" where every WON in a window came out 100-400 ms slower.
BENCH_PAUSES = PauseMetrics(CollectorRegistry())


def full_collections() -> tuple[float, float, list[float]]:
    """The bench's full collections so far: (count, seconds in all, count per pause bucket)."""
    registry = BENCH_PAUSES.registry
    labels = {"generation": "2"}
    count = registry.get_sample_value("referrals_gc_pause_seconds_count", labels) or 0.0
    total = registry.get_sample_value("referrals_gc_pause_seconds_sum", labels) or 0.0
    buckets = [
        registry.get_sample_value("referrals_gc_pause_seconds_bucket", {**labels, "le": str(b)})
        or 0.0
        for b in PAUSE_BUCKETS
    ]
    return count, total, buckets


def collections_between(
    before: tuple[float, float, list[float]], after: tuple[float, float, list[float]]
) -> tuple[int, float, float | None]:
    """(full collections, ms in all, the longest's bucket bound in ms) between two readings."""
    count, total = after[0] - before[0], after[1] - before[1]
    longest = None
    for bound, a, b in zip(PAUSE_BUCKETS, before[2], after[2], strict=True):
        if b - a >= count:  # every one of them within this bound
            longest = bound * 1000
            break
    return int(count), total * 1000, longest if count else None


async def run(
    kafka: KafkaSettings,
    scale: Scale,
    work: Path,
    broker_pid: int | None,
    phases: tuple[str, ...] = PHASES,
) -> Run:
    admin = make_admin(kafka, "bench")
    await admin.start()
    try:
        await create_topics(admin, TopicNames(kafka.topic_prefix), partitions=scale.partitions)
    finally:
        await admin.close()
    r = Run(kafka, scale, work, broker_pid)
    RUNS.append(r)  # saved by `main` even when interrupted
    r.mail.__enter__()
    try:
        await put(kafka, r.program, "bench")  # the services find the program at start-up
        say("starting the services (separate processes)")
        await asyncio.to_thread(r.services.start)
        if scale.warmup:  # before the follower starts: nothing of it is counted
            await r.warm_up()
        await r.follower.start()
        try:
            if "year" in phases:
                await r.year()
            if "blast" in phases:
                await r.blast("blast", scale.blast)
                await r.settle(within=scale.drain_s)
                if scale.profile_s:
                    await r.profiled_blast(min(scale.blast, 5_000))
            if "latency" in phases:
                await r.paced_warm_up(1_000 if 1_000 in scale.rates else scale.rates[0])
                for rate in scale.rates:
                    await r.latency(rate)
            if "state" in phases:
                await r.state()
        finally:
            await r.follower.close()
            codes = await asyncio.to_thread(r.services.stop)
            say("services stopped: " + ", ".join(f"{n} {c}" for n, c in codes.items()))
    finally:
        r.mail.__exit__()
    return r


def _stop_services() -> None:
    """The services of an interrupted run (an interrupted event loop skips `run`'s finally)."""
    for r in RUNS:
        if any(p.poll() is None for p in r.services.procs.values()):
            r.services.stop()


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--bootstrap")
    parser.add_argument("--advocates", type=int, help="bulk-loaded advocates (default: scale's)")
    parser.add_argument("--year-advocates", type=int, help="the year's advocates")
    parser.add_argument("--blast", type=int, help="the blast's referrals")
    parser.add_argument("--rate-seconds", type=float, help="seconds at each offered rate")
    parser.add_argument("--drain-s", type=float, help="the longest wait for a phase to drain")
    parser.add_argument("--rates", help="offered input events/s, comma-separated")
    parser.add_argument("--partitions", type=int, help="partitions of every topic")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--phases", default=",".join(PHASES), help="a subset, comma-separated")
    parser.add_argument("--keep", type=Path, help="keep logs and state in this folder")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    overrides = {
        "advocates": args.advocates,
        "year_advocates": args.year_advocates,
        "blast": args.blast,
        "rate_seconds": args.rate_seconds,
        "drain_s": args.drain_s,
        "partitions": args.partitions,
        "rates": tuple(int(x) for x in args.rates.split(",")) if args.rates else None,
    }
    scale = replace(scale, **{k: v for k, v in overrides.items() if v is not None})
    # SIGTERM stops the services and the broker this run started, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _terminated)
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    began = time.monotonic()
    phases = tuple(p for p in args.phases.split(",") if p)
    quiet_client_logs()
    watch_gc(BENCH_PAUSES)  # for the rest of the process
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            work = args.keep or Path(tmp)
            if args.bootstrap:
                kafka = KafkaSettings(bootstrap_servers=args.bootstrap, topic_prefix=prefix)
                asyncio.run(run(kafka, scale, work, None, phases))
            else:
                cfg = broker.BrokerConfig(
                    port=free_port(), controller_port=free_port(), data_dir=work / "kafka"
                )
                say(f"starting the project's broker on {cfg.bootstrap}")
                pid = broker.start(cfg)
                try:
                    kafka = KafkaSettings(bootstrap_servers=cfg.bootstrap, topic_prefix=prefix)
                    asyncio.run(run(kafka, scale, work, pid, phases))
                finally:
                    _stop_services()
                    broker.stop(cfg)
    finally:
        _stop_services()
        # What was measured is saved, also when a phase failed or the run was interrupted.
        for r in RUNS:
            save(r.part, args.results)
            checks = args.results / "pipeline-checks.json"
            checks.write_text(json.dumps(r.checks, indent=2, default=str) + "\n")
            if r.profile_lines:
                text = "\n".join(r.profile_lines) + "\n"
                (args.results / "pipeline-profile.txt").write_text(text)
                print(text)
    say(f"pipeline bench done in {time.monotonic() - began:.0f} s: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
