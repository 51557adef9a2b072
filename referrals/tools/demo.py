"""`make demo`: a whole referral program year on a local broker, ending with the program report.

1. a fresh local Kafka broker (own data under .demo/, port 9092 unless DEMO_KAFKA_PORT says
   otherwise) and every topic of the contract;
2. the year (`referrals.tools.program_year.run_year`): the compressed-year program put, a program
   year of the average program (DEMO_ADVOCATES, default 5,850) generated with its ground truth,
   a local SMTP server catching the mail, the three services as separate processes, finance
   paying each payout (friends' too), an operator reviewing fraud holds; the events replayed
   over DEMO_SECONDS (default 75) with live progress, the program paused for two weeks of it;
3. a deliberately malformed record, shown in its topic's .dlq with the reason;
4. everything stopped cleanly (also on Ctrl-C), and where the report is: .demo/report/.

`make demo SECURE=1` (DEMO_SECURE=1) runs the same year on a secured broker (`referrals broker
start --secure`): topics created and the contract's ACLs applied as the admin, then every party
as its own principal: the services and the API as themselves, the platform replaying the
events, finance paying, the operator putting the program, reviewing holds and reading the
report.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time

from referrals.contract import acls
from referrals.contract.publish import Prepared, publish
from referrals.contract.topics import SHARES, TopicNames, create_topics, dlq_of
from referrals.platform.settings import KafkaSettings
from referrals.streams.acls import reconcile
from referrals.streams.kafka import make_admin
from referrals.tools import broker, broker_secure
from referrals.tools.cli import quiet_client_logs
from referrals.tools.program_year import Principals, YearPlan, run_year
from referrals.tools.tail import tail

ROOT = broker.REPO_ROOT
DEMO = ROOT / ".demo"
MALFORMED = b"not Avro: a platform team's producer sent plain text by mistake"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


async def _prepare(as_: Principals, secure: bool) -> None:
    admin = make_admin(as_(acls.ADMIN), "demo")
    await admin.start()
    try:
        created = await create_topics(admin, TopicNames(), partitions=6)
        print(f"created {len(created)} topics (6 partitions each; a .dlq beside each)")
        if secure:
            change = await reconcile(admin, acls.bindings(), acls.managed)
            print(
                f"applied the contract's ACLs: {len(change.created)} bindings for "
                f"{', '.join(acls.PRINCIPALS)} (admin: the super user)"
            )
    finally:
        await admin.close()
    await publish(as_("platform"), SHARES, [Prepared(b"adv-typo", MALFORMED)])
    print(f"published 1 malformed record to {SHARES}, on purpose")


def _principals(cfg: broker.BrokerConfig, secure: bool) -> Principals:
    """How each party reaches the broker: as itself when it is secured, else all alike."""
    plain = KafkaSettings(bootstrap_servers=cfg.bootstrap)
    if not secure:
        return lambda _who: plain
    return lambda who: broker_secure.client_settings(cfg, who)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C and SIGTERM stop everything the demo started, however it was launched (a shell's
    # background job inherits SIGINT ignored; Python then installs no handler of its own).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupted)
    quiet_client_logs()
    secure = os.environ.get("DEMO_SECURE", "").strip().lower() in ("1", "true", "yes", "on")
    cfg = broker.BrokerConfig(
        port=int(os.environ.get("DEMO_KAFKA_PORT", "9092")),
        data_dir=DEMO / "kafka",
        secure=secure,
    )
    kafka = KafkaSettings(bootstrap_servers=cfg.bootstrap)
    as_ = _principals(cfg, secure)
    plan = YearPlan(
        work=DEMO,
        advocates=int(os.environ.get("DEMO_ADVOCATES", "5850")),
        seconds=float(os.environ.get("DEMO_SECONDS", "75")),
    )
    try:
        secured = " secured: SASL_SSL, SCRAM users, ACLs" if secure else ""
        say(f"Starting a fresh local Kafka broker (KRaft; jars from Maven Central){secured}")
        if cfg.pid_file.exists():
            broker.stop(cfg)
        shutil.rmtree(DEMO, ignore_errors=True)
        DEMO.mkdir(parents=True)
        t0 = time.monotonic()
        pid = broker.start(cfg)
        print(f"broker up at {cfg.bootstrap} (pid {pid}) in {time.monotonic() - t0:.1f} s")
        asyncio.run(_prepare(as_, secure))
        say("A program year, compressed: three services, SMTP catching mail, finance paying")
        outcome = asyncio.run(run_year(plan, kafka, as_ if secure else None))
        say(f"The malformed record, in {dlq_of(SHARES)} with its reason")
        operator = as_("operator")
        asyncio.run(tail(operator, dlq_of(SHARES), from_beginning=True, max_records=1, timeout_s=5))
        say("The program report, beside the generator's ground truth")
        for c in outcome.comparisons:
            mark = "ok " if c.ok else "MISMATCH"
            kind = "exact" if c.exact else f"within {c.tolerance:g}"
            kind = "informational" if c.informational else kind
            measured, truth = (
                (f"{int(c.measured):<10}", f"{int(c.truth):<10}")
                if c.exact or c.informational
                else (f"{c.measured:<10.4g}", f"{c.truth:<10.4g}")
            )
            print(f"  {mark} {c.name:<40} measured {measured} truth {truth} {kind}")
        say("The top advocate's portal, served by the gRPC API (GetAdvocate, ListReferrals)")
        print(outcome.portal)
        print(f"\n{outcome.published:,} events published; {outcome.mails:,} emails caught by SMTP")
        print(f"report: {outcome.report}  (and report.json beside it)")
        return 0 if outcome.ok else 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        say("Stopping the broker")
        if broker.stop(cfg):
            print(f"broker stopped; logs, state and the report stay in {DEMO}")


if __name__ == "__main__":
    sys.exit(main())
