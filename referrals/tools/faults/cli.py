"""`referrals faults`: the fault suite from the command line (`make faults` runs it)."""

from __future__ import annotations

import signal
from pathlib import Path

import click

SCALES = ("bounded", "standard", "long")  # referrals.tools.faults.suite.SCALES (a test checks)


@click.command("faults", short_help="Run the fault suite and write its report.")
@click.option(
    "--scale",
    type=click.Choice(list(SCALES)),
    default="standard",
    show_default=True,
    help="bounded: ~300 referrals, >= 20 kills, about 4 minutes (make test); standard: 2,000 "
    "referrals, 40 kills, three brokers; long: 10,000 referrals, 120 kills.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".faults"),
    show_default=True,
    help="Directory for logs and fault-report.json/.md (the broker's data is removed after).",
)
@click.option(
    "--seed", type=int, default=7, show_default=True, help="Seed of the workload and timeline."
)
def faults(scale: str, out: Path, seed: int) -> None:
    """Run every service as separate processes (two attribution and two rewards instances) on a
    broker of its own, publish a workload whose payouts are known in advance with a corpus of
    bad input, inject faults (SIGKILLs, a zombie, broker restarts, the SMTP relay down), then
    check: exit 1 when a payout is missing or doubled or a service is not up at the end."""
    # SIGTERM (a CI timeout) stops the run like Ctrl-C: services, mail and broker are stopped.
    signal.signal(signal.SIGTERM, _interrupted)
    from referrals.tools.faults.suite import run_suite  # loads the services: only when run

    report = run_suite(scale, out, seed)
    if not report.ok:
        raise click.exceptions.Exit(1)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
