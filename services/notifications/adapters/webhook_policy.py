"""Where a webhook may go: https to public addresses, unless the operator allows a host.

A program document names its webhook URLs, and whoever writes a program document must not be
able to make the service talk to what only the service can reach (the broker, a metadata
service at 169.254.169.254, an admin port on localhost) or send advocates' data in clear. So
by default a webhook URL must be https, and its host must resolve to public addresses only:
loopback, private (RFC 1918, fc00::/7), link-local, carrier-grade NAT, multicast, reserved and
unspecified addresses are refused, IPv4 inside IPv6 (::ffff:a.b.c.d, 6to4, Teredo) included.
The check runs in the HTTP client's resolver, on the addresses it is about to connect to, so a
name that resolves differently a moment later (DNS rebinding) gains nothing.

`NOTIFICATIONS_WEBHOOK_ALLOW_HOSTS`, comma-separated `host[:port]`, names the operator's
exceptions (an internal CRM, a test receiver): those hosts (on that port, when one is given)
may resolve anywhere and may use http.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from referrals.platform.errors import ConfigError

DEFAULT_PORTS = {"http": 80, "https": 443}


class Refused(Exception):
    """A webhook URL this service will not call (a configuration to fix, never retried)."""


@dataclass(frozen=True, slots=True)
class AllowList:
    """The operator's exceptions: (host, port or None for any port)."""

    entries: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def parse(cls, text: str, setting: str = "NOTIFICATIONS_WEBHOOK_ALLOW_HOSTS") -> AllowList:
        entries = set()
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                parts = urlsplit(f"//{entry}")
                host, port = parts.hostname, parts.port
            except ValueError as err:
                raise ConfigError(f"{setting}: {entry!r} is not host[:port] ({err})") from err
            if not host or parts.path or parts.query or parts.username:
                raise ConfigError(f"{setting}: {entry!r} is not host[:port]")
            entries.add((host.rstrip(".").lower(), port))
        return cls(frozenset(entries))

    def allows(self, host: str, port: int) -> bool:
        host = host.rstrip(".").lower()
        return (host, None) in self.entries or (host, port) in self.entries


def is_public(address: str) -> bool:
    """Whether `address` is a public unicast address (what a webhook may connect to)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone: fe80::1%eth0
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def check_url(url: str, allow: AllowList) -> None:
    """Refused unless `url` is https (or http to an allowed host) and, when its host is an
    address rather than a name, a public one or allowed. Names are checked when resolved."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        raise Refused(f"{url!r} is not an http(s) URL")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as err:
        raise Refused(f"{url!r} has a bad port") from err
    allowed = allow.allows(host, port)
    if scheme == "http" and not allowed:
        raise Refused(
            f"http to {host}:{port} is refused: webhooks use https, unless the host is in "
            "NOTIFICATIONS_WEBHOOK_ALLOW_HOSTS"
        )
    if not allowed and _is_address(host) and not is_public(host):
        raise Refused(f"{host} is not a public address (NOTIFICATIONS_WEBHOOK_ALLOW_HOSTS)")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class PublicOnlyResolver(AbstractResolver):
    """The HTTP client's resolver: an allowed host resolves as usual; any other name resolves
    to its public addresses only, and to none at all (Refused) if it has no public one."""

    def __init__(self, allow: AllowList, inner: AbstractResolver | None = None) -> None:
        self.allow = allow
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if self.allow.allows(host, port):
            return found
        public = [r for r in found if is_public(r["host"])]
        if not public:
            shown = ", ".join(sorted({r["host"] for r in found})) or "nothing"
            raise Refused(
                f"{host} resolves to {shown}, no public address "
                "(allow it in NOTIFICATIONS_WEBHOOK_ALLOW_HOSTS if it is yours)"
            )
        return public

    async def close(self) -> None:
        await self.inner.close()


def refused_in(err: BaseException) -> Refused | None:
    """The Refused behind an error the HTTP client raised, if that is what it is."""
    seen: Any = err
    while seen is not None:
        if isinstance(seen, Refused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
