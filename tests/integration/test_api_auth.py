"""The API's gate, against a real server and client: every method of the four services with
every role's token, no token and an unknown one; health and reflection open to all; tokens
never logged; TLS; the request size limit; the metrics every call leaves."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from referrals.platform.settings import KafkaSettings
from services.api.auth import METHOD_ROLES, Role

from .api_support import ALL_METHODS, Api, input_type, running_api
from .test_service_skeletons import _get, _metric

pytestmark = pytest.mark.broker
CALLERS = [*(r.value for r in Role), "anon-operator", None, "unknown"]
OPEN = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


async def outcome(api: Api, method: str, caller: str | None) -> grpc.StatusCode:
    try:
        await api.call(method, input_type(method)(), caller, deadline=15)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_each_role_reaches_exactly_its_methods_and_tokens_never_reach_the_logs(
    topics: KafkaSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_api(topics, tmp_path) as api:
        api.tokens["unknown"] = "not-a-token-anyone-was-given"
        seen: dict[tuple[str, str | None], grpc.StatusCode] = {}
        for method in ALL_METHODS:
            for caller in CALLERS:
                seen[(method, caller)] = await outcome(api, method, caller)
        text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
        for token in api.tokens.values():
            assert token not in text
    for (method, caller), code in seen.items():
        needed = METHOD_ROLES[method]
        if caller in (None, "unknown"):
            assert code is grpc.StatusCode.UNAUTHENTICATED, (method, caller)
        elif caller == needed.value or (caller == "anon-operator" and needed is Role.OPERATOR):
            assert code not in OPEN, (method, caller, code)
        else:
            assert code is grpc.StatusCode.PERMISSION_DENIED, (method, caller)
    # Past the gate the portal answers for itself: an advocate nobody published is NOT_FOUND.
    assert seen[("/referrals.v1.Advocates/GetAdvocate", "portal")] is grpc.StatusCode.NOT_FOUND


async def test_a_denied_call_says_which_role_it_needs(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    async with running_api(topics, tmp_path) as api:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await api.call(
                "/referrals.v1.Payouts/Reconcile",
                input_type("/referrals.v1.Payouts/Reconcile")(),
                "ingest",
            )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await api.call(
                "/referrals.v1.Programs/ListPrograms",
                input_type("/referrals.v1.Programs/ListPrograms")(),
                None,
            )
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "needs role finance; this token has role ingest" in (denied.value.details() or "")
    assert missing.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "missing bearer token" in (missing.value.details() or "")


async def test_health_and_reflection_need_no_token_and_calls_are_counted(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    async with running_api(topics, tmp_path) as api:
        assert await api.health() == 1  # SERVING: the producer is up
        stub = reflection_pb2_grpc.ServerReflectionStub(api.channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name async for r in responses for s in r.list_services_response.service}
        assert {
            "referrals.v1.Ingest",
            "referrals.v1.Advocates",
            "referrals.v1.Programs",
            "referrals.v1.Payouts",
            "grpc.health.v1.Health",
        } <= names
        method = "/referrals.v1.Programs/ValidateProgram"
        assert await outcome(api, method, "operator") == grpc.StatusCode.OK
        assert await outcome(api, method, "ingest") == grpc.StatusCode.PERMISSION_DENIED
        port = api.server.metrics_port
        # urllib blocks, and the endpoint is served by this test's event loop: a thread asks.
        status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert _metric(body, "referrals_api_calls_total", method=method, code="OK") == 1
        assert (
            _metric(body, "referrals_api_calls_total", method=method, code="PERMISSION_DENIED") == 1
        )
        assert _metric(body, "referrals_api_call_seconds_count", method=method) == 2
        assert (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz"))[0] == 200


async def test_a_request_over_the_size_limit_is_resource_exhausted_naming_the_limit(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    from services.api.proto import referrals_pb2 as pb

    async with running_api(topics, tmp_path, max_request_bytes=16 * 1024) as api:
        document = "# " + "x" * 20_000
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await api.call(
                "/referrals.v1.Programs/ValidateProgram",
                pb.ValidateProgramRequest(document=document),
                "operator",
            )
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "16384" in (caught.value.details() or ""), caught.value.details()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, from the openssl command line (the venv has
    no `cryptography` package)."""
    cert, key = tmp_path / "api.crt", tmp_path / "api.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_with_a_certificate_and_key_the_api_speaks_tls_only(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    trust = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    method = "/referrals.v1.Programs/ValidateProgram"
    async with running_api(topics, tmp_path, trust, tls_cert=cert, tls_key=key) as api:
        assert await outcome(api, method, "operator") is grpc.StatusCode.OK
        plain = grpc.aio.insecure_channel(f"127.0.0.1:{api.server.port}")
        try:
            call = plain.unary_unary(method)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(b"", metadata=api.metadata("operator"), timeout=3)
        finally:
            await plain.close()
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
