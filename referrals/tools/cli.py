"""`referrals`: the operator command line.

    referrals broker start|stop|status      the project's local Kafka broker
    referrals topics create                 every topic of the contract (idempotent)
    referrals publish TOPIC FILE            JSON lines (- for stdin) -> Avro records
    referrals tail TOPIC                    records as JSON lines, read_committed
    referrals program validate|put FILE     a program document (every problem, with its path)
    referrals approve|retry PAYOUT_ID       release a reward held for approval / re-issue a FAILED
                                            payout (refused, exit 1, in any other state)
    referrals reconcile [--json]            issued, paid, failed, outstanding payouts
    referrals simulate --advocates N --out DIR   a program year's events and its ground truth
    referrals report --program ID --out DIR [--truth FILE]   the program's benchmarks (HTML, JSON)
    referrals run attribution|rewards|notifications

Exit status 0 on success; otherwise non-zero with a message on standard error that names the
line and field at fault. Every command honours KAFKA_BOOTSTRAP_SERVERS (and KAFKA_TOPIC_PREFIX).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from referrals.contract.avro import AvroCodec
from referrals.contract.publish import prepare, publish
from referrals.contract.topics import TopicNames, create_topics
from referrals.platform.errors import ReferralsError
from referrals.platform.settings import KafkaSettings
from referrals.programs.put import describe, load_program, put
from referrals.streams.kafka import make_admin
from referrals.tools import broker
from referrals.tools.report import add_report_arguments, run_report
from referrals.tools.simulate import add_simulate_arguments, run_simulate
from referrals.tools.tail import tail

SERVICES = ("attribution", "rewards", "notifications")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="referrals", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("broker", help="start, stop or inspect the local Kafka broker")
    b.add_argument("action", choices=("start", "stop", "status"))
    b.add_argument("--port", type=int, help="client port (default 9092)")
    b.add_argument("--data-dir", type=Path, help="storage and log folder (default .local/kafka)")

    t = sub.add_parser("topics", help="create every topic of the contract")
    t.add_argument("action", choices=("create",))
    t.add_argument("--partitions", type=int, default=6)
    t.add_argument("--replication-factor", type=int, default=1)

    pub = sub.add_parser("publish", help="publish a JSON-lines file as Avro records")
    pub.add_argument("topic")
    pub.add_argument("file", help="JSON lines; - reads standard input")
    pub.add_argument(
        "--no-value-checks",
        action="store_true",
        help="skip impossible-value checks (to exercise a service's DLQ)",
    )
    pub.add_argument(
        "--raw",
        action="store_true",
        help="publish each line's bytes unchanged, not Avro (to exercise a DLQ)",
    )

    tl = sub.add_parser("tail", help="print a topic's records as JSON lines")
    tl.add_argument("topic")
    tl.add_argument("--from-beginning", action="store_true")
    tl.add_argument("--max", type=int, dest="max_records")
    tl.add_argument("--timeout", type=float, help="stop after this many seconds without a record")

    pg = sub.add_parser("program", help="validate or put a program document (YAML or JSON)")
    pg.add_argument("action", choices=("validate", "put"))
    pg.add_argument("file", type=Path)
    pg.add_argument("--by", help="who publishes it (default: the current user)")

    for name, text in (
        ("approve", "release a reward held for approval (REWARD_HELD NEEDS_APPROVAL)"),
        ("retry", "re-issue a FAILED payout: same payout_id, next attempt"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("payout_id")
        cmd.add_argument("--by", help="who asks, for the audit trail (default: the current user)")
    rc = sub.add_parser(
        "reconcile", help="payouts issued, paid, failed and outstanding per program and currency"
    )
    rc.add_argument("--json", action="store_true", help="machine-readable output")

    add_simulate_arguments(
        sub.add_parser("simulate", help="generate a program year's events with ground truth")
    )
    add_report_arguments(
        sub.add_parser("report", help="a program's benchmarks from its topics (HTML and JSON)")
    )

    r = sub.add_parser("run", help="run one service in the foreground (SIGTERM stops it)")
    r.add_argument("service", choices=SERVICES)
    return p


def _broker(args: argparse.Namespace) -> int:
    cfg = broker.BrokerConfig.from_env()
    overrides = {}
    if args.port:
        overrides["port"] = args.port
    if args.data_dir:
        overrides["data_dir"] = args.data_dir.resolve()
    if overrides:
        cfg = broker.BrokerConfig(**{**cfg.__dict__, **overrides})
    if args.action == "start":
        pid = broker.start(cfg)
        print(f"Kafka broker running at {cfg.bootstrap} (pid {pid}); log: {cfg.log_file}")
    elif args.action == "stop":
        stopped = broker.stop(cfg)
        print("Kafka broker stopped" if stopped else "no Kafka broker was running")
    else:
        state = broker.status(cfg)
        print(json.dumps(state))
        return 0 if state["running"] else 3
    return 0


async def _topics(args: argparse.Namespace, settings: KafkaSettings) -> int:
    admin = make_admin(settings, "referrals-cli")
    await admin.start()
    try:
        created = await create_topics(
            admin,
            TopicNames(settings.topic_prefix),
            partitions=args.partitions,
            replication_factor=args.replication_factor,
        )
    finally:
        await admin.close()
    print(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))
    return 0


def _program(args: argparse.Namespace, settings: KafkaSettings) -> int:
    doc = load_program(args.file)
    if args.action == "validate":
        print(f"{args.file}: valid {describe(doc)}")
        return 0
    config = asyncio.run(put(settings, doc, args.by))
    print(f"put {config.program_id} version {config.version} ({describe(doc)})")
    return 0


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    return Path(path).read_text(encoding="utf-8").splitlines()


def quiet_client_logs() -> None:
    """aiokafka logs retriable errors (e.g. a new partition not loaded yet) at ERROR and then
    retries; a command's real failures surface as exceptions, so keep its output readable."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "run":
        quiet_client_logs()
    settings = KafkaSettings.from_env()
    try:
        if args.command == "broker":
            return _broker(args)
        if args.command == "topics":
            return asyncio.run(_topics(args, settings))
        if args.command == "publish":
            records = prepare(
                args.topic,
                _read_lines(args.file),
                AvroCodec(),
                check=not args.no_value_checks,
                raw=args.raw,
            )
            count = asyncio.run(publish(settings, args.topic, records))
            print(f"published {count} record(s) to {args.topic}", file=sys.stderr)
            return 0
        if args.command == "tail":
            asyncio.run(
                tail(
                    settings,
                    args.topic,
                    from_beginning=args.from_beginning,
                    max_records=args.max_records,
                    timeout_s=args.timeout,
                )
            )
            return 0
        if args.command == "program":
            return _program(args, settings)
        if args.command in ("approve", "retry", "reconcile"):
            # Imported here: the rewards service's operator commands, not needed by the others.
            from services.rewards.adapters import operator

            return operator.main(args, settings)
        if args.command == "simulate":
            return run_simulate(args)
        if args.command == "report":
            return run_report(args)
        if args.command == "run":
            module = importlib.import_module(f"services.{args.service}.app")
            status: int = module.main()
            return status
    except (ReferralsError, KeyError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"referrals {args.command}: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
