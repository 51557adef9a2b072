"""What every call goes through before and after its handler: the bearer token and its role
(`auth`), the call's deadline, and the metrics (calls by method and status code, latency).

The interceptor wraps each method's handler rather than deciding in `intercept_service`
alone, so that the checks run in the handler's own task: the caller set there
(`auth.current_caller`) is the one the handler sees, and a handler still running when the
call's deadline passes is cancelled and answered DEADLINE_EXCEEDED, never left running. A
method of the contract with no servicer registered yet (the Advocates service before the portal
is wired) is still authenticated first, then UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.api.auth import (
    METHOD_ROLES,
    OPEN_PREFIXES,
    TOKEN_ID_CHARS,
    Caller,
    Role,
    Tokens,
    bearer,
    digest,
    set_caller,
)

log = logging.getLogger(__name__)
# Calls answer in milliseconds (validation, one transaction) to tens of seconds (a command
# waiting for the rewards service, a reconcile reading whole topics).
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A cancellation this close to the call's deadline is the deadline's: the client's timer runs
# ahead of the server's by the time the request took to arrive.
DEADLINE_SLACK_S = 0.1
Handler = Callable[[Any, grpc.aio.ServicerContext], Any]


@dataclass
class ApiMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.calls = Counter(
            "referrals_api_calls",
            "API calls answered, by method and gRPC status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "referrals_api_call_seconds",
            "Time to answer an API call (a stream: until it ends), by method",
            ["method"],
            buckets=CALL_BUCKETS,
            registry=self.registry,
        )


class Refused(Exception):
    """The call may not proceed: its status code and the message the caller sees."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def authorize(tokens: Tokens, method: str, role: Role, metadata: object) -> Caller:
    """The caller, or Refused: UNAUTHENTICATED for a missing or unknown token,
    PERMISSION_DENIED for a known token without `role`."""
    token = bearer(metadata)
    found = tokens.find(token) if token else None
    if found is None:
        problem = "missing" if token is None else "unknown"
        return _refuse(
            grpc.StatusCode.UNAUTHENTICATED,
            f"{problem} bearer token: send `authorization: Bearer <token>` with a token from "
            "the API's tokens file",
        )
    roles, name = found
    if role not in roles:
        held = ", ".join(sorted(r.value for r in roles))
        return _refuse(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{method} needs role {role.value}; this token has role {held}",
        )
    assert token is not None  # found by it
    return Caller(role, name, digest(token)[:TOKEN_ID_CHARS])


def _refuse(code: grpc.StatusCode, message: str) -> Caller:
    raise Refused(code, message)


class Gate(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authentication, authorization, deadline and metrics for every call of the contract."""

    def __init__(self, tokens: Tokens, metrics: ApiMetrics) -> None:
        self.tokens = tokens
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        role = METHOD_ROLES.get(method)
        handler = await continuation(details)
        if method.startswith(OPEN_PREFIXES) or role is None:
            return handler  # health, reflection; or not ours: gRPC answers UNIMPLEMENTED
        if handler is None:
            return grpc.unary_unary_rpc_method_handler(self._guard(method, role, _unimplemented))
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._guard_stream(method, role, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._guard(method, role, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _admit(self, method: str, role: Role, context: grpc.aio.ServicerContext) -> None:
        set_caller(authorize(self.tokens, method, role, context.invocation_metadata()))

    def _guard(self, method: str, role: Role, behaviour: Handler) -> Handler:
        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                self._admit(method, role, context)
                remaining = context.time_remaining()
                async with asyncio.timeout(remaining):
                    return await behaviour(request, context)
            except Refused as refused:
                code = refused.code
                await context.abort(refused.code, str(refused))
            except TimeoutError:
                code = grpc.StatusCode.DEADLINE_EXCEEDED
                await context.abort(code, f"{method} did not finish before the call's deadline")
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:
                code = _cancelled(context)
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("%s failed", method)
                await context.abort(code, "internal error; the API's log has the details")
            finally:
                self._observe(method, code, started)

        return guarded

    def _guard_stream(self, method: str, role: Role, behaviour: Handler) -> Handler:
        if not inspect.isasyncgenfunction(behaviour):
            return self._guard(method, role, behaviour)  # writes with context.write

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                self._admit(method, role, context)
                async for item in behaviour(request, context):
                    yield item
            except Refused as refused:
                code = refused.code
                await context.abort(refused.code, str(refused))
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:
                code = _cancelled(context)
                raise
            finally:
                self._observe(method, code, started)

        return guarded

    def _observe(self, method: str, code: grpc.StatusCode, started: float) -> None:
        self.metrics.calls.labels(method, code.name).inc()
        self.metrics.seconds.labels(method).observe(time.perf_counter() - started)


def _cancelled(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """Why gRPC cancelled the call's task. At the deadline, gRPC's own timer (or the client's,
    a moment earlier than the server's) may fire before the handler's `asyncio.timeout`: that
    call is DEADLINE_EXCEEDED. Well before it, the caller left: CANCELLED."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= DEADLINE_SLACK_S:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


async def _unimplemented(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this method is not served yet")
