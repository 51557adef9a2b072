"""`referrals simulate` and `referrals report`: a program year with its ground truth, and the
benchmarks measured back from the topics.

The work is `referrals.tools.simulate` and `referrals.tools.report` (plain typed functions);
these commands only read the command line and pass on the exit status.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from referrals.tools.report import run_report
from referrals.tools.simulate import DEMO_PROGRAM, parse_instant, run_simulate


class Instant(click.ParamType):
    """An ISO 8601 time with a zone (`2026-05-01T12:00Z`), as a UTC datetime."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            return parse_instant(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


# No checks on the path here (completion only): reading or writing it reports a problem, exit 1.
A_PATH = click.Path(path_type=Path, readable=False)


@click.command("simulate", short_help="Generate a program year's events with ground truth.")
@click.option("--advocates", type=int, default=5850, show_default=True, help="Enrolled advocates.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same year.")
@click.option("--out", type=A_PATH, required=True, help="Folder for the files written.")
@click.option(
    "--program", type=A_PATH, default=DEMO_PROGRAM, help="Program document (default: the demo's)."
)
@click.option("--now", type=Instant(), help="End of the simulated year, ISO 8601 (default: now).")
@click.pass_context
def simulate(
    ctx: click.Context, advocates: int, seed: int, out: Path, program: Path, now: datetime | None
) -> None:
    """Generate a program year's events as the platform teams would publish them.

    Writes <topic>.jsonl per input topic, arrival.jsonl (every event in arrival order) and the
    ground truth, truth.json, to --out. The same seed gives the same year.
    """
    ctx.exit(run_simulate(advocates=advocates, seed=seed, out=out, program=program, now=now))


@click.command("report", short_help="A program's benchmarks from its topics (HTML and JSON).")
@click.option("--program", "program_id", required=True, help="The program_id to report on.")
@click.option("--out", type=A_PATH, required=True, help="Folder for report.html and report.json.")
@click.option("--truth", type=A_PATH, help="truth.json of `referrals simulate`, to compare with.")
@click.pass_context
def report(ctx: click.Context, program_id: str, out: Path, truth: Path | None) -> None:
    """Measure a program's benchmarks from its topics: report.html (charts) and report.json.

    With --truth, each figure is shown beside the ground truth; exit 1 if one that must be
    exact differs.
    """
    ctx.exit(run_report(program_id=program_id, out=out, truth_file=truth))
