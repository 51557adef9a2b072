"""Kafka ACLs on a cluster: list them, and make a set of bindings exactly what a cluster holds.

aiokafka 0.14's admin client has no ACL methods, but aiokafka ships the protocol's DescribeAcls,
CreateAcls and DeleteAcls (v1: literal and prefixed patterns); this module sends them over the
admin client's own connection, like `referrals.streams.offsets` does for OffsetFetch. Kafka's
`kafka.admin.AclCommand` would do the same job but needs a JVM per resource pattern and
operation set (dozens of JVM starts for the contract's table); the result on the broker is the
same bindings (`kafka-acls --list` shows them).

In KRaft a broker answers DescribeAcls from the ACLs its own authorizer has applied, so after
a change `reconcile` asks every broker until each holds exactly the wanted set: when it returns,
the cluster enforces it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import errors as Errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request

from referrals.platform.acls import (
    AclBinding,
    AclOperation,
    PatternType,
    Permission,
    ResourceType,
)
from referrals.platform.errors import ReferralsError


class AclError(ReferralsError):
    reason = "ACL"


SECURITY_DISABLED = 54  # the broker runs without an authorizer


class _DescribeAll(Request[DescribeAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 29

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        any_ = 1  # ANY for the resource type, pattern, operation and permission
        return request_struct_class(any_, None, any_, None, None, any_, any_)


class _Create(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 30

    def __init__(self, items: list[AclBinding]) -> None:
        self.items = items

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class([_wire(b) for b in self.items])


class _Delete(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 31

    def __init__(self, items: list[AclBinding]) -> None:
        self.items = items

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class([_wire(b) for b in self.items])


def _wire(b: AclBinding) -> tuple[int, str, int, str, str, int, int]:
    return (
        int(b.resource_type),
        b.name,
        int(b.pattern),
        b.principal,
        b.host,
        int(b.operation),
        int(b.permission),
    )


def _binding(resource: tuple[Any, ...], acl: tuple[Any, ...]) -> AclBinding | None:
    """A described binding; None for kinds this project never writes (DENY, other types)."""
    rtype, name, pattern = resource[0], resource[1], resource[2]
    principal, host, operation, permission = acl
    try:
        return AclBinding(
            principal,
            ResourceType(rtype),
            name,
            PatternType(pattern),
            AclOperation(operation),
            Permission(permission),
            host,
        )
    except ValueError:
        return None


async def describe(admin: AIOKafkaAdminClient, node_id: int | None = None) -> set[AclBinding]:
    """Every ACL binding the broker `node_id` (any, if None) holds."""
    client = admin._client
    node = client.get_random_node() if node_id is None else node_id
    response = await client.send(node, _DescribeAll())
    if response.error_code == SECURITY_DISABLED:
        raise AclError(
            "the cluster has no authorizer: ACLs need a secured broker "
            "(`referrals broker start --secure`)"
        )
    if response.error_code:
        raise AclError(
            f"listing ACLs failed: {Errors.for_code(response.error_code).__name__}; ACLs are "
            "read and changed by the admin principal of a secured cluster (its super user)"
        )
    found: set[AclBinding] = set()
    for resource in response.resources:
        for acl in resource[3]:
            binding = _binding(resource, acl)
            if binding is not None:
                found.add(binding)
    return found


@dataclass(frozen=True)
class Change:
    created: list[AclBinding]
    deleted: list[AclBinding]


def plan(
    wanted: Iterable[AclBinding], present: Iterable[AclBinding], managed: Callable[[str], bool]
) -> Change:
    """What makes the cluster hold exactly `wanted` among the bindings of `managed` principals:
    create the missing ones, delete the others. Bindings of principals not managed stay."""
    want = set(wanted)
    have = {b for b in present if managed(b.principal)}
    return Change(sorted(want - have), sorted(have - want))


async def reconcile(
    admin: AIOKafkaAdminClient,
    wanted: Iterable[AclBinding],
    managed: Callable[[str], bool],
    *,
    dry_run: bool = False,
    within_s: float = 30.0,
) -> Change:
    """Creates and deletes bindings so that the managed principals hold exactly `wanted`, then
    waits until every broker enforces that (at most `within_s`). `dry_run`: only says what."""
    want = set(wanted)
    change = plan(want, await describe(admin), managed)
    if dry_run:
        return change
    client = admin._client
    node = client.get_random_node()
    if change.deleted:
        response = await client.send(node, _Delete(change.deleted))
        _check("deleting", [(r[0], r[1]) for r in response.filter_responses])
    if change.created:
        response = await client.send(node, _Create(change.created))
        _check("creating", [(r[0], r[1]) for r in response.creation_responses])
    await _await_applied(admin, want, managed, within_s)
    return change


def _check(doing: str, results: list[tuple[int, str | None]]) -> None:
    failed = [(code, msg) for code, msg in results if code]
    if failed:
        code, msg = failed[0]
        raise AclError(
            f"{doing} ACLs failed for {len(failed)} binding(s): "
            f"{Errors.for_code(code).__name__} ({msg})"
        )


async def _await_applied(
    admin: AIOKafkaAdminClient,
    want: set[AclBinding],
    managed: Callable[[str], bool],
    within_s: float,
) -> None:
    """Until every broker's authorizer holds exactly `want` for the managed principals."""
    await admin._client.force_metadata_update()
    nodes = sorted(b.nodeId for b in admin._client.cluster.brokers())
    deadline = time.monotonic() + within_s
    while True:
        lagging = []
        for node in nodes:
            held = {b for b in await describe(admin, node) if managed(b.principal)}
            if held != want:
                lagging.append(node)
        if not lagging:
            return
        if time.monotonic() > deadline:
            raise AclError(f"brokers {lagging} did not apply the ACLs within {within_s:g} s")
        await asyncio.sleep(0.2)
