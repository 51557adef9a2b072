"""What doctor asks the broker and the services, turned into the plain facts the rules judge
(`topicrules`, `verdicts`). Every call is bounded by the caller's timeout."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import client_options
from referrals.streams.reading import read_records
from referrals.tools.doctor.targets import Service
from referrals.tools.doctor.topicrules import Seen
from referrals.tools.doctor.verdicts import GroupLag, ProgramRecord, Readiness, lag_of

CLIENT_ID = "referrals-doctor"
T = TypeVar("T")


class Unreachable(Exception):
    """The broker did not answer with the configured KAFKA_* settings."""


@dataclass(frozen=True, slots=True)
class Cluster:
    cluster_id: str
    brokers: tuple[str, ...]  # "id@host:port" of each broker the cluster reports
    controller: int


async def connect(settings: KafkaSettings, within_s: float) -> AIOKafkaAdminClient:
    """A started admin client, or Unreachable saying why (refused, timed out, credentials)."""
    options = client_options(settings, CLIENT_ID)
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=int(within_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), within_s)
    except (KafkaError, OSError, TimeoutError) as err:
        await admin.close()
        why = str(err) or type(err).__name__
        if isinstance(err, TimeoutError):
            why = f"no answer within {within_s:g} s"
        raise Unreachable(why) from err
    return admin


async def cluster(admin: AIOKafkaAdminClient) -> Cluster:
    described = await admin.describe_cluster()
    brokers = tuple(
        f"{b['node_id']}@{b['host']}:{b['port']}"
        for b in sorted(described.get("brokers") or (), key=lambda b: b["node_id"])
    )
    return Cluster(str(described.get("cluster_id")), brokers, int(described["controller_id"]))


async def topics(admin: AIOKafkaAdminClient, wanted: Iterable[str]) -> dict[str, Seen]:
    """The wanted topics that exist: partitions, replicas and effective configs."""
    names = set(wanted)
    present = {
        t["topic"]: t
        for t in await admin.describe_topics()  # every topic: asking by name may create one
        if t["error_code"] == 0 and t["topic"] in names and t["partitions"]
    }
    configs = await _configs(admin, sorted(present))
    return {
        name: Seen(
            name,
            partitions=len(t["partitions"]),
            replicas=min(len(p["replicas"]) for p in t["partitions"]),
            configs=configs.get(name, {}),
        )
        for name, t in present.items()
    }


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    out: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != 0:
                raise KafkaError(
                    f"describing the configs of {resource['resource_name']} failed: error "
                    f"{resource['error_code']} {resource['error_message'] or ''}".strip()
                )
            out[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
            }
    return out


async def programs(settings: KafkaSettings, topic: str) -> list[ProgramRecord]:
    """Every committed record of the programs topic (logical name), oldest first."""
    messages = await read_records(settings, topic, client_id=CLIENT_ID)
    return [ProgramRecord(m.partition, m.offset, m.key, m.value) for m in messages]


async def readiness(session: aiohttp.ClientSession, service: Service, within_s: float) -> Readiness:
    url = f"{service.url}/readyz"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=within_s)) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            return Readiness(service.name, url, response.status, body if _is_map(body) else None)
    except (aiohttp.ClientError, OSError, TimeoutError) as err:
        return Readiness(service.name, url, None, error=_why(err, within_s))


def _why(err: BaseException, within_s: float) -> str:
    if isinstance(err, TimeoutError):
        return f"no answer within {within_s:g} s"
    if isinstance(err, aiohttp.ClientConnectorError):
        if err.os_error.errno == errno.ECONNREFUSED:
            return "connection refused"
        return err.os_error.strerror or str(err.os_error)
    return str(err) or type(err).__name__


def _is_map(body: object) -> bool:
    return isinstance(body, Mapping)


async def group_lag(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    service: Service,
    inputs: Mapping[str, int],
) -> GroupLag:
    """The service's group: its state, members, and per partition of `inputs` (physical topic
    -> partitions) how far its committed offsets trail the last stable offsets."""
    assert service.group is not None
    group = service.group
    state, members = await _retrying(lambda: _group_state(admin, group))
    offsets = await _retrying(lambda: admin.list_consumer_group_offsets(group))
    committed = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
    parts = [TopicPartition(t, p) for t, count in sorted(inputs.items()) for p in range(count)]
    ends = await consumer.end_offsets(parts) if parts else {}  # read_committed: stable ends
    starts = await consumer.beginning_offsets(parts) if parts else {}
    lag = lag_of(
        {(tp.topic, tp.partition): end for tp, end in ends.items()},
        {(tp.topic, tp.partition): start for tp, start in starts.items()},
        committed,
    )
    widest = max(inputs.values(), default=0)
    return GroupLag(service.name, service.group, state, members, lag, widest)


RETRIES = 20  # a fresh broker creates its offsets topic on the first group lookup: ~a second
RETRY_S = 0.25


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, asked again while the broker answers with an error it calls retriable (the
    group coordinator moving or loading)."""
    for _ in range(RETRIES - 1):
        try:
            return await call()
        except KafkaError as err:
            if not getattr(err, "retriable", False):
                raise
        await asyncio.sleep(RETRY_S)
    return await call()


async def _group_state(admin: AIOKafkaAdminClient, group: str) -> tuple[str, int]:
    responses: list[Any] = await admin.describe_consumer_groups([group])
    for response in responses:
        for described in response.to_object()["groups"]:
            if described["group"] == group:
                return described["state"] or "Unknown", len(described["members"])
    return "Unknown", 0
