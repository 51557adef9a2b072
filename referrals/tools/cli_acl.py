"""`referrals acl show|apply`: the contract's least-privilege ACLs (`referrals.contract.acls`).

`show` prints the principal x topic table (or, with --bindings, every ACL binding it means);
`apply` makes the cluster hold exactly those bindings for the table's principals, creating the
missing ones and deleting any other binding of those principals (or of `User:*`), and returns
once every broker enforces them. It must run as the admin principal (the KAFKA_* settings of
`<data dir>/security/admin.env`). Topic names take KAFKA_TOPIC_PREFIX; the services' consumer
groups their <SERVICE>_GROUP_ID, as the services themselves read them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import click

from referrals.contract import acls
from referrals.platform.acls import AclBinding
from referrals.platform.settings import KafkaSettings
from referrals.streams.acls import Change, reconcile
from referrals.streams.kafka import make_admin


@click.group("acl", short_help="Show or apply the contract's least-privilege ACLs.")
def acl_group() -> None:
    """The contract's principal x topic table as Kafka ACLs: `show` prints it, `apply` puts it on
    a secured cluster (`referrals broker start --secure`), exactly and nothing more.

    Topic names get KAFKA_TOPIC_PREFIX; each service's consumer group is its <SERVICE>_GROUP_ID
    (default referrals-<service>), its transactional ids start with `<group>-`.
    """


def groups_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each service's consumer group as the service reads it (`<SERVICE>_GROUP_ID`)."""
    env = os.environ if env is None else env
    found = acls.default_groups()
    for service in acls.SERVICES:
        given = env.get(f"{service.upper()}_GROUP_ID", "")
        if given:
            found[service] = given
    return found


@acl_group.command("show", short_help="Print the principal x topic table.")
@click.option("--bindings", is_flag=True, help="Every ACL binding instead of the table.")
def acl_show(bindings: bool) -> None:
    """Print who writes, reads and owns which topic (the contract's Security table), or with
    --bindings every ACL binding `apply` would leave on the cluster, one per line:
    `User:rewards ALLOW WRITE TOPIC rewards.payouts.v1` (a trailing * marks a prefix)."""
    prefix = KafkaSettings.from_env().topic_prefix
    if bindings:
        for binding in acls.bindings(prefix, groups_from_env()):
            click.echo(str(binding))
        return
    click.echo(acls.table_text(prefix))
    groups = groups_from_env()
    click.echo(
        "consumer groups and transactional ids: "
        + "; ".join(f"{s} {g} and {g}-*" for s, g in groups.items())
        + "; api, platform, finance, operator: <name>-*"
    )


@acl_group.command("apply", short_help="Make the cluster hold exactly the table's ACLs.")
@click.option("--dry-run", is_flag=True, help="Only print what would be created and deleted.")
def acl_apply(dry_run: bool) -> None:
    """Create the missing bindings of the table and delete every other binding of its principals
    (and of User:*); return once every broker enforces the result. Run as the admin principal.

    Prints each binding created (+) and deleted (-), then a count.
    """
    settings = KafkaSettings.from_env()
    wanted = acls.bindings(settings.topic_prefix, groups_from_env())
    change = asyncio.run(_apply(settings, wanted, dry_run))
    for binding in change.created:
        click.echo(f"+ {binding}")
    for binding in change.deleted:
        click.echo(f"- {binding}")
    verb = "would create" if dry_run else "created"
    verb_deleted = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {len(change.created)}, {verb_deleted} {len(change.deleted)} ACL binding(s); "
        f"the table's principals hold {len(wanted)}",
        err=True,
    )


async def _apply(settings: KafkaSettings, wanted: list[AclBinding], dry_run: bool) -> Change:
    admin = make_admin(settings, "referrals-acl")
    await admin.start()
    try:
        return await reconcile(admin, wanted, acls.managed, dry_run=dry_run)
    finally:
        await admin.close()
