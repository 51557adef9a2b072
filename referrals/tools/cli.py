"""`referrals`: the operator command line, on click.

    referrals broker start|stop|status      the project's local Kafka broker   (cli_broker)
    referrals topics create                 every topic of the contract (idempotent)
    referrals acl show|apply                the contract's least-privilege ACLs   (cli_acl)
    referrals publish TOPIC FILE            JSON lines (- for stdin) -> Avro records
    referrals tail TOPIC                    records as JSON lines, read_committed
    referrals program validate|put FILE     a program document (every problem, with its path)
    referrals program preview FILE          what FILE would have issued over the recorded
                                            history, beside what was issued (nothing written)
    referrals approve|deny|retry PAYOUT_ID  release / deny a reward held for review, re-issue a
                                            FAILED payout: the rewards service answers (exit 0
                                            applied, 1 refused, 2 no answer within --timeout)
    referrals reconcile [--json]            issued, paid, failed, outstanding, clawed back
    referrals tax-report --year YYYY        CSV: paid per advocate in a year  (cli_payouts)
    referrals erase ADVOCATE_ID             GDPR erasure: the advocate's tombstone (cli_personal)
    referrals export ADVOCATE_ID            everything held about an advocate, as JSON
    referrals simulate --advocates N --out DIR   a program year and its ground truth
    referrals report --program ID --out DIR [--truth FILE]   benchmarks   (cli_benchmarks)
    referrals faults [--scale bounded|standard|long] [--out DIR]   the fault suite
    referrals doctor [--json]               is the deployment healthy? what to fix  (cli_doctor)
    referrals api token --role ROLE         a gRPC API token and its tokens-file line  (cli_api)
    referrals run attribution|rewards|notifications|api

Exit status 0 on success; 1 with a one-line message on standard error (`referrals COMMAND:
...`, naming the line and field at fault for bad input) when a command fails on purpose; 2 on
a usage error; 130 on Ctrl-C; `broker status` exits 3 when no broker runs; approve, deny and
retry exit 2 when the rewards service did not answer in time; doctor exits 1 when it finds a
problem and 2 when the broker cannot be reached. Every command that
talks to Kafka honours KAFKA_BOOTSTRAP_SERVERS (and KAFKA_TOPIC_PREFIX).

Each command is one function: click turns the command line into typed values, the function
calls the module that does the work and prints the answer. `referrals --help` and `referrals
COMMAND --help` describe them. Shell completion is click's: `_REFERRALS_COMPLETE=bash_source
referrals` (zsh_source, fish_source) prints the script a shell sources.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from referrals.contract.avro import AvroCodec
from referrals.contract.publish import prepare, publish
from referrals.contract.topics import (
    CATALOGUE,
    DEFAULT_DLQ_RETENTION_DAYS,
    DLQ_SUFFIX,
    TopicNames,
    create_topics,
)
from referrals.platform.errors import ReferralsError
from referrals.platform.settings import AmountLimits, KafkaSettings, load
from referrals.programs.put import describe, load_program, put
from referrals.streams.kafka import make_admin
from referrals.tools.cli_acl import acl_group
from referrals.tools.cli_api import api_group
from referrals.tools.cli_benchmarks import report, simulate
from referrals.tools.cli_broker import broker_group
from referrals.tools.cli_doctor import doctor_command
from referrals.tools.cli_payouts import approve, deny, reconcile, retry, tax_report
from referrals.tools.cli_personal import erase_command, export_command
from referrals.tools.faults.cli import faults
from referrals.tools.tail import tail

SERVICES = ("attribution", "rewards", "notifications", "api")
EXPECTED_ERRORS = (ReferralsError, KeyError, OSError)  # what a command raises on purpose
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
COMPLETION = """Shell completion (add to your shell's start-up file):

\b
  bash:  eval "$(_REFERRALS_COMPLETE=bash_source referrals)"
  zsh:   eval "$(_REFERRALS_COMPLETE=zsh_source referrals)"
  fish:  _REFERRALS_COMPLETE=fish_source referrals | source
"""


class ReferralsGroup(click.Group):
    """The root group: commands listed in a newcomer's order (setup, data, programs, payouts,
    analysis, services), and an error a command raises on purpose printed as one line, exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EXPECTED_ERRORS as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            click.echo(f"referrals {ctx.invoked_subcommand}: {message}", err=True)
            raise click.exceptions.Exit(1) from err
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None


@click.group(cls=ReferralsGroup, context_settings=CONTEXT, epilog=COMPLETION)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """The referral engine's operator command line: a local broker, the contract's topics,
    records in and out, program documents, payouts, simulation and reports, the services.

    Commands that talk to Kafka read KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092) and
    KAFKA_TOPIC_PREFIX. `referrals COMMAND --help` describes a command.
    """
    if ctx.invoked_subcommand != "run":  # a service configures its own logging
        quiet_client_logs()


def quiet_client_logs() -> None:
    """aiokafka logs retriable errors (e.g. a new partition not loaded yet) at ERROR and then
    retries; a command's real failures surface as exceptions, so keep its output readable."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def complete_topic(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion for a TOPIC: the contract's topics and their dead-letter topics."""
    topics = [spec.name for spec in CATALOGUE]
    names = sorted([*topics, *(name + DLQ_SUFFIX for name in topics)])
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


# -- topics and records -------------------------------------------------------------------------
@click.group("topics", short_help="Create the contract's topics.")
def topics_group() -> None:
    """Manage the contract's topics on the cluster."""


@topics_group.command("create", short_help="Create every topic of the contract (idempotent).")
@click.option("--partitions", type=int, default=6, show_default=True, help="Partitions per topic.")
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    help="Replicas per partition (default: min(3, brokers in the cluster)).",
)
@click.option(
    "--dlq-retention-days",
    type=click.IntRange(min=1),
    default=DEFAULT_DLQ_RETENTION_DAYS,
    show_default=True,
    envvar="REFERRALS_DLQ_RETENTION_DAYS",
    show_envvar=True,
    help="How long dead-letter topics keep records (they may hold personal data).",
)
def topics_create(partitions: int, replication_factor: int | None, dlq_retention_days: int) -> None:
    """Create every topic of the contract and its .dlq; topics that exist are left as they are."""
    kafka = KafkaSettings.from_env()
    created = asyncio.run(_create_topics(kafka, partitions, replication_factor, dlq_retention_days))
    click.echo(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))


async def _create_topics(
    settings: KafkaSettings,
    partitions: int,
    replication_factor: int | None,
    dlq_retention_days: int = DEFAULT_DLQ_RETENTION_DAYS,
) -> list[str]:
    admin = make_admin(settings, "referrals-cli")
    await admin.start()
    try:
        names = TopicNames(settings.topic_prefix)
        return await create_topics(
            admin,
            names,
            partitions=partitions,
            replication_factor=replication_factor,
            dlq_retention_days=dlq_retention_days,
        )
    finally:
        await admin.close()


@click.command("publish", short_help="Publish a JSON-lines file as Avro records.")
@click.argument("topic", shell_complete=complete_topic)
@click.argument("file")
@click.option(
    "--no-value-checks",
    is_flag=True,
    help="Skip impossible-value checks (to exercise a service's DLQ).",
)
@click.option(
    "--raw", is_flag=True, help="Publish each line's bytes unchanged, not Avro (to exercise a DLQ)."
)
def publish_command(topic: str, file: str, no_value_checks: bool, raw: bool) -> None:
    """Publish FILE, JSON lines (- reads standard input), to TOPIC as Avro records.

    Every line is checked first (schema, then impossible values); a bad line is reported as
    `line N, field 'x': reason` and nothing is published. A valid file goes out in one
    transaction, so readers see all of it or none.
    """
    lines = _read_lines(file)
    limits = load(AmountLimits)  # the ceilings the services check, so both agree
    records = prepare(topic, lines, AvroCodec(), check=not no_value_checks, raw=raw, limits=limits)
    count = asyncio.run(publish(KafkaSettings.from_env(), topic, records))
    click.echo(f"published {count} record(s) to {topic}", err=True)


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    return Path(path).read_text(encoding="utf-8").splitlines()


@click.command("tail", short_help="Print a topic's records as JSON lines.")
@click.argument("topic", shell_complete=complete_topic)
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the end.")
@click.option("--max", "max_records", type=int, help="Stop after this many records.")
@click.option("--timeout", type=float, help="Stop after this many seconds without a record.")
def tail_command(
    topic: str, from_beginning: bool, max_records: int | None, timeout: float | None
) -> None:
    """Print TOPIC's committed records (read_committed) as JSON lines, one value per line.

    On a .dlq topic each line holds the headers, the original bytes (base64) and the value
    when it still decodes.
    """
    settings = KafkaSettings.from_env()
    asyncio.run(
        tail(
            settings,
            topic,
            from_beginning=from_beginning,
            max_records=max_records,
            timeout_s=timeout,
            out=sys.stdout,  # the stream of the moment (tail's default is bound at import)
        )
    )


# -- program documents --------------------------------------------------------------------------
@click.group("program", short_help="Validate, preview or put a program document (YAML or JSON).")
def program_group() -> None:
    """Check, preview or publish a program document (YAML or JSON), as marketing writes it."""


# No checks on the path here: reading it reports a missing file as a command error (exit 1).
PROGRAM_FILE = click.Path(path_type=Path, readable=False)


@program_group.command("validate", short_help="Check a document; list every problem.")
@click.argument("file", type=PROGRAM_FILE)
# Accepted and ignored, as before click, so a script passing --by to validate and put still works.
@click.option("--by", hidden=True, help="Ignored: validating publishes nothing.")
def program_validate(file: Path, by: str | None) -> None:
    """Check FILE and report every problem with its path (`rewards.tiers[2].percent: ...`)."""
    doc = load_program(file)
    click.echo(f"{file}: valid {describe(doc)}")


@program_group.command("put", short_help="Check a document and publish its next version.")
@click.argument("file", type=PROGRAM_FILE)
@click.option("--by", help="Who publishes it (default: the current user).")
def program_put(file: Path, by: str | None) -> None:
    """Check FILE and publish it, defaults filled in, as the program's next version.

    Running services pick the new version up without a restart.
    """
    doc = load_program(file)
    config = asyncio.run(put(KafkaSettings.from_env(), doc, by))
    click.echo(f"put {config.program_id} version {config.version} ({describe(doc)})")


@program_group.command("preview", short_help="What a document would have issued, before put.")
@click.argument("file", type=PROGRAM_FILE)
@click.option(
    "--since",
    metavar="DATE",
    help="Only referrals whose first conversion or deal is on or after DATE (YYYY-MM-DD in "
    "the program's time zone, or an ISO 8601 time); the whole history is still replayed.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON).")
def program_preview(file: Path, since: str | None, as_json: bool) -> None:
    """Replay the program's recorded events, read from the topics, through the services' rules
    with FILE, in this process, writing nothing; print per tier and reward type the count and
    amount FILE would have issued beside what was issued, and the referrals whose outcome
    changes.

    Recorded operator approvals and denials and finance's results are replayed by payout_id; a
    reward FILE holds for review that no recorded command decides is reported held. A reward
    due by now (WON + hold_days) counts as issued. FILE's status applies to the whole history.
    """
    from referrals.tools.preview.compare import to_dict
    from referrals.tools.preview.run import parse_since, run_preview
    from referrals.tools.preview.text import to_text

    doc = load_program(file)
    preview = asyncio.run(
        run_preview(
            KafkaSettings.from_env(),
            doc,
            name=str(file),
            now=datetime.now(UTC),
            since=None if since is None else parse_since(since, doc.time_zone),
            limits=load(AmountLimits),
        )
    )
    click.echo(json.dumps(to_dict(preview), indent=2) if as_json else to_text(preview))


# -- the services -------------------------------------------------------------------------------
@click.command("run", short_help="Run one service in the foreground (SIGTERM stops it).")
@click.argument("service", type=click.Choice(SERVICES), metavar="SERVICE")
@click.pass_context
def run_command(ctx: click.Context, service: str) -> None:
    """Run SERVICE (attribution, rewards, notifications or api) in the foreground.

    It reads its settings from the environment; SIGTERM or Ctrl-C stops it cleanly.
    """
    # Imported only now: running one service must not load the others.
    module = importlib.import_module(f"services.{service}.app")
    status: int = module.main()
    ctx.exit(status)


for command in (
    broker_group,
    topics_group,
    acl_group,
    publish_command,
    tail_command,
    program_group,
    approve,
    deny,
    retry,
    reconcile,
    tax_report,
    erase_command,
    export_command,
    simulate,
    report,
    faults,
    doctor_command,
    api_group,
    run_command,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """The `referrals` console script: runs one command and returns its exit status."""
    try:
        cli.main(args=None if argv is None else list(argv), prog_name="referrals")
    except SystemExit as stop:  # a standalone click run always ends in SystemExit
        return stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
