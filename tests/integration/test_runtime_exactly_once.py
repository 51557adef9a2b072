"""The shared runtime's promise, proven with real processes and SIGKILL: whatever crashes and
rebalances happen, a read_committed reader sees each output exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from referrals.contract.avro import AvroCodec
from referrals.contract.records import Channel, NotificationSent, ShareEvent
from referrals.contract.topics import NOTIFICATIONS_SENT, SHARES
from referrals.platform.settings import KafkaSettings

from ..conftest import REPO, env_for
from .helpers import produce, read_topic

pytestmark = pytest.mark.broker
N = 1500


def _shares(n: int) -> list[tuple[bytes | None, bytes]]:
    codec = AvroCodec()
    when = datetime(2026, 5, 1, tzinfo=UTC)
    return [
        (
            f"adv-{i % 97}".encode(),
            codec.encode(ShareEvent(f"ev-{i}", "p", f"adv-{i % 97}", Channel.EMAIL, "C", when)),
        )
        for i in range(n)
    ]


def _log_dir() -> str | None:
    """ECHO_LOG_DIR keeps each instance's log there (for looking into a failure)."""
    return os.environ.get("ECHO_LOG_DIR")


def _start(
    settings: KafkaSettings, delay_ms: float, mode: str = "echo", state_dir: str = ""
) -> subprocess.Popen[bytes]:
    env = env_for(
        settings,
        ECHO_METRICS_PORT="0",
        ECHO_DELAY_MS=str(delay_ms),
        ECHO_MAX_BATCH="100",
        ECHO_GROUP_ID=f"{settings.topic_prefix}echo",
        ECHO_SESSION_TIMEOUT_MS="6000",
        ECHO_MODE=mode,
        ECHO_STATE_DIR=state_dir or f"/tmp/referrals-tests/{settings.topic_prefix}",
    )
    where = _log_dir()
    with open(f"{where}/echo-{time.time_ns()}.log" if where else os.devnull, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.echo_service"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def _committed_ids(
    settings: KafkaSettings, expect: int | None = None, within: float = 60
) -> Counter[str]:
    codec = AvroCodec()
    records = await read_topic(
        settings, NOTIFICATIONS_SENT, expect=expect, within=within, quiet=0.5
    )
    ids: Counter[str] = Counter()
    _WHERE.clear()
    for m in records:
        sent = codec.decode(m.value)
        assert isinstance(sent, NotificationSent)
        ids[sent.notification_id] += 1
        _WHERE.setdefault(sent.notification_id, []).append(
            f"p{m.partition}@{m.offset} {sent.channel} {sent.sent_at:%H:%M:%S.%f}"
        )
    return ids


_WHERE: dict[str, list[str]] = {}  # each output's copies, for a failure's message


def _doubled(ids: Counter[str]) -> dict[str, list[str]]:
    return {k: _WHERE.get(k, []) for k, v in ids.items() if v > 1}


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


async def _stop_mid_stream(
    settings: KafkaSettings, proc: subprocess.Popen[bytes], at_least: int, *, hard: bool = True
) -> int:
    """Stops `proc` (SIGKILL, or SIGTERM when not `hard`) once at least `at_least` outputs are
    committed, so the stop lands mid-stream on a loaded machine too; returns that count."""
    deadline = time.monotonic() + 60
    count = 0
    while time.monotonic() < deadline:
        count = sum((await _committed_ids(settings, within=0.5)).values())  # a snapshot
        if count >= at_least:
            break
        await asyncio.sleep(0.1)
    if hard:
        _kill(proc)
    else:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    return count


async def test_outputs_are_exactly_once_across_repeated_sigkills(topics: KafkaSettings) -> None:
    await produce(topics, SHARES, _shares(N))
    progress_at_kills = []
    for at_least in (100, 500, 900):
        proc = _start(topics, delay_ms=2.0)
        progress_at_kills.append(await _stop_mid_stream(topics, proc, at_least))
    proc = _start(topics, delay_ms=0)
    try:
        ids = await _committed_ids(topics, expect=N)
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # SIGTERM: a clean stop
    assert any(0 < p < N for p in progress_at_kills), (
        f"no kill landed mid-stream: {progress_at_kills}"
    )
    assert set(ids) == {f"ev-{i}" for i in range(N)}
    duplicates = {k: v for k, v in ids.items() if v > 1}
    assert not duplicates, f"{len(duplicates)} outputs seen more than once"


async def test_two_instances_share_the_work_and_a_killed_one_is_taken_over(
    topics: KafkaSettings,
) -> None:
    await produce(topics, SHARES, _shares(N))
    a = _start(topics, delay_ms=2.0)
    b = _start(topics, delay_ms=2.0)
    try:
        await _stop_mid_stream(topics, a, 300)  # b takes a's tasks once a's session times out
        ids = await _committed_ids(topics, expect=N)
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    assert set(ids) == {f"ev-{i}" for i in range(N)}
    assert max(ids.values()) == 1, _doubled(ids)


def test_echo_service_module_is_importable() -> None:
    # Guards the subprocess tests above from passing vacuously on an import error.
    proc = subprocess.run(
        [sys.executable, "-c", "import tests.integration.echo_service"],
        cwd=REPO,
        env={**os.environ},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def _expected_counts(n: int) -> set[str]:
    per_advocate = Counter(f"adv-{i % 97}" for i in range(n))
    return {f"{adv}#{k}" for adv, total in per_advocate.items() for k in range(1, total + 1)}


async def test_state_and_outputs_stay_in_step_across_sigkills_and_clean_restarts(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    await produce(topics, SHARES, _shares(N))
    state_dir = str(tmp_path / "state")
    # SIGKILL: no checkpoint, the store is rebuilt from its changelog. SIGTERM: a checkpoint
    # lets the next start replay only what is new.
    for at_least, hard in ((100, True), (500, False), (900, True)):
        proc = _start(topics, delay_ms=2.0, mode="count", state_dir=state_dir)
        await _stop_mid_stream(topics, proc, at_least, hard=hard)
    proc = _start(topics, delay_ms=0, mode="count", state_dir=state_dir)
    try:
        ids = await _committed_ids(topics, expect=N)
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    assert set(ids) == _expected_counts(N)
    assert max(ids.values()) == 1


async def test_state_moves_with_its_task_to_another_instance(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    await produce(topics, SHARES, _shares(N))
    a = _start(topics, delay_ms=2.0, mode="count", state_dir=str(tmp_path / "a"))
    b = _start(topics, delay_ms=2.0, mode="count", state_dir=str(tmp_path / "b"))
    try:
        # b restores a's tasks from their changelogs, into its own state directory.
        await _stop_mid_stream(topics, a, 300)
        ids = await _committed_ids(topics, expect=N)
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    assert set(ids) == _expected_counts(N)
    assert max(ids.values()) == 1
