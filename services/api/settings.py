"""The API's settings (environment prefix `API_`), read once in `main`.

The address and ports default so that the API runs beside the three stream services on one
machine (their metrics use 9201-9203); a second instance needs its own API_GRPC_PORT,
API_METRICS_PORT and API_STATE_DIR.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from referrals.platform.settings import EnvSettings

MIB = 1024 * 1024


class ApiSettings(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="API_")

    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=9300, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9204, ge=0, le=65535)
    state_dir: Path = Path(".local/api")
    # `<role> <sha256 hex of the token> [name]` per line; no file, no API (contract: Auth).
    tokens_file: Path | None = None
    # Both or neither: the server's certificate chain and private key, PEM.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A request over this many bytes is refused (RESOURCE_EXHAUSTED) before it is read. 4 MiB is
    # gRPC's own default: thousands of records, far below what one Kafka transaction carries.
    max_request_bytes: int = Field(default=4 * MIB, ge=1024)
    # A response never exceeds this (Reconcile pages to stay under it).
    max_response_bytes: int = Field(default=4 * MIB, ge=64 * 1024)
    # Records in one Ingest request (INVALID_ARGUMENT above it): one request, one transaction.
    max_records: int = Field(default=10_000, ge=1)
    # How long approve / deny / retry wait for the rewards service when the call has no
    # deadline (the contract's default, as `referrals approve --timeout`).
    command_timeout_s: float = Field(default=30.0, gt=0)
    # In-flight calls are given this long to finish on SIGTERM.
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    log_level: str = "INFO"
