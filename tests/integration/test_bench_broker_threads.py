"""`jvm_thread_cpu`: the bench's split of the broker's CPU by thread (requests, JIT, GC), read
from /proc against the session's broker; and `cpu_shares` / `show_shares`, what it prints."""

from __future__ import annotations

import pytest

from bench.pipeline_support import cpu_seconds, cpu_shares, jvm_thread_cpu, show_shares
from referrals.platform.settings import KafkaSettings
from referrals.tools import broker

from .helpers import produce

pytestmark = pytest.mark.broker


async def test_the_broker_s_cpu_splits_into_its_request_jit_and_gc_threads(
    kafka_broker: broker.BrokerConfig, topics: KafkaSettings
) -> None:
    pid = int(kafka_broker.pid_file.read_text())
    await produce(topics, "referral.shares.v1", [(b"k", b"not avro: bytes are enough")] * 200)
    after = jvm_thread_cpu(pid)
    assert set(after) == {"requests", "JIT", "GC", "other"}
    assert after["JIT"] > 0, "a broker that has started has compiled something"
    assert after["requests"] > 0, "the broker has answered requests (topics, produce)"
    # Threads that ended are not counted, so the groups add up to at most the process's CPU.
    assert sum(after.values()) <= cpu_seconds(pid) + 0.05


def test_shares_are_percent_of_one_core_busiest_first_with_the_total() -> None:
    shares = cpu_shares({"a": 1.0, "b": 0.0}, {"a": 2.0, "b": 3.0, "c": 0.5}, seconds=10)
    assert shares == {"a": 10.0, "b": 30.0, "c": 5.0}
    assert show_shares(shares) == "b 30%, a 10%, c 5% (total 45%)"
