"""`referrals broker start|stop|status`: the project's own single-node Kafka broker.

The broker itself is `referrals.tools.broker`; these commands only read the command line
(which overrides the REFERRALS_BROKER_* settings) and print what happened.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from referrals.tools import broker

F = TypeVar("F", bound=Callable[..., Any])


@click.group("broker", short_help="Start, stop or inspect the local Kafka broker.")
def broker_group() -> None:
    """Start, stop or inspect the project's own single-node Kafka broker (KRaft).

    Settings: REFERRALS_BROKER_PORT, REFERRALS_BROKER_DATA_DIR, REFERRALS_BROKER_HEAP; the
    options override them. The broker's log is <data dir>/broker.log.
    """


def broker_options(command: F) -> F:
    """--port and --data-dir, the same on start, stop and status: they name one broker."""
    command = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, readable=False),
        help="Storage and log folder (default .local/kafka).",
    )(command)
    return click.option("--port", type=int, help="Client port (default 9092).")(command)


def broker_config(port: int | None, data_dir: Path | None) -> broker.BrokerConfig:
    """The settings' broker, with what the command line gives in their place."""
    cfg = broker.BrokerConfig.from_env()
    overrides: dict[str, Any] = {}
    if port:
        overrides["port"] = port
    if data_dir:
        overrides["data_dir"] = data_dir.resolve()
    return broker.BrokerConfig(**{**cfg.__dict__, **overrides}) if overrides else cfg


@broker_group.command("start", short_help="Start the broker; it keeps running.")
@broker_options
def broker_start(port: int | None, data_dir: Path | None) -> None:
    """Start the broker and return once it accepts clients; it keeps running in the background.

    The first start fetches the broker's jars with Maven into deploy/kafka/lib (once).
    """
    cfg = broker_config(port, data_dir)
    pid = broker.start(cfg)
    click.echo(f"Kafka broker running at {cfg.bootstrap} (pid {pid}); log: {cfg.log_file}")


@broker_group.command("stop", short_help="Stop the broker.")
@broker_options
def broker_stop(port: int | None, data_dir: Path | None) -> None:
    """Stop the broker that keeps its data in the data folder (nothing to do if none runs)."""
    stopped = broker.stop(broker_config(port, data_dir))
    click.echo("Kafka broker stopped" if stopped else "no Kafka broker was running")


@broker_group.command(
    "status", short_help="Print the broker's state as JSON (exit 3: not running)."
)
@broker_options
@click.pass_context
def broker_status(ctx: click.Context, port: int | None, data_dir: Path | None) -> None:
    """Print the broker's state as JSON; exit 0 if it runs and accepts clients, 3 if not."""
    state = broker.status(broker_config(port, data_dir))
    click.echo(json.dumps(state))
    ctx.exit(0 if state["running"] else 3)
