"""The shared runtime's promise, proven with real processes and SIGKILL: whatever crashes and
rebalances happen, a read_committed reader sees each output exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from referrals.avro import AvroCodec
from referrals.records import Channel, ShareEvent
from referrals.settings import KafkaSettings
from referrals.topics import NOTIFICATIONS_SENT, SHARES

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
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.echo_service"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _committed_ids(settings: KafkaSettings, expect: int | None = None) -> Counter[str]:
    codec = AvroCodec()
    records = await read_topic(settings, NOTIFICATIONS_SENT, expect=expect, within=60, quiet=0.5)
    return Counter(codec.decode(m.value).notification_id for m in records)  # type: ignore[union-attr]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


async def test_outputs_are_exactly_once_across_repeated_sigkills(topics: KafkaSettings) -> None:
    await produce(topics, SHARES, _shares(N))
    progress_at_kills = []
    for delay in (3.0, 2.5, 2.0):
        proc = _start(topics, delay_ms=1.0)
        await asyncio.sleep(delay)
        _kill(proc)
        progress_at_kills.append(sum((await _committed_ids(topics)).values()))
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
    a = _start(topics, delay_ms=1.0)
    b = _start(topics, delay_ms=1.0)
    try:
        await asyncio.sleep(3.5)
        _kill(a)  # b takes a's tasks once a's session times out
        ids = await _committed_ids(topics, expect=N)
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    assert set(ids) == {f"ev-{i}" for i in range(N)}
    assert max(ids.values()) == 1


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
    for delay, hard in ((3.0, True), (2.5, False), (2.5, True)):
        proc = _start(topics, delay_ms=1.0, mode="count", state_dir=state_dir)
        await asyncio.sleep(delay)
        if hard:
            _kill(proc)  # no checkpoint: the store is rebuilt from its changelog
        else:
            proc.terminate()  # clean: a checkpoint lets the next start replay only what is new
            assert proc.wait(timeout=30) == 0
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
    a = _start(topics, delay_ms=1.0, mode="count", state_dir=str(tmp_path / "a"))
    b = _start(topics, delay_ms=1.0, mode="count", state_dir=str(tmp_path / "b"))
    try:
        await asyncio.sleep(3.5)
        _kill(a)  # b restores a's tasks from their changelogs, into its own state directory
        ids = await _committed_ids(topics, expect=N)
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    assert set(ids) == _expected_counts(N)
    assert max(ids.values()) == 1
