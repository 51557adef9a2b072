"""The API's interceptor with a real gRPC server and client, no broker: a handler still running
at the call's deadline is answered and counted DEADLINE_EXCEEDED, never CANCELLED, whichever of
the interceptor's own timer and gRPC's cancellation of the call's task fires first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.api.auth import Role, new_token, parse_tokens
from services.api.interceptor import ApiMetrics, Gate
from services.api.proto import referrals_pb2 as pb

APPROVE = "/referrals.v1.Payouts/ApproveReward"
CALLS = 12


async def _never(request: pb.PayoutCommandRequest, context: grpc.aio.ServicerContext) -> None:
    """No rewards service answers. Payout "stubborn" outlives the interceptor's own timer (it
    waits on through one cancellation), so gRPC's cancellation at the deadline always ends it:
    the order the race can take without it."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        if request.payout_id != "stubborn":
            raise
    await asyncio.Event().wait()


@pytest.fixture
async def gate() -> AsyncIterator[tuple[grpc.aio.Channel, ApiMetrics, str]]:
    token, line = new_token(Role.OPERATOR, "ops")
    metrics = ApiMetrics()
    server = grpc.aio.server(interceptors=[Gate(parse_tokens(line), metrics)])
    handler = grpc.unary_unary_rpc_method_handler(
        _never,
        request_deserializer=pb.PayoutCommandRequest.FromString,
        response_serializer=pb.CommandResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("referrals.v1.Payouts", {"ApproveReward": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, metrics, token
    finally:
        await channel.close()
        await server.stop(None)


def _counted(metrics: ApiMetrics, code: str) -> float:
    value = metrics.registry.get_sample_value(
        "referrals_api_calls_total", {"method": APPROVE, "code": code}
    )
    return value or 0.0


def _approve(channel: grpc.aio.Channel, token: str, *, timeout: float, payout_id: str = "p") -> Any:
    """An ApproveReward call as the operator, under way (await it for its answer)."""
    method = channel.unary_unary(
        APPROVE,
        request_serializer=pb.PayoutCommandRequest.SerializeToString,
        response_deserializer=pb.CommandResponse.FromString,
    )
    return method(
        pb.PayoutCommandRequest(payout_id=payout_id),
        metadata=(("authorization", f"Bearer {token}"),),
        timeout=timeout,
    )


async def _until_counted(metrics: ApiMetrics, calls: int) -> None:
    """The server counts a call in its handler's task, which may end just after the client gave
    up: wait (up to 5 s) until it has counted `calls`, rather than read at once."""
    for _ in range(500):
        if _counted(metrics, "DEADLINE_EXCEEDED") + _counted(metrics, "CANCELLED") >= calls:
            return
        await asyncio.sleep(0.01)


async def test_a_call_past_its_deadline_is_counted_deadline_exceeded_every_time(
    gate: tuple[grpc.aio.Channel, ApiMetrics, str],
) -> None:
    channel, metrics, token = gate
    codes = []
    for _ in range(CALLS):
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await _approve(channel, token, timeout=0.2)
        codes.append(late.value.code())
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * CALLS
    await _until_counted(metrics, CALLS)
    assert (_counted(metrics, "DEADLINE_EXCEEDED"), _counted(metrics, "CANCELLED")) == (CALLS, 0)


async def test_a_caller_that_leaves_well_before_the_deadline_is_counted_cancelled(
    gate: tuple[grpc.aio.Channel, ApiMetrics, str],
) -> None:
    channel, metrics, token = gate
    call = _approve(channel, token, timeout=30.0)
    await asyncio.sleep(0.3)  # the handler is waiting
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await _until_counted(metrics, 1)
    assert (_counted(metrics, "CANCELLED"), _counted(metrics, "DEADLINE_EXCEEDED")) == (1, 0)


async def test_a_call_grpc_cancels_at_its_deadline_is_counted_deadline_exceeded(
    gate: tuple[grpc.aio.Channel, ApiMetrics, str],
) -> None:
    channel, metrics, token = gate
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await _approve(channel, token, timeout=0.3, payout_id="stubborn")
    assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    await _until_counted(metrics, 1)
    assert (_counted(metrics, "DEADLINE_EXCEEDED"), _counted(metrics, "CANCELLED")) == (1, 0)
