"""Where webhooks may go (https to public addresses, or a host the operator allows) and how
much of an answer is read: the transport against a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from referrals.platform.errors import ConfigError
from referrals.programs.model import Webhook
from services.notifications.adapters.failures import PermanentFailure
from services.notifications.adapters.webhook import URL_REFUSED, WebhookTransport
from services.notifications.adapters.webhook_policy import (
    AllowList,
    PublicOnlyResolver,
    Refused,
    check_url,
    is_public,
)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4 inside IPv6
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("not an address", False),
    ],
)
def test_only_public_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


NOBODY = AllowList()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://crm.example/hook", "http to crm.example:80 is refused"),
        ("https://127.0.0.1/hook", "127.0.0.1 is not a public address"),
        ("https://[::1]:8443/hook", "::1 is not a public address"),
        ("https://[::ffff:10.0.0.1]/hook", "::ffff:10.0.0.1 is not a public address"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254 is not a public address"),
        ("ftp://crm.example/hook", "is not an http(s) URL"),
    ],
)
def test_by_default_a_webhook_is_https_to_a_public_address(url: str, why: str) -> None:
    with pytest.raises(Refused, match=why.replace("(", r"\(").replace(")", r"\)")):
        check_url(url, NOBODY)
    check_url("https://crm.example/hook", NOBODY)  # a name: checked when it resolves
    check_url("https://93.184.215.14/hook", NOBODY)


def test_an_allowed_host_may_use_http_and_a_private_address_on_its_port() -> None:
    allow = AllowList.parse("127.0.0.1:8080, crm.internal ,[::1]:9000")
    for url in ("http://127.0.0.1:8080/h", "http://crm.internal/h", "https://CRM.internal:1/h"):
        check_url(url, allow)
    check_url("http://[::1]:9000/h", allow)
    with pytest.raises(Refused):
        check_url("http://127.0.0.1:8081/h", allow)  # another port


@pytest.mark.parametrize("entry", ["http://x", "x:port", "x/y", "user@x"])
def test_a_bad_allow_list_entry_is_a_config_error_naming_it(entry: str) -> None:
    with pytest.raises(ConfigError, match=f"NOTIFICATIONS_WEBHOOK_ALLOW_HOSTS: {entry!r}"):
        AllowList.parse(f"ok.example, {entry}")


class FixedResolver(AbstractResolver):
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_a_name_resolves_to_its_public_addresses_only() -> None:
    mixed = PublicOnlyResolver(NOBODY, FixedResolver("10.0.0.5", "93.184.215.14"))
    assert [r["host"] for r in await mixed.resolve("crm.example", 443)] == ["93.184.215.14"]
    private = PublicOnlyResolver(NOBODY, FixedResolver("127.0.0.1", "::1"))
    with pytest.raises(Refused, match=r"crm\.example resolves to 127\.0\.0\.1, ::1, no public"):
        await private.resolve("crm.example", 443)
    allowed = PublicOnlyResolver(AllowList.parse("crm.example"), FixedResolver("10.0.0.5"))
    assert [r["host"] for r in await allowed.resolve("crm.example", 443)] == ["10.0.0.5"]


# -- against a real receiver ------------------------------------------------------------------
@asynccontextmanager
async def receiver(endless_answer: bool = False) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A local HTTP receiver: its port and the bodies it received."""
    got: list[bytes] = []

    async def hook(request: web.Request) -> web.StreamResponse:
        got.append(await request.read())
        if endless_answer:
            return await endless(request)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port, got
    finally:
        await runner.cleanup()


async def endless(request: web.Request) -> web.StreamResponse:
    """200, then a body that never ends (until the client hangs up)."""
    response = web.StreamResponse(status=200)
    await response.prepare(request)
    chunk = b"x" * 65536
    try:
        while True:
            await response.write(chunk)
    except (ConnectionResetError, RuntimeError):
        pass
    return response


async def post(transport: WebhookTransport, url: str, timeout_s: float = 10.0) -> None:
    try:
        await transport.post(Webhook(url, timeout_s=timeout_s), b"{}", {})
    finally:
        await transport.close()


async def test_a_local_receiver_is_refused_unless_the_operator_allows_it() -> None:
    async with receiver() as (port, got):
        for url in (f"http://127.0.0.1:{port}/hook", f"https://localhost:{port}/hook"):
            with pytest.raises(PermanentFailure) as err:
                await post(WebhookTransport(), url)
            assert err.value.reason == URL_REFUSED
        assert got == []
        allowed = WebhookTransport(AllowList.parse(f"127.0.0.1:{port}"))
        await post(allowed, f"http://127.0.0.1:{port}/hook")
        assert got == [b"{}"]


async def test_a_name_resolving_to_loopback_is_refused_when_it_resolves() -> None:
    with pytest.raises(PermanentFailure) as err:
        await post(WebhookTransport(), "https://localhost:1/hook")
    assert err.value.reason == URL_REFUSED
    assert "localhost resolves to" in err.value.detail and "no public address" in err.value.detail


async def test_only_the_start_of_an_endless_answer_is_read() -> None:
    # An unbounded read would wait for the end of the body until the timeout, then retry.
    async with receiver(endless_answer=True) as (port, _):
        allow = AllowList.parse(f"127.0.0.1:{port}")
        await asyncio.wait_for(
            post(WebhookTransport(allow), f"http://127.0.0.1:{port}/hook", timeout_s=5), 30
        )
