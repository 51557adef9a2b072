"""The main job at small scale, as the end-to-end tests run it: a few hundred advocates, the
services' ports free ones, the year's lines kept for the failure message."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from referrals.tools.program_year import YearPlan


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def small_year(work: Path, seed: int, show: Callable[[str], None]) -> YearPlan:
    """300 advocates replayed in 8 s: enough for every money event (fraud bursts denied and
    approved, refunds clawed back, a pause) within the tests' time."""
    return YearPlan(
        work=work,
        advocates=300,
        seed=seed,
        seconds=8.0,
        metrics_ports={s: free_port() for s in ("attribution", "rewards", "notifications", "api")},
        api_port=free_port(),
        smtp_port=free_port(),
        unsubscribe_port=free_port(),
        drain_s=150.0,
        show=show,
    )
