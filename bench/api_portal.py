"""The gRPC API's two targets, each beside a baseline measured in the same run.

1. GetAdvocate latency at a steady 1,000 requests/s (open loop: requests are sent on schedule
   whether or not earlier ones answered, so a slow server shows as latency, not as a lower
   rate), p50/p99; baseline: the same API's grpc.health.v1 Check at the same rate (the server's
   bare round trip, no auth, no read model). Target: p99 <= 10 ms.
2. A status change visible through the portal: statuses published to referral.status.v1 at
   1,000 records/s, committed every 10 ms (a transaction each); WatchReferrals clients measure
   from the moment the transaction's commit returned to the moment the change arrives, p50/p99;
   baseline: a plain read_committed consumer of the same topic in the same run, measured the
   same way. Target: p99 <= 1 s.

    .venv/bin/python bench/api_portal.py [--seconds 10] [--advocates 2000] [--bootstrap H:P]

Without --bootstrap (or BENCH_BOOTSTRAP) it starts the project's own broker on free ports in a
temporary directory. The figures (p50 and p99 of each) are saved as part "api"
(bench/results/api.json) for bench/report.py.
The API runs as its own process (`referrals run api`), over a read model of `--advocates`
advocates with a few referrals each; the load comes from this one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import common
import grpc
from aiokafka import TopicPartition
from figures import Part, save
from grpc_health.v1 import health_pb2, health_pb2_grpc

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    MatchedBy,
    ReferralStatus,
    ReferralStatusChanged,
)
from referrals.contract.topics import ADVOCATES, STATUS, TopicNames, create_topics
from referrals.platform.settings import KafkaSettings
from referrals.programs.put import load_program, put
from referrals.streams.kafka import make_admin, make_consumer, make_producer
from referrals.tools.simulate import DEMO_PROGRAM
from services.api.proto import referrals_pb2 as pb
from services.api.proto import referrals_pb2_grpc as pb_grpc

RATE = 1_000
PROGRAM = "demo-b2b"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _status(advocate: str, referral: str, status: ReferralStatus, n: int) -> ReferralStatusChanged:
    return ReferralStatusChanged(
        status_id=f"bench-{referral}-{status.value}-{n}",
        referral_id=referral,
        program_id=PROGRAM,
        advocate_id=advocate,
        prospect_id=f"p-{referral}",
        channel=Channel.EMAIL,
        matched_by=MatchedBy.CODE,
        status=status,
        config_version=1,
        occurred_at=datetime.now(UTC) - timedelta(days=1),
    )


async def fill(settings: KafkaSettings, advocates: int) -> None:
    """Profiles and a LEAD and WON for three referrals of each advocate."""
    codec, names = AvroCodec(), TopicNames(settings.topic_prefix)
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    try:
        for a in range(advocates):
            adv = f"adv-{a:06d}"
            email = f"{adv}@bench.example"
            profile = AdvocateProfile(
                PROGRAM, adv, email, f"Advocate {a}", hashlib.sha256(email.encode()).hexdigest(),
                False, True, datetime.now(UTC),
            )  # fmt: skip
            await producer.send(names(ADVOCATES), codec.encode(profile), key=adv.encode())
            for r in range(3):
                for n, st in enumerate((ReferralStatus.LEAD, ReferralStatus.WON)):
                    status = _status(adv, f"{adv}-r{r}", st, n)
                    await producer.send(names(STATUS), codec.encode(status), key=adv.encode())
        await producer.flush()
    finally:
        await producer.stop()


def _percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in ms."""
    ms = sorted(s * 1000 for s in samples) or [0.0]
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def _summary(label: str, samples: list[float]) -> str:
    p50, p99 = _percentiles(samples)
    return f"{label:<58} n={len(samples):>6}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"


def _record(part: Part, name: str, samples: list[float], **kw: object) -> None:
    """p50 and p99 of `samples` as two figures of the part, `name p50` and `name p99`."""
    p50, p99 = _percentiles(samples)
    note = f"{len(samples):,} samples at {RATE:,}/s"
    failed = kw.pop("failed", None) or {}
    if failed:
        note += f"; FAILED calls (not timed): {failed}"
    kw["detail"] = {"samples": len(samples), "failed": failed, "ok": not failed}
    base = kw.pop("baseline", None)
    part.add(
        f"{name} p50",
        p50,
        "ms",
        better="lower",
        note=note,
        baseline=f"{base} p50" if base else None,
        detail=kw["detail"],
    )
    part.add(
        f"{name} p99",
        p99,
        "ms",
        better="lower",
        note=note,
        baseline=f"{base} p99" if base else None,
        **kw,
    )


FAILED: Counter[str] = Counter()  # calls that failed, by status code (kept out of latencies)


async def open_loop(call: object, seconds: float) -> list[float]:
    """Latencies of `call()` started RATE times a second for `seconds`, on schedule; a call
    that fails is counted in FAILED by its status code, not timed."""
    latencies: list[float] = []
    tasks = []

    async def one() -> None:
        t0 = time.perf_counter()
        try:
            await call()  # type: ignore[operator]
        except grpc.aio.AioRpcError as err:
            FAILED[err.code().name] += 1
            return
        latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    for i in range(int(RATE * seconds)):
        due = start + i / RATE
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies


async def visibility(
    settings: KafkaSettings, stub: pb_grpc.AdvocatesStub, token: str, seconds: float, watched: int
) -> tuple[list[float], list[float]]:
    """(portal latencies, plain consumer latencies) of statuses published at RATE/s."""
    codec, names = AvroCodec(), TopicNames(settings.topic_prefix)
    sent_at: dict[str, float] = {}  # key -> when its transaction's commit returned
    # key -> when it arrived: a change may arrive before the commit call returns (the markers
    # are written before the coordinator answers), so arrivals are matched afterwards
    portal_seen: dict[str, float] = {}
    plain_seen: dict[str, float] = {}
    meta = (("authorization", f"Bearer {token}"),)
    advocates = [f"adv-{a:06d}" for a in range(watched)]
    streams = [
        stub.WatchReferrals(pb.WatchReferralsRequest(advocate_id=a), metadata=meta)
        for a in advocates
    ]

    async def watch(stream: object) -> None:
        async for referral in stream:  # type: ignore[attr-defined]
            portal_seen.setdefault(f"{referral.referral_id}/{referral.status}", time.perf_counter())

    consumer = make_consumer(settings, client_id="bench-plain")
    await consumer.start()
    topic = names(STATUS)
    await consumer._client.force_metadata_update()
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)

    async def follow() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for messages in batch.values():
                for m in messages:
                    status = codec.decode(m.value)
                    plain_seen.setdefault(
                        f"{status.referral_id}/{_proto_status(status.status)}", now
                    )

    watchers = [asyncio.create_task(watch(s)) for s in streams]
    follower = asyncio.create_task(follow())
    await asyncio.sleep(2.0)  # every watcher has had its current state
    producer = make_producer(settings, transactional_id=f"bench-{uuid.uuid4().hex}")
    await producer.start()
    try:
        start, total, i = time.perf_counter(), int(RATE * seconds), 0
        while i < total:
            await asyncio.sleep(0.01)
            due = min(total, int((time.perf_counter() - start) * RATE))
            keys = []
            async with producer.transaction():
                for j in range(i, due):
                    adv = advocates[j % len(advocates)]
                    status = _status(adv, f"{adv}-live{j}", ReferralStatus.LEAD, j)
                    await producer.send(names(STATUS), codec.encode(status), key=adv.encode())
                    keys.append(f"{status.referral_id}/{pb.REFERRAL_STATUS_LEAD}")
            committed = time.perf_counter()
            sent_at.update(dict.fromkeys(keys, committed))
            i = due
        await asyncio.sleep(3.0)
    finally:
        await producer.stop()
        for s in streams:
            s.cancel()
        follower.cancel()
        await asyncio.gather(*watchers, follower, return_exceptions=True)
        await consumer.stop()
    portal = [max(0.0, portal_seen[k] - t) for k, t in sent_at.items() if k in portal_seen]
    plain = [max(0.0, plain_seen[k] - t) for k, t in sent_at.items() if k in plain_seen]
    missing = len(sent_at) - len(portal)
    if missing:
        print(f"warning: {missing} changes never reached a watcher within 3 s")
    return portal, plain


def _proto_status(status: ReferralStatus) -> int:
    return int(pb.ReferralStatus.Value(f"REFERRAL_STATUS_{status.value}"))


async def main_async(bootstrap: str, seconds: float, advocates: int) -> None:
    part = Part("api")  # its start and the machine's load now, before the load is ours
    prefix = f"benchapi{uuid.uuid4().hex[:6]}."
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    admin = make_admin(settings)
    await admin.start()
    try:
        await create_topics(admin, TopicNames(prefix), partitions=6)
    finally:
        await admin.close()
    await put(settings, load_program(DEMO_PROGRAM), "bench")
    t0 = time.perf_counter()
    await fill(settings, advocates)
    print(f"filled {advocates:,} advocates (3 referrals each) in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        token = secrets.token_urlsafe(24)
        tokens = Path(tmp) / "tokens.txt"
        tokens.write_text(f"portal {hashlib.sha256(token.encode()).hexdigest()} bench\n")
        port = _free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_TOPIC_PREFIX": prefix,
            "API_GRPC_PORT": str(port),
            "API_METRICS_PORT": str(_free_port()),
            "API_STATE_DIR": str(Path(tmp) / "state"),
            "API_TOKENS_FILE": str(tokens),
            "API_LOG_LEVEL": "WARNING",
        }
        # The API as its own process (`referrals run api`), as it runs in production: the
        # load generator here does not share its event loop.
        server = subprocess.Popen(  # noqa: ASYNC220 (started once, before any load)
            [sys.executable, "-m", "referrals.tools.cli", "run", "api"], env=env
        )
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                t0 = time.perf_counter()
                while not await _serving(health):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                print(f"API serving (read model caught up) in {time.perf_counter() - t0:.1f} s")
                stub = pb_grpc.AdvocatesStub(channel)
                meta = (("authorization", f"Bearer {token}"),)
                n = iter(range(10**9))

                async def get() -> None:
                    adv = f"adv-{next(n) % advocates:06d}"
                    await stub.GetAdvocate(pb.GetAdvocateRequest(advocate_id=adv), metadata=meta)

                async def check() -> None:
                    await health.Check(health_pb2.HealthCheckRequest())

                await open_loop(check, 1.0)  # warm-up
                base = await open_loop(check, seconds)
                base_failed = dict(FAILED)
                FAILED.clear()
                ours = await open_loop(get, seconds)
                ours_failed = dict(FAILED)
                print(_summary(f"baseline  health Check at {RATE}/s", base))
                print(_summary(f"API       GetAdvocate at {RATE}/s (target p99 <= 10 ms)", ours))
                portal, plain = await visibility(settings, stub, token, seconds, watched=50)
                print(_summary(f"baseline  read_committed consumer, statuses at {RATE}/s", plain))
                label = "API       WatchReferrals, same statuses (target p99 <= 1 s)"
                print(_summary(label, portal))
                _record(part, "health Check", base, failed=base_failed)
                _record(
                    part,
                    "GetAdvocate",
                    ours,
                    baseline="health Check",
                    target=10.0,
                    failed=ours_failed,
                )
                _record(part, "read_committed consumer", plain)
                _record(
                    part,
                    "WatchReferrals",
                    portal,
                    baseline="read_committed consumer",
                    target=1000.0,
                )
                print(f"saved {save(part, common.results_dir())}")
        finally:
            server.terminate()
            server.wait(timeout=60)


async def _serving(health: health_pb2_grpc.HealthStub) -> bool:
    try:
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
    except grpc.aio.AioRpcError:
        return False  # not listening yet
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main() -> None:
    smoke = common.scale() == "smoke"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0 if smoke else 10.0)
    parser.add_argument("--advocates", type=int, default=200 if smoke else 2_000)
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    with common.bench_broker(args.bootstrap) as bootstrap:
        asyncio.run(main_async(bootstrap, args.seconds, args.advocates))


if __name__ == "__main__":
    main()
