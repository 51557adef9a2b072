"""The API in this test process on free ports (a real grpc.aio server, the real broker), the
tokens of every role, and calls by full method name."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import symbol_database
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from referrals.platform.settings import AmountLimits, KafkaSettings
from services.api.auth import METHOD_ROLES, Role, new_token
from services.api.proto import referrals_pb2 as pb
from services.api.server import ApiServer
from services.api.settings import ApiSettings

# Callers: role -> token; the operator's and finance's tokens are named, `anon-operator` is not.
NAMES = {Role.OPERATOR: "ops-anna", Role.FINANCE: "fin-fred"}


@dataclass
class Api:
    server: ApiServer
    channel: grpc.aio.Channel
    tokens: dict[str, str]  # caller -> token: each role's name, and "anon-operator"

    def metadata(self, caller: str | None) -> tuple[tuple[str, str], ...]:
        return () if caller is None else (("authorization", f"Bearer {self.tokens[caller]}"),)

    async def call(
        self, method: str, request: Any, caller: str | None, deadline: float = 20.0
    ) -> Any:
        """Calls `method` (its full name) and returns the response (a list for a stream)."""
        output = output_type(method)
        if _streaming(method):
            stream = self.channel.unary_stream(
                method,
                request_serializer=type(request).SerializeToString,
                response_deserializer=output.FromString,
            )
            return [
                m async for m in stream(request, metadata=self.metadata(caller), timeout=deadline)
            ]
        unary = self.channel.unary_unary(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=output.FromString,
        )
        return await unary(request, metadata=self.metadata(caller), timeout=deadline)

    async def health(self) -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return int(response.status)


def _method(method: str) -> Any:
    service, name = method.strip("/").rsplit("/", 1)
    return pb.DESCRIPTOR.services_by_name[service.rsplit(".", 1)[1]].methods_by_name[name]


def _streaming(method: str) -> bool:
    return bool(_method(method).server_streaming)


def input_type(method: str) -> Any:
    return symbol_database.Default().GetSymbol(_method(method).input_type.full_name)


def output_type(method: str) -> Any:
    return symbol_database.Default().GetSymbol(_method(method).output_type.full_name)


ALL_METHODS = sorted(METHOD_ROLES)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tokens_file(path: Path) -> dict[str, str]:
    """Writes a tokens file admitting one token per role (and an unnamed operator)."""
    tokens: dict[str, str] = {}
    lines = ["# the test's callers"]
    for role in Role:
        token, line = new_token(role, NAMES.get(role))
        tokens[role.value] = token
        lines.append(line)
    token, line = new_token(Role.OPERATOR)
    tokens["anon-operator"] = token
    lines.append(line + "  # no name: the request's `by` is recorded")
    path.write_text("\n".join(lines) + "\n")
    return tokens


def api_settings(tmp_path: Path, **changes: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "grpc_port": 0,
        "metrics_port": 0,
        "state_dir": tmp_path / "api-state",
        "tokens_file": tmp_path / "tokens.txt",
        "max_request_bytes": 64 * 1024,
        "max_records": 50,
        "command_timeout_s": 20.0,
        "shutdown_grace_s": 0.5,
    }
    values.update(changes)
    return ApiSettings(**values)


@asynccontextmanager
async def running_api(
    kafka: KafkaSettings,
    tmp_path: Path,
    credentials: grpc.ChannelCredentials | None = None,
    **changes: Any,
) -> AsyncIterator[Api]:
    """The API served in this process, and a channel to it (TLS with `credentials`)."""
    from services.api.auth import load_tokens

    tokens = tokens_file(tmp_path / "tokens.txt")
    settings = api_settings(tmp_path, **changes)
    from services.api.app import components
    from services.api.interceptor import ApiMetrics

    metrics = ApiMetrics()
    parts = components(settings, kafka, AmountLimits(), metrics)
    server = ApiServer(settings, load_tokens(settings.tokens_file), parts, metrics)
    await server.start()
    target = f"127.0.0.1:{server.port}"
    if credentials is None:
        channel = grpc.aio.insecure_channel(target)
    else:
        options = (("grpc.ssl_target_name_override", "localhost"),)
        channel = grpc.aio.secure_channel(target, credentials, options=options)
    api = Api(server, channel, tokens)
    try:
        # Ready (SERVING) first: the first transactional producer on a fresh broker waits for
        # Kafka's transaction log, and a test should not stop a server still connecting.
        for _ in range(600):
            if await api.health() == 1:
                break
            await asyncio.sleep(0.1)
        yield api
    finally:
        await channel.close()
        await server.stop(0.5)


def bad_request(err: grpc.aio.AioRpcError) -> dict[str, str]:
    """The field violations of an INVALID_ARGUMENT's google.rpc.BadRequest: field -> text."""
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(err)
    assert status is not None, f"no rich status details in {err.code()}: {err.details()}"
    out: dict[str, str] = {}
    for detail in status.details:
        request = error_details_pb2.BadRequest()
        if detail.Unpack(request):
            out.update({v.field: v.description for v in request.field_violations})
    return out
