"""What the bench parts share: the broker they measure on, the scale, free ports.

Each part (`limit`, `peers`, `api_portal`, `pipeline`) runs on a broker of its own by default:
the project's broker (deploy/kafka) started on free ports in a temporary directory, so no part
measures a broker still compacting or replicating what the part before it wrote. With
`BENCH_BOOTSTRAP=host:port` (or `--bootstrap`) a part uses that broker instead (the smoke test
gives its test broker).

`BENCH_SCALE=smoke|full` (default full): smoke is a few hundred records, seconds in all, only
to prove the suite still runs; its figures mean nothing.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/limit.py` from the repository root
    sys.path.insert(0, str(REPO))

from referrals.tools import broker  # noqa: E402


def scale() -> str:
    value = os.environ.get("BENCH_SCALE", "full")
    if value not in ("smoke", "full"):
        raise SystemExit(f"BENCH_SCALE must be smoke or full, not {value!r}")
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def bench_broker(bootstrap: str | None = None) -> Iterator[str]:
    """The bootstrap address to measure on: the one given (argument or BENCH_BOOTSTRAP), or a
    broker of the project's started for this part on free ports in a temporary directory."""
    given = bootstrap or os.environ.get("BENCH_BOOTSTRAP")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory() as tmp:
        cfg = broker.BrokerConfig(
            port=free_port(), controller_port=free_port(), data_dir=Path(tmp) / "kafka"
        )
        broker.start(cfg)
        try:
            yield cfg.bootstrap
        finally:
            broker.stop(cfg)


def results_dir() -> Path:
    """Where parts save their figures (BENCH_RESULTS, else bench/results)."""
    return Path(os.environ.get("BENCH_RESULTS", str(REPO / "bench" / "results")))
