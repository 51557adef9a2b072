"""Settings read once from the environment, with a per-service prefix (pydantic-settings).

A settings class is a frozen `EnvSettings` (a pydantic-settings `BaseSettings`) whose `env_prefix`
names its variables: `load(RewardsSettings)` fills each field from `REWARDS_<FIELD>` when set,
else keeps the default. Kafka connection settings are shared by every process and use the
`KAFKA_` prefix (so `KAFKA_BOOTSTRAP_SERVERS` works everywhere).

The rules every variable follows:
- only `load` (and `KafkaSettings.from_env`) reads the environment, once, in `main`. Building a
  settings object with keywords reads nothing: tests and tools that build one by hand get what
  they wrote, whatever the shell exports;
- the name is exactly `<PREFIX>_<FIELD>` in upper case; other variables are ignored;
- a bool is 1/true/yes/on or 0/false/no/off (any case); an empty value makes an optional
  setting None and leaves a plain string empty;
- a value that does not parse is a `ConfigError` naming the variable and what was wrong.
"""

from __future__ import annotations

import os
import socket
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from referrals.platform.errors import ConfigError
from referrals.platform.money import CURRENCIES

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class EnvSettings(BaseSettings):
    """Base of every settings class: frozen, read from the environment only by `load`."""

    model_config = SettingsConfigDict(frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keywords only: `load` reads the environment explicitly (see the module docstring).
        return (init_settings,)

    @field_validator("*", mode="before")
    @classmethod
    def _env_spelling(cls, value: Any, info: ValidationInfo) -> Any:
        """An environment variable's text, read by this project's rules for bools and None."""
        if not isinstance(value, str) or info.field_name is None:
            return value
        hint = cls.model_fields[info.field_name].annotation
        optional = get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
        if optional and value == "":
            return None
        if hint is bool or (optional and bool in get_args(hint)):
            return _flag(value)
        return value


def _flag(raw: str) -> bool:
    # Stricter than pydantic's bool: "y", "t" or "f" in an environment are more likely typos.
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected true or false")


S = TypeVar("S", bound=EnvSettings)


def load(cls: type[S], prefix: str | None = None, env: Mapping[str, str] | None = None) -> S:
    """Builds `cls` from `<PREFIX>_<FIELD>` environment variables; defaults fill the rest.

    `prefix` defaults to the class's own `env_prefix`; `env` to the process environment.
    """
    env_prefix = f"{prefix}_" if prefix else cls.model_config.get("env_prefix", "")
    source = _Environment(cls, env_prefix, os.environ if env is None else env)
    values = source()
    try:
        return cls(**values)
    except ValidationError as err:
        raise ConfigError(_describe(err, env_prefix)) from err


def _describe(err: ValidationError, env_prefix: str) -> str:
    """`REWARDS_MAX_BATCH='many': Input should be a valid integer ...` for each bad value."""
    problems = []
    for error in err.errors():
        variable = f"{env_prefix}{error['loc'][0]}".upper() if error["loc"] else env_prefix
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{variable}={error['input']!r}: {message}")
    return "; ".join(problems)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over `env`, matching upper-case names only."""

    def __init__(self, cls: type[BaseSettings], env_prefix: str, env: Mapping[str, str]) -> None:
        # Read by `_load_env_vars`, which the base class's __init__ calls.
        self._env = env
        super().__init__(cls, case_sensitive=False, env_prefix=env_prefix)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Case-insensitive matching would also take `rewards_metrics_port`; only the documented
        # upper-case name counts, as it always has.
        return {name.lower(): value for name, value in self._env.items() if name.isupper()}

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as err:  # a list or mapping setting takes JSON
            variable = f"{self.env_prefix}{field_name}".upper()
            raise ConfigError(f"{variable}={value!r}: expected JSON ({err})") from err


class KafkaSettings(EnvSettings):
    """How every process reaches Kafka (env prefix KAFKA_)."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_")

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

    def as_env(self) -> dict[str, str]:
        """The KAFKA_* variables from which a child process reads these same settings."""
        return {
            f"KAFKA_{name.upper()}": str(value)
            for name, value in self.model_dump().items()
            if value is not None
        }

    @property
    def sasl_user(self) -> str | None:
        """The SASL user this client authenticates as; None without SASL."""
        if self.security_protocol.upper().startswith("SASL_") and self.sasl_username:
            return self.sasl_username
        return None


def _instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ServiceSettings(EnvSettings):
    """Settings every service shares; services subclass it, add fields and set `env_prefix`."""

    group_id: str = ""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    instance_id: str = Field(default_factory=_instance_id)
    # Records per poll: large enough to amortise one transaction over many records, small
    # enough that a batch commits well inside the 250 ms payout latency target.
    max_batch: int = 2000
    poll_timeout_ms: int = 20
    # How long a fetch waits at the broker for records to arrive (aiokafka's default is
    # 500 ms): a partition resumed or rewound is fetched only when the fetch in flight ends.
    fetch_max_wait_ms: int = 100
    # How often each task's timers run (Processor.punctuate): due holds, nurture, wakeups.
    punctuate_ms: int = 1000
    # A re-key hop's record (attribution's deals by prospect, rewards' records by payout and
    # by advocate) is handled by its task in the transaction that made it when that task is
    # open here (`referrals.streams.loopback`); false writes every one to its topic and
    # fetches it back, a transaction later.
    hand_over: bool = True
    state_dir: Path = Path(".local/state")
    state_backend: str = "rocksdb"  # or "memory" (state rebuilt from changelogs at each start)
    # Native memory of all the process's RocksDB stores together, whatever the number of
    # tasks: one LRU block cache, the memtables (at most state_write_buffer_mb) charged to it.
    state_cache_mb: int = 64
    state_write_buffer_mb: int = 32
    log_level: str = "INFO"
    # A member that stops heartbeating loses its tasks after this long (broker minimum 6 s).
    session_timeout_ms: int = 10_000
    # A transaction (or a producer's start) not done after this long is aborted and retried:
    # the processing loop never hangs on an unreachable broker.
    commit_timeout_s: float = 30.0
    # The broker aborts a transaction of this process left open longer than this: what a
    # process that died mid-transaction holds up (read_committed readers of the partitions it
    # wrote) until its tasks' new owner reads them. A restart with the same state directory
    # aborts it at once. Kafka Streams' exactly-once default.
    transaction_timeout_ms: int = 10_000
    # Added to the wall clock (seconds). For tests and drills only: lets a test see what a
    # service does days later (holds released, nurture sent) without waiting days.
    clock_offset_s: float = 0.0
    # How long an event may wait for its program's config before it goes to the DLQ.
    unknown_program_wait_s: float = 3600.0


DEFAULT_MAX_AMOUNT_MINOR = 10**10


class AmountLimits(EnvSettings):
    """The largest amount (minor units) an input record may hold (env prefix REFERRALS_).

    `REFERRALS_MAX_AMOUNT_MINOR` is the ceiling for every currency (default 10^10 minor units,
    as the contract says); `REFERRALS_AMOUNT_CEILINGS` overrides it per currency, as JSON like
    every mapping setting: `{"JPY": 1000000000000, "KRW": 10000000000000}`. An amount above
    its currency's ceiling is bad input (`AMOUNT_ABOVE_CEILING`).
    """

    model_config = SettingsConfigDict(env_prefix="REFERRALS_")

    max_amount_minor: int = Field(default=DEFAULT_MAX_AMOUNT_MINOR, gt=0)
    amount_ceilings: dict[str, int] = Field(default_factory=dict)

    @field_validator("amount_ceilings")
    @classmethod
    def _known_currencies(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(code for code in value if code not in CURRENCIES)
        if unknown:
            raise ValueError(f"not ISO 4217 currency codes: {', '.join(unknown)}")
        if any(ceiling <= 0 for ceiling in value.values()):
            raise ValueError("every ceiling must be a positive number of minor units")
        return value

    def ceiling(self, currency: str | None) -> int:
        """The largest amount allowed in `currency` (the general ceiling for None or no
        override)."""
        if currency is None:
            return self.max_amount_minor
        return self.amount_ceilings.get(currency, self.max_amount_minor)
