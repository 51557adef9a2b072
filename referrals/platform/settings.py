"""Settings read once from the environment, with a per-service prefix.

A settings class is a frozen dataclass; `load(cls, "REWARDS")` fills each field from
`REWARDS_<FIELD>` when set, else keeps the default. Kafka connection settings are shared by every
process and use the `KAFKA_` prefix (so `KAFKA_BOOTSTRAP_SERVERS` works everywhere).
"""

from __future__ import annotations

import os
import socket
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from referrals.platform.errors import ConfigError

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def load(cls: type[T], prefix: str, env: Mapping[str, str] | None = None) -> T:
    """Builds `cls` from `<PREFIX>_<FIELD>` environment variables; defaults fill the rest."""
    env = os.environ if env is None else env
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        key = f"{prefix}_{f.name.upper()}"
        if key in env:
            kwargs[f.name] = _coerce(env[key], hints[f.name], key)
    return cls(**kwargs)


def _coerce(raw: str, hint: Any, key: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if raw == "":
            return None
        return _coerce(raw, args[0], key)
    try:
        if hint is bool:
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected true or false")
        if hint in (int, float, str, Path):
            return hint(raw)
    except ValueError as err:
        raise ConfigError(f"{key}={raw!r}: {err}") from err
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")


@dataclass(frozen=True)
class KafkaSettings:
    """How every process reaches Kafka (env prefix KAFKA_)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    client_id: str = "referrals"
    # Topic names get this prefix: lets several programs or test runs share one cluster.
    topic_prefix: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings:
        return load(cls, "KAFKA", env)


def _instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ServiceSettings:
    """Settings every service shares; services subclass it and add their own fields."""

    group_id: str = ""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    instance_id: str = field(default_factory=_instance_id)
    # Records per poll: large enough to amortise one transaction over many records, small
    # enough that a batch commits well inside the 250 ms payout latency target.
    max_batch: int = 2000
    poll_timeout_ms: int = 20
    # How often each task's timers run (Processor.punctuate): due holds, nurture, wakeups.
    punctuate_ms: int = 1000
    state_dir: Path = Path(".local/state")
    state_backend: str = "rocksdb"  # or "memory" (state rebuilt from changelogs at each start)
    log_level: str = "INFO"
    # A member that stops heartbeating loses its tasks after this long (broker minimum 6 s).
    session_timeout_ms: int = 10_000
    # Added to the wall clock (seconds). For tests and drills only: lets a test see what a
    # service does days later (holds released, nurture sent) without waiting days.
    clock_offset_s: float = 0.0
    # How long an event may wait for its program's config before it goes to the DLQ.
    unknown_program_wait_s: float = 3600.0
