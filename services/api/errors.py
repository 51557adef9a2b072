"""Answering a call with an error the caller's code can read: INVALID_ARGUMENT with a
`google.rpc.BadRequest` whose field violations name each record and field (`deals[2].occurred_at`,
0-based), the standard rich error model (grpc-status-details-bin)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

MAX_VIOLATIONS = 100  # enough to fix a batch by; bounds the error's size


async def bad_request(
    context: grpc.aio.ServicerContext, summary: str, violations: Iterable[tuple[str, str]]
) -> NoReturn:
    """Aborts the call: INVALID_ARGUMENT, `summary` and the first violations in the message,
    every (field, description) in a BadRequest (up to MAX_VIOLATIONS)."""
    found = list(violations)
    shown = found[:MAX_VIOLATIONS]
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=path, description=text)
            for path, text in shown
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    listed = "; ".join(f"{path}: {text}" for path, text in found[:3])
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message=f"{summary}: {listed}{more}" if listed else summary,
        details=[packed],
    )
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, text: str) -> NoReturn:
    await context.abort(code, text)
    raise AssertionError("abort returned")  # pragma: no cover
