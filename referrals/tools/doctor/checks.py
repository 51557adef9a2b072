"""The checks `referrals doctor` runs, in order, and running them.

The broker comes first: without it (wrong address, wrong credentials, down) nothing else that
needs Kafka can be judged, and the exit status is 2. Then each entry of `CHECKS` in turn; a
check is a name, whether it needs the broker, and an async function from the `Context` to its
findings. A check that fails to finish (a timeout, a refusal) becomes a problem of its own
rather than stopping the others. A new check is one more entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from referrals.contract import acls
from referrals.contract.acls import SERVICES
from referrals.contract.topics import PROGRAMS, TopicNames, physical_topics
from referrals.platform.acls import AclBinding, user
from referrals.platform.errors import ReferralsError
from referrals.platform.settings import KafkaSettings
from referrals.streams import acls as streams_acls
from referrals.streams.kafka import make_consumer
from referrals.tools.doctor import probes
from referrals.tools.doctor.findings import Finding, Report, ok, problem
from referrals.tools.doctor.targets import Service
from referrals.tools.doctor.topicrules import Seen, Wanted, judge_topics
from referrals.tools.doctor.verdicts import judge_lag, judge_programs, judge_readiness


@dataclass(frozen=True, slots=True)
class Options:
    services: Sequence[Service]
    partitions: int | None = None  # None: the count most topics have
    max_lag: int = 1000  # records per consumer group
    timeout_s: float = 10.0  # per request to the broker or a service
    skip: frozenset[str] = frozenset()  # names of checks not to run


@dataclass
class Context:
    settings: KafkaSettings
    options: Options
    admin: AIOKafkaAdminClient | None = None  # None: the broker could not be reached
    brokers: int = 0
    consumer: AIOKafkaConsumer | None = None
    _seen: dict[str, Seen] | None = field(default=None, repr=False)

    @property
    def kafka(self) -> AIOKafkaAdminClient:
        assert self.admin is not None, "a check that needs the broker ran without one"
        return self.admin

    @property
    def names(self) -> TopicNames:
        return TopicNames(self.settings.topic_prefix)

    def wanted(self) -> list[Wanted]:
        """The contract's topics and .dlqs as `topics create` makes them, and the changelogs
        of the services checked, as each makes them at start-up."""
        out = [Wanted(n, c) for n, c in physical_topics(self.names).items()]
        for service in self.options.services:
            made_by = f"start {service.name} ({service.start_hint}): it creates its changelogs"
            out.extend(
                Wanted(self.names(t), {"cleanup.policy": "compact"}, made_by)
                for t in service.changelogs
            )
        return out

    async def seen(self) -> dict[str, Seen]:
        if self._seen is None:
            self._seen = await probes.topics(self.kafka, [w.name for w in self.wanted()])
        return self._seen


async def check_topics(ctx: Context) -> list[Finding]:
    return judge_topics(
        ctx.wanted(),
        await ctx.seen(),
        brokers=ctx.brokers,
        partitions=ctx.options.partitions,
        bootstrap=ctx.settings.bootstrap_servers,
        user=ctx.settings.sasl_username if ctx.settings.sasl_mechanism else None,
    )


async def check_programs(ctx: Context) -> list[Finding]:
    if ctx.names(PROGRAMS) not in await ctx.seen():
        return []  # the topics check reports it missing
    return judge_programs(ctx.names(PROGRAMS), await probes.programs(ctx.settings, PROGRAMS))


async def check_services(ctx: Context) -> list[Finding]:
    services, timeout = ctx.options.services, ctx.options.timeout_s
    async with aiohttp.ClientSession() as session:
        seen = await asyncio.gather(*(probes.readiness(session, s, timeout) for s in services))
    return [judge_readiness(r, s.start_hint) for r, s in zip(seen, services, strict=True)]


async def check_lag(ctx: Context) -> list[Finding]:
    seen = await ctx.seen()
    if ctx.consumer is None:
        ctx.consumer = make_consumer(ctx.settings, client_id=probes.CLIENT_ID)
        await ctx.consumer.start()
    findings = []
    for service in (s for s in ctx.options.services if s.group is not None):
        # Inputs that are missing are the topics check's finding; the rest are measured.
        inputs = {
            seen[t].name: seen[t].partitions for t in map(ctx.names, service.inputs) if t in seen
        }
        if not inputs:
            continue
        group = await probes.group_lag(ctx.kafka, ctx.consumer, service, inputs)
        findings.append(judge_lag(group, ctx.options.max_lag, service.start_hint))
    return findings


async def check_acls(ctx: Context) -> list[Finding]:
    """The broker's ACLs against the contract's principal x topic table (`acls.bindings` for
    these topic names and the services' groups): each principal holds exactly its rows, so
    each service can do its work and nobody more (only rewards writes a payout)."""
    groups = {s.name: s.group for s in ctx.options.services if s.group and s.name in SERVICES}
    wanted = acls.bindings(ctx.settings.topic_prefix, groups)
    try:
        present = await streams_acls.describe(ctx.kafka)
    except streams_acls.AclError as err:
        if "no authorizer" in str(err):
            return [ok("acls", "cluster", "not secured (no authorizer): no ACLs to check")]
        return [problem("acls", "cluster", str(err), ACL_DESCRIBE_FIX)]
    change = streams_acls.plan(wanted, present, acls.managed)
    findings = []
    for principal in acls.PRINCIPALS:
        who = user(principal)
        missing = [b for b in change.created if b.principal == who]
        extra = [b for b in change.deleted if b.principal == who]
        if not missing and not extra:
            held = sum(1 for b in wanted if b.principal == who)
            findings.append(ok("acls", principal, f"{held} bindings, as the table says"))
            continue
        detail = "; ".join(
            part
            for part in (
                _some("missing (it cannot do its work)", missing),
                _some("beyond the table (it may do more than it should)", extra),
            )
            if part
        )
        findings.append(problem("acls", principal, detail, ACL_FIX))
    stray = [b for b in change.deleted if b.principal == user("*")]
    if stray:
        findings.append(problem("acls", "User:*", _some("granted to everyone", stray), ACL_FIX))
    return findings


def _some(what: str, bindings: Sequence[AclBinding], shown: int = 3) -> str:
    if not bindings:
        return ""
    listed = ", ".join(str(b) for b in bindings[:shown])
    more = f" and {len(bindings) - shown} more" if len(bindings) > shown else ""
    return f"{len(bindings)} {what}: {listed}{more}"


ACL_FIX = "referrals acl apply (as the admin principal); `referrals acl show` prints the table"
ACL_DESCRIBE_FIX = (
    "run doctor with the admin principal's KAFKA_* credentials to check ACLs, or --skip acls"
)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    run: Callable[[Context], Awaitable[list[Finding]]]
    needs_broker: bool = True


# The checks after the broker's, in the order they print.
CHECKS: tuple[Check, ...] = (
    Check("topics", check_topics),
    Check("acls", check_acls),
    Check("programs", check_programs),
    Check("services", check_services, needs_broker=False),
    Check("lag", check_lag),
)
CHECK_NAMES = ("broker", *(c.name for c in CHECKS))
UNREACHABLE_FIX = (
    "check KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, "
    "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SSL_CAFILE;\n"
    "is the broker running? (`referrals broker status` for the local one)"
)


async def diagnose(settings: KafkaSettings, options: Options) -> Report:
    """Runs the broker check, then every check not skipped; never raises for what it finds."""
    ctx = Context(settings, options)
    findings = [await _broker(ctx)]
    try:
        for check in CHECKS:
            if check.name in options.skip or (check.needs_broker and ctx.admin is None):
                continue
            findings.extend(await _run(check, ctx))
    finally:
        await _close(ctx)
    return Report(
        settings.bootstrap_servers, settings.topic_prefix, tuple(findings), ctx.admin is not None
    )


async def _broker(ctx: Context) -> Finding:
    timeout = ctx.options.timeout_s
    try:
        ctx.admin = await probes.connect(ctx.settings, timeout)
        facts = await asyncio.wait_for(probes.cluster(ctx.admin), timeout)
    except (probes.Unreachable, KafkaError, OSError, TimeoutError) as err:
        await _close(ctx)
        ctx.admin = None
        where = f"{ctx.settings.bootstrap_servers} ({_credentials(ctx.settings)})"
        detail = f"cannot reach {where}: {err}"
        return problem("broker", "", detail, UNREACHABLE_FIX)
    ctx.brokers = len(facts.brokers)
    detail = (
        f"reachable ({_credentials(ctx.settings)}): {ctx.brokers} broker"
        f"{'s' if ctx.brokers != 1 else ''} ({', '.join(facts.brokers)}), controller "
        f"{facts.controller}, cluster id {facts.cluster_id}"
    )
    return ok("broker", "", detail)


def _credentials(settings: KafkaSettings) -> str:
    if settings.sasl_mechanism:
        who = settings.sasl_username or "no username"
        return f"{settings.security_protocol}, {settings.sasl_mechanism} as {who}"
    return settings.security_protocol


async def _run(check: Check, ctx: Context) -> list[Finding]:
    # Generous: a check makes a handful of requests, each bounded by the timeout.
    budget = ctx.options.timeout_s * 6
    try:
        return await asyncio.wait_for(check.run(ctx), budget)
    except (KafkaError, OSError, TimeoutError, ReferralsError) as err:
        why = f"no answer within {budget:g} s" if isinstance(err, TimeoutError) else str(err)
        detail = f"the check could not finish: {why or type(err).__name__}"
        fix = "run doctor again; if it repeats, the broker is overloaded or refuses the request"
        return [problem(check.name, "", detail, fix)]


async def _close(ctx: Context) -> None:
    if ctx.consumer is not None:
        await ctx.consumer.stop()
        ctx.consumer = None
    if ctx.admin is not None:
        await ctx.admin.close()
