"""`referrals broker start|stop|status`: the project's own Kafka broker, one node or a cluster.

The broker itself is `referrals.tools.broker`; these commands only read the command line
(which overrides the REFERRALS_BROKER_* settings) and print what happened.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from referrals.tools import broker, broker_secure

F = TypeVar("F", bound=Callable[..., Any])


@click.group("broker", short_help="Start, stop or inspect the local Kafka broker.")
def broker_group() -> None:
    """Start, stop or inspect the project's own Kafka broker (KRaft): one node, or with
    --nodes 3 a three-node cluster on this machine for trying failover.

    Settings: REFERRALS_BROKER_PORT, REFERRALS_BROKER_CONTROLLER_PORT, REFERRALS_BROKER_DATA_DIR,
    REFERRALS_BROKER_HEAP, REFERRALS_BROKER_NODES; the options override them. One node's log is
    <data dir>/broker.log. Node i of a cluster listens on port + i (controller port: controller
    port + i, by default port + nodes + i) and keeps its storage and log in <data dir>/node-<i>;
    without --nodes, a data folder holding a cluster's nodes names that many.

    --secure (or REFERRALS_BROKER_SECURE=1): SASL_SSL with SCRAM-SHA-512, TLS from a CA made for
    the data folder, the StandardAuthorizer, one SCRAM user per service and user kind; each
    one's KAFKA_* settings in <data dir>/security/<name>.env. A data folder holding a secured
    broker always starts secured.
    """


def broker_options(command: F) -> F:
    """--port, --data-dir and --nodes, the same on start, stop and status: they name one broker
    (or cluster)."""
    command = click.option(
        "--nodes",
        type=click.IntRange(min=1),
        help="Nodes of the cluster (default 1, or as many as the data folder holds).",
    )(command)
    command = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, readable=False),
        help="Storage and log folder (default .local/kafka).",
    )(command)
    return click.option("--port", type=int, help="Client port (default 9092).")(command)


def broker_config(
    port: int | None, data_dir: Path | None, nodes: int | None = None
) -> broker.BrokerConfig:
    """The settings' broker, with what the command line gives in their place. The number of
    nodes: --nodes, else REFERRALS_BROKER_NODES, else as many as the data folder holds."""
    cfg = broker.BrokerConfig.from_env()
    overrides: dict[str, Any] = {}
    if port:
        overrides["port"] = port
    if data_dir:
        overrides["data_dir"] = data_dir.resolve()
    if nodes:
        overrides["nodes"] = nodes
    elif "nodes" not in cfg.model_fields_set:
        overrides["nodes"] = broker.nodes_in(overrides.get("data_dir", cfg.data_dir))
    return broker.BrokerConfig(**{**cfg.__dict__, **overrides})


@broker_group.command("start", short_help="Start the broker; it keeps running.")
@broker_options
@click.option(
    "--secure",
    is_flag=True,
    help="SASL_SSL (SCRAM-SHA-512), TLS and ACLs; credentials in <data dir>/security.",
)
def broker_start(port: int | None, data_dir: Path | None, nodes: int | None, secure: bool) -> None:
    """Start the broker and return once it accepts clients; it keeps running in the background.
    A cluster (--nodes 3): once every node accepts clients and the cluster lists them all.

    --secure: clients must connect over SASL_SSL as one of the SCRAM users made at the first
    start (admin, attribution, rewards, notifications, api, platform, finance, operator), each
    with the KAFKA_* settings in <data dir>/security/<user>.env; nothing is allowed to them
    until `referrals acl apply` (run as admin) sets the contract's ACLs.

    The first start fetches the broker's jars with Maven into deploy/kafka/lib (once).
    """
    cfg = broker_config(port, data_dir, nodes)
    if secure:
        cfg = cfg.model_copy(update={"secure": True})
    pid = broker.start(cfg)
    if cfg.nodes == 1:
        click.echo(f"Kafka broker running at {cfg.bootstrap} (pid {pid}); log: {cfg.log_file}")
    else:
        click.echo(
            f"Kafka cluster of {cfg.nodes} nodes running at {cfg.bootstrap} (node 0: pid {pid}); "
            f"logs: {cfg.data_dir}/node-*/broker.log"
        )
    if broker_secure.secured(cfg):
        folder = broker_secure.material(cfg).folder
        click.echo(
            f"secured: SASL_SSL (SCRAM-SHA-512) and ACLs; each user's KAFKA_* settings in "
            f"{folder}/<user>.env (admin.env to create topics and apply ACLs: "
            "`referrals acl apply`)"
        )


@broker_group.command("stop", short_help="Stop the broker.")
@broker_options
def broker_stop(port: int | None, data_dir: Path | None, nodes: int | None) -> None:
    """Stop the broker (every node of a cluster) that keeps its data in the data folder
    (nothing to do if none runs)."""
    stopped = broker.stop(broker_config(port, data_dir, nodes))
    click.echo("Kafka broker stopped" if stopped else "no Kafka broker was running")


@broker_group.command(
    "status", short_help="Print the broker's state as JSON (exit 3: not running)."
)
@broker_options
@click.pass_context
def broker_status(
    ctx: click.Context, port: int | None, data_dir: Path | None, nodes: int | None
) -> None:
    """Print the broker's state as JSON; exit 0 if it runs and accepts clients, 3 if not.
    A cluster: 0 only when every node does; each node's state is under "nodes"."""
    state = broker.status(broker_config(port, data_dir, nodes))
    click.echo(json.dumps(state))
    ctx.exit(0 if state["running"] else 3)
