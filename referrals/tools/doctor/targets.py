"""Where doctor looks for each service: read from the environment the services themselves read.

A service's /readyz is on `<PREFIX>_METRICS_HOST:<PREFIX>_METRICS_PORT` (README, Ports) and its
consumer group is `<PREFIX>_GROUP_ID`, with the defaults of the service's own settings class, so
doctor run in the services' environment finds them with no flag. `--url SERVICE=URL` (or
`DOCTOR_<SERVICE>_URL`) points it elsewhere, e.g. at a Kubernetes Service. What each group
consumes and which changelogs it keeps come from the service's processor class.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from referrals.platform.errors import ConfigError
from referrals.platform.settings import EnvSettings
from referrals.streams.stores import changelog_topic

SERVICES = ("attribution", "rewards", "notifications", "api")
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    url: str  # base URL of its health endpoints
    group: str | None  # its consumer group (the API has none: it reads every partition)
    inputs: tuple[str, ...] = ()  # logical topics its group consumes
    changelogs: tuple[str, ...] = ()  # logical names of its stores' changelog topics

    @property
    def start_hint(self) -> str:
        return f"referrals run {self.name}"


# Imported when asked for: doctor needs a few defaults and class attributes of each service.
_SETTINGS = {
    "attribution": ("services.attribution.app", "AttributionSettings"),
    "rewards": ("services.rewards.adapters.settings", "RewardsSettings"),
    "notifications": ("services.notifications.adapters.config", "NotificationsSettings"),
    "api": ("services.api.settings", "ApiSettings"),
}
_PROCESSORS = {
    "attribution": ("services.attribution.adapters.processor", "AttributionProcessor"),
    "rewards": ("services.rewards.adapters.processor", "RewardsProcessor"),
    "notifications": ("services.notifications.adapters.processor", "NotificationsProcessor"),
}


def _load(where: tuple[str, str]) -> Any:
    module, name = where
    return getattr(importlib.import_module(module), name)


def _topics_of(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(inputs of its consumer group, its changelog topics), from its processor class."""
    if name not in _PROCESSORS:
        return (), ()
    processor = _load(_PROCESSORS[name])
    changelogs = tuple(changelog_topic(processor.name, store) for store in processor.stores)
    return tuple(processor.inputs), changelogs


def _default(cls: type[EnvSettings], field: str) -> str:
    value = cls.model_fields[field].default if field in cls.model_fields else None
    return "" if value is None else str(value)


def service(name: str, env: Mapping[str, str], url: str | None = None) -> Service:
    """Where `name` answers and what it consumes, as its own settings would say in `env`."""
    cls: type[EnvSettings] = _load(_SETTINGS[name])
    prefix = name.upper()
    host = env.get(f"{prefix}_METRICS_HOST") or _default(cls, "metrics_host")
    port = env.get(f"{prefix}_METRICS_PORT") or _default(cls, "metrics_port")
    base = url or env.get(f"DOCTOR_{prefix}_URL") or f"http://{_host(host)}:{port}"
    inputs, changelogs = _topics_of(name)
    group = (env.get(f"{prefix}_GROUP_ID") or _default(cls, "group_id") or None) if inputs else None
    return Service(name, base.rstrip("/"), group, inputs, changelogs)


def _host(host: str) -> str:
    host = _ANY_ADDRESS.get(host, host)
    return f"[{host}]" if ":" in host else host


def services(
    env: Mapping[str, str], urls: Mapping[str, str], names: Sequence[str] = SERVICES
) -> list[Service]:
    unknown = sorted(set(names) - set(SERVICES)) + sorted(set(urls) - set(SERVICES))
    if unknown:
        raise ConfigError(
            f"unknown service(s) {', '.join(unknown)}; the services are {', '.join(SERVICES)}"
        )
    return [service(name, env, urls.get(name)) for name in names]


def parse_urls(pairs: Sequence[str]) -> dict[str, str]:
    """`--url rewards=http://10.0.0.5:9202` options as {service: url}."""
    out = {}
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise ConfigError(f"--url {pair!r}: expected SERVICE=http://HOST:PORT")
        out[name.strip()] = url.strip()
    return out
