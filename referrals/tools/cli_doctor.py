"""`referrals doctor`: is this deployment healthy? The checks are `referrals.tools.doctor`'s;
this command reads the command line, prints the report and exits with its status: 0 healthy,
1 problems found, 2 the broker cannot be reached with the configured KAFKA_* settings."""

from __future__ import annotations

import asyncio
import os

import click

from referrals.platform.errors import ConfigError
from referrals.platform.settings import KafkaSettings
from referrals.tools.doctor.checks import CHECK_NAMES, Options, diagnose
from referrals.tools.doctor.findings import to_json, to_text
from referrals.tools.doctor.targets import SERVICES, parse_urls, services


@click.command("doctor", short_help="Check broker, topics, programs, services and lag.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON).")
@click.option(
    "--url",
    "urls",
    multiple=True,
    metavar="SERVICE=URL",
    help="Where a service's health endpoints are, e.g. rewards=http://10.0.0.5:9202 "
    "(repeatable; also DOCTOR_<SERVICE>_URL). Default: <SERVICE>_METRICS_HOST and _PORT.",
)
@click.option(
    "--services",
    "service_names",
    default=",".join(SERVICES),
    show_default=True,
    envvar="DOCTOR_SERVICES",
    help="The services that should be running, comma-separated.",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    envvar="DOCTOR_PARTITIONS",
    help="Partitions every topic must have (default: the count most topics have).",
)
@click.option(
    "--max-lag",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    envvar="DOCTOR_MAX_LAG",
    help="Records a consumer group may trail its inputs by, in all, before it is a problem.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    envvar="DOCTOR_TIMEOUT_S",
    help="Seconds to wait for each answer from the broker or a service.",
)
@click.option(
    "--skip",
    multiple=True,
    type=click.Choice(CHECK_NAMES[1:]),
    help="A check not to run (repeatable).",
)
@click.pass_context
def doctor_command(
    ctx: click.Context,
    as_json: bool,
    urls: tuple[str, ...],
    service_names: str,
    partitions: int | None,
    max_lag: int,
    timeout: float,
    skip: tuple[str, ...],
) -> None:
    """Check the deployment this environment describes, and say how to fix what is wrong.

    In order: the broker answers with the KAFKA_* settings; every topic exists with the
    expected partitions, replication factor (min(3, brokers)), min.insync.replicas and
    configs (compaction where the catalogue says); the programs on programs.config.v1 parse
    as the services read them; each service's /readyz answers ready; each consumer group
    trails its inputs by at most --max-lag records.

    Exit status 0 healthy, 1 problems found, 2 the broker cannot be reached.
    """
    try:
        names = [n.strip() for n in service_names.split(",") if n.strip()]
        targets = services(os.environ, parse_urls(urls), names)
    except ConfigError as err:
        raise click.BadParameter(str(err)) from err
    options = Options(targets, partitions, max_lag, timeout, frozenset(skip))
    report = asyncio.run(diagnose(KafkaSettings.from_env(), options))
    click.echo(to_json(report) if as_json else to_text(report))
    ctx.exit(report.exit_status)
