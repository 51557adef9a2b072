"""`referrals run api` as a process: it refuses to start without a tokens file, serves health
(SERVING once ready) and metrics, and stops cleanly on SIGTERM."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from referrals.platform.settings import KafkaSettings
from services.api.proto import referrals_pb2 as pb
from services.api.proto import referrals_pb2_grpc as rpc

from ..conftest import REPO, env_for
from .api_support import free_port, tokens_file
from .test_service_skeletons import _get, _metric

pytestmark = pytest.mark.broker
RUN_API = [sys.executable, "-m", "referrals.tools.cli", "run", "api"]


def test_without_a_tokens_file_the_api_refuses_to_start(topics: KafkaSettings) -> None:
    result = subprocess.run(
        RUN_API,
        cwd=REPO,
        env=env_for(topics, API_GRPC_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "API_TOKENS_FILE is not set: the API refuses to start" in result.stderr


def test_the_api_process_serves_health_and_metrics_and_stops_cleanly(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    tokens = tokens_file(tmp_path / "tokens.txt")
    port, metrics = free_port(), free_port()
    env = env_for(
        topics,
        API_GRPC_PORT=str(port),
        API_METRICS_PORT=str(metrics),
        API_TOKENS_FILE=str(tmp_path / "tokens.txt"),
        API_STATE_DIR=str(tmp_path / "state"),
    )
    log = tmp_path / "api.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(RUN_API, cwd=REPO, env=env, stdout=sink, stderr=sink)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 40
            serving = health_pb2.HealthCheckResponse.SERVING
            status = None
            while time.monotonic() < deadline and status != serving:
                assert proc.poll() is None, log.read_text()
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                except grpc.RpcError:
                    time.sleep(0.2)
            assert status == serving, log.read_text()
            programs = rpc.ProgramsStub(channel)
            auth = (("authorization", f"Bearer {tokens['operator']}"),)
            answer = programs.ValidateProgram(
                pb.ValidateProgramRequest(document="program_id: x"), metadata=auth, timeout=10
            )
            assert answer.violations  # currency and tiers are missing
        code, body = _get(f"http://127.0.0.1:{metrics}/metrics")
        assert code == 200
        method = "/referrals.v1.Programs/ValidateProgram"
        assert _metric(body, "referrals_api_calls_total", method=method, code="OK") == 1
        assert _get(f"http://127.0.0.1:{metrics}/readyz")[0] == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    assert tokens["operator"] not in log.read_text()
