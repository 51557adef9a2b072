"""Who may write and read what: the contract's principal x topic table (CONTRACT.md, Security),
as data, and the Kafka ACL bindings it means.

`TABLE` is the table: per principal the topics it writes, reads and owns (a service's internal
topics and state changelogs: it creates, writes and reads them). `bindings(prefix, groups)` is
a pure function from it to the exact ACL bindings `referrals acl apply` puts on a cluster:

- a topic written: WRITE; read: READ; owned: CREATE, WRITE and READ. Literal names always,
  with the deployment's topic prefix: a prefixed pattern such as `rewards.` would also cover
  finance's `rewards.payout-results.v1`.
- a service (attribution, rewards, notifications) writes the `.dlq` of every topic it consumes,
  READs its consumer group (`referrals-<service>` unless `<SERVICE>_GROUP_ID` names another) and
  WRITEs the transactional ids starting `<group>-` (one per process: `<group>-<random>`).
- a user kind (platform, finance, operator) and the api WRITE the transactional ids starting
  `<name>-` (the CLI's are `<name>-referrals-cli-<uuid>` when it connects as <name>) and, where
  they read, READ the consumer groups starting `<name>-`.

READ and WRITE imply DESCRIBE in Kafka; nothing here grants ALL, DELETE, ALTER, any config
operation or anything on the cluster resource. The broker itself and the `admin` principal
are super users (`referrals broker start --secure`), so they need no binding.

Pure data and functions, no broker: `referrals doctor` and the Kubernetes KafkaUser manifests
read the same table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from referrals.contract.topics import (
    ADVOCATES,
    CATALOGUE,
    COMMAND_RESULTS,
    CONVERSIONS,
    DEALS,
    DEALS_BY_PROSPECT,
    NOTIFICATIONS_SENT,
    OPERATOR_COMMANDS,
    PAYOUT_RESULTS,
    PAYOUTS,
    PAYOUTS_V2,
    PROGRAMS,
    REWARDS_BY_ADVOCATE,
    REWARDS_BY_PAYOUT,
    SHARES,
    STATUS,
    UNSUBSCRIBES,
    dlq_of,
)
from referrals.platform.acls import AclBinding, AclOperation, PatternType, ResourceType, user

ADMIN = "admin"  # super user: creates topics, applies these ACLs; not in the table
SERVICES = ("attribution", "rewards", "notifications")
USERS = ("api", "platform", "finance", "operator")
PRINCIPALS = (*SERVICES, *USERS)  # the contract's order
INPUTS = (ADVOCATES, SHARES, CONVERSIONS, DEALS)  # the platform teams' topics
EVERY_DLQ = tuple(dlq_of(spec.name) for spec in CATALOGUE)


def changelog(service: str, store: str) -> str:
    """A service's state changelog (the stream runtime's naming, `referrals.streams.stores`)."""
    return f"{service}.{store}.changelog"


@dataclass(frozen=True, slots=True)
class Entry:
    """One principal's row. `reads` of a service are the topics it consumes (its inputs and
    global tables); it also writes their dead letters. `extra_reads` go beyond the contract's
    table, each for a command of the principal's own that cannot work without it (`why`)."""

    principal: str
    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    owns: tuple[str, ...] = ()  # internal topics and changelogs: create, write, read
    extra_reads: tuple[str, ...] = ()
    why: str = ""

    @property
    def service(self) -> bool:
        return self.principal in SERVICES

    @property
    def dead_letters(self) -> tuple[str, ...]:
        """The DLQs a service writes: one per topic it consumes (internal ones too)."""
        if not self.service:
            return ()
        consumed = (*self.reads, *(t for t in self.owns if not t.endswith(".changelog")))
        return tuple(dlq_of(t) for t in consumed)

    @property
    def all_reads(self) -> tuple[str, ...]:
        return _unique((*self.reads, *self.extra_reads))

    @property
    def all_writes(self) -> tuple[str, ...]:
        return _unique((*self.writes, *self.dead_letters))


TABLE: tuple[Entry, ...] = (
    Entry(
        "attribution",
        writes=(STATUS,),
        reads=(CONVERSIONS, DEALS, PROGRAMS, SHARES, ADVOCATES),
        owns=(DEALS_BY_PROSPECT, changelog("attribution", "referrals")),
    ),
    Entry(
        "rewards",
        writes=(PAYOUTS, PAYOUTS_V2, STATUS, COMMAND_RESULTS),
        reads=(STATUS, ADVOCATES, PAYOUT_RESULTS, OPERATOR_COMMANDS, PROGRAMS),
        owns=(REWARDS_BY_PAYOUT, REWARDS_BY_ADVOCATE, changelog("rewards", "state")),
    ),
    Entry(
        "notifications",
        # Deliveries given up on are dead-lettered to notifications.sent.v1.dlq.
        writes=(NOTIFICATIONS_SENT, dlq_of(NOTIFICATIONS_SENT)),
        reads=(STATUS, ADVOCATES, SHARES, PROGRAMS),
        owns=(
            UNSUBSCRIBES,
            changelog("notifications", "advocates"),
            changelog("notifications", "index"),
        ),
    ),
    Entry(
        "api",
        # Ingest (role ingest), PublishPayoutResults (finance), PutProgram, the payout
        # commands and EraseAdvocate (operator): on behalf of callers the API authenticated.
        writes=(*INPUTS, PAYOUT_RESULTS, PROGRAMS, OPERATOR_COMMANDS),
        # What the portal shows, the answers to commands, and Reconcile (role finance).
        reads=(ADVOCATES, PROGRAMS, STATUS, PAYOUTS_V2, PAYOUT_RESULTS, COMMAND_RESULTS),
        extra_reads=(PAYOUTS, dlq_of(PAYOUT_RESULTS)),
        why="Reconcile compares rewards.payouts.v1 with v2 and leaves out dead-lettered results",
    ),
    Entry("platform", writes=INPUTS),
    Entry("finance", writes=(PAYOUT_RESULTS,), reads=(PAYOUTS, PAYOUTS_V2)),
    Entry(
        "operator",
        writes=(PROGRAMS, OPERATOR_COMMANDS, ADVOCATES),
        reads=(STATUS, PAYOUTS, PAYOUTS_V2, PAYOUT_RESULTS, COMMAND_RESULTS, *EVERY_DLQ),
        extra_reads=(PROGRAMS, OPERATOR_COMMANDS, ADVOCATES, NOTIFICATIONS_SENT, *INPUTS),
        why=(
            "program put reads the program's versions; erase and export the advocate's "
            "profile; export the messages sent; program preview replays the recorded inputs "
            "and commands; tax-report reads programs and profiles"
        ),
    ),
)


def entry(principal: str) -> Entry:
    """The table's row for `principal`; a KeyError naming the known ones otherwise."""
    for row in TABLE:
        if row.principal == principal:
            return row
    raise KeyError(f"no principal {principal!r} in the ACL table; known: {', '.join(PRINCIPALS)}")


MANAGED = frozenset(user(name) for name in PRINCIPALS) | {user("*")}


def managed(principal: str) -> bool:
    """The principals whose every ACL the table decides (`acl apply` leaves exactly the
    table's bindings to them; doctor reports any other): the table's, and the wildcard."""
    return principal in MANAGED


def default_groups() -> dict[str, str]:
    """Each service's consumer group when `<SERVICE>_GROUP_ID` is not set."""
    return {service: f"referrals-{service}" for service in SERVICES}


def bindings(prefix: str = "", groups: Mapping[str, str] | None = None) -> list[AclBinding]:
    """Every ACL binding the table means, for topics named `prefix` + logical name and the
    services' consumer `groups` (service -> group id; the defaults for any left out). Sorted,
    no duplicates: the exact set `referrals acl apply` leaves on the cluster."""
    chosen = default_groups() | dict(groups or {})
    unknown = sorted(set(chosen) - set(SERVICES))
    if unknown:
        raise KeyError(f"groups given for {unknown}, which are not services: {list(SERVICES)}")
    out: set[AclBinding] = set()
    for row in TABLE:
        who = user(row.principal)
        out |= _topics(who, row.all_writes, prefix, (AclOperation.WRITE,))
        out |= _topics(who, row.all_reads, prefix, (AclOperation.READ,))
        owned = (AclOperation.CREATE, AclOperation.WRITE, AclOperation.READ)
        out |= _topics(who, row.owns, prefix, owned)
        out |= _identities(row, chosen)
    return sorted(out)


def _topics(
    who: str, topics: Iterable[str], prefix: str, operations: tuple[AclOperation, ...]
) -> set[AclBinding]:
    return {
        AclBinding(who, ResourceType.TOPIC, prefix + topic, PatternType.LITERAL, op)
        for topic in topics
        for op in operations
    }


def _identities(row: Entry, groups: Mapping[str, str]) -> set[AclBinding]:
    """The consumer groups and transactional ids `row`'s principal may use."""
    who = user(row.principal)
    if row.service:
        group = groups[row.principal]
        return {
            AclBinding(who, ResourceType.GROUP, group, PatternType.LITERAL, AclOperation.READ),
            AclBinding(
                who,
                ResourceType.TRANSACTIONAL_ID,
                f"{group}-",
                PatternType.PREFIXED,
                AclOperation.WRITE,
            ),
        }
    mine = f"{row.principal}-"
    out = set()
    if row.all_writes:
        out.add(
            AclBinding(
                who, ResourceType.TRANSACTIONAL_ID, mine, PatternType.PREFIXED, AclOperation.WRITE
            )
        )
    if row.all_reads:
        out.add(AclBinding(who, ResourceType.GROUP, mine, PatternType.PREFIXED, AclOperation.READ))
    return out


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def table_text(prefix: str = "") -> str:
    """The table as `referrals acl show` prints it: per principal what it writes, reads and
    owns (logical names; `prefix` noted), and the reads beyond the contract's table with why."""
    lines = [f"topic prefix: {prefix!r}" if prefix else "topic prefix: none"]
    for row in TABLE:
        lines.append(row.principal)
        lines.append(f"  writes  {_names(row.writes)}")
        if row.dead_letters:
            count = len(row.dead_letters)
            lines.append(f"          and the .dlq of each topic it consumes ({count})")
        reads = [t for t in row.reads if t not in EVERY_DLQ]
        dlqs = len(row.reads) - len(reads)
        every = f"; every .dlq ({dlqs})" if dlqs else ""
        lines.append(f"  reads   {_names(reads)}{every}")
        if row.owns:
            lines.append(f"  owns    {_names(row.owns)}")
        extra = [t for t in _unique(row.extra_reads) if t not in row.reads]
        if extra:
            lines.append(f"  also reads {_names(extra)}: {row.why}")
    return "\n".join(lines)


def _names(topics: Iterable[str]) -> str:
    return ", ".join(topics) or "-"
