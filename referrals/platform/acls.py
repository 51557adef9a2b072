"""Kafka ACL bindings as plain data: what a principal may do to which resource.

Pure: no Kafka client, no broker. The contract's principal x topic table and the function that
turns it into bindings are `referrals.contract.acls` (it needs the contract's topic names, a
layer above this one); putting bindings on a cluster is `referrals.streams.acls`. The names
of the enums' members are Kafka's own (`ResourceType.TOPIC`, `PatternType.PREFIXED`,
`AclOperation.WRITE`), and their values the numbers the Kafka protocol uses, so a binding
reads the same in `referrals acl show`, in `kafka-acls --list` and in a Strimzi KafkaUser.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

USER = "User:"  # the principal type of SASL (and TLS) users
ANY_HOST = "*"


class ResourceType(IntEnum):
    ANY = 1  # filters only
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(IntEnum):
    ANY = 1  # filters only
    LITERAL = 3
    PREFIXED = 4


class AclOperation(IntEnum):
    ANY = 1  # filters only
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


class Permission(IntEnum):
    ANY = 1  # filters only
    DENY = 2
    ALLOW = 3


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    """One ACL: `principal` (e.g. `User:rewards`) is `permission`ed `operation` on the
    resource(s) `resource_type` named `name` (exactly, or every name starting with it when
    `pattern` is PREFIXED), from `host`. READ and WRITE imply DESCRIBE (Kafka's rule), so a
    binding never needs a DESCRIBE beside them."""

    principal: str
    resource_type: ResourceType
    name: str
    pattern: PatternType
    operation: AclOperation
    permission: Permission = Permission.ALLOW
    host: str = ANY_HOST

    def __str__(self) -> str:
        star = "*" if self.pattern is PatternType.PREFIXED else ""
        return (
            f"{self.principal} {self.permission.name} {self.operation.name} "
            f"{self.resource_type.name} {self.name}{star}"
        )


def user(name: str) -> str:
    """The principal of SASL user `name`: `User:name`."""
    return USER + name


IMPLIES_DESCRIBE = frozenset(
    {AclOperation.READ, AclOperation.WRITE, AclOperation.DELETE, AclOperation.ALTER}
)


def allows(
    bindings: Iterable[AclBinding],
    principal: str,
    resource_type: ResourceType,
    name: str,
    operation: AclOperation,
) -> bool:
    """Whether `bindings` let `principal` do `operation` on the resource, as Kafka's authorizer
    decides (for the ALLOW bindings this project writes, from any host): a literal binding
    names the resource exactly (or `*`), a prefixed one starts its name; ALL allows everything;
    READ, WRITE, DELETE and ALTER imply DESCRIBE; a DENY that matches wins."""

    def matches(b: AclBinding) -> bool:
        if b.principal not in (principal, USER + "*") or b.resource_type is not resource_type:
            return False
        if b.pattern is PatternType.PREFIXED:
            named = name.startswith(b.name)
        else:
            named = b.name in (name, "*")
        wanted = {operation, AclOperation.ALL}
        if operation is AclOperation.DESCRIBE:
            wanted |= IMPLIES_DESCRIBE
        return named and b.operation in wanted

    found = [b for b in bindings if matches(b)]
    if any(b.permission is Permission.DENY for b in found):
        return False
    return any(b.permission is Permission.ALLOW for b in found)
