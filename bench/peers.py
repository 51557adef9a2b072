"""The peers: one minimal stateful step on our runtime, faust-streaming and Quix Streams.

The step: N WON records prefilled in one input topic (6 partitions, keyed by advocate, 10 WONs
per advocate, interleaved); count each advocate's WONs in a state store and emit a payout record
each time a tier is reached (every 3rd WON), exactly once where the peer supports it. Each runs
as its own process, as it is meant to be used:
- ours: `referrals.streams.runtime.StreamRuntime` with a small Processor and a task store
  (bench/peer_ours.py); Avro records through the contract's codec (ReferralStatusChanged in,
  PayoutCommand out), exactly once;
- faust-streaming: a faust worker, an agent and a Table, processing_guarantee="exactly_once"
  (bench/peer_faust.py); JSON values, faust's default;
- quix-streams: an Application with processing_guarantee="exactly-once" and a stateful apply
  (bench/peer_quix.py), in its own virtualenv (.venv/peers/quix: its pins conflict with ours);
  JSON values, its default.
Each is measured as input records/s from the moment it processed its first record (start-up,
group join and state restore excluded, for all three alike) to the moment its last expected
output was readable by a read_committed consumer here. The outputs are then read 2 s longer
(0.5 s at smoke scale) and checked: every (advocate, tier) exactly once; a peer that loses or
doubles outputs is reported as such, with its rate.

    .venv/bin/python bench/peers.py [--records N] [--only ours,faust-streaming] [--bootstrap H:P]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import common
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from figures import Part, save

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    Channel,
    MatchedBy,
    PayoutCommand,
    ReferralStatus,
    ReferralStatusChanged,
)
from referrals.contract.topics import PAYOUTS_V2, STATUS, TopicNames, dlq_of
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_admin, make_consumer, make_producer

PARTITIONS = 6
EVERY = 3
PER_ADVOCATE = 10
BENCH = Path(__file__).resolve().parent
QUIX_PYTHON = Path(sys.prefix) / "peers" / "quix" / "bin" / "python"
START_S = float(os.environ.get("BENCH_PEER_START_S", "300"))
LINGER_S = 0.5 if common.scale() == "smoke" else 2.0
STALL_S = float(os.environ.get("BENCH_PEER_STALL_S", "120"))


@dataclass
class Peer:
    name: str
    command: list[str]
    avro: bool  # Avro through our codec (ours) or JSON (the peers' default)
    guarantee: str
    env: dict[str, str] = field(default_factory=dict)
    # Its best other guarantee, run when exactly once does not finish: (env, how to say it).
    fallback: tuple[dict[str, str], str] | None = None


def peers() -> list[Peer]:
    return [
        Peer("ours", [sys.executable, str(BENCH / "peer_ours.py")], True, "exactly once"),
        Peer(
            "faust-streaming",
            [sys.executable, str(BENCH / "peer_faust.py"), "worker", "-l", "warn"],
            False,
            'exactly once (processing_guarantee="exactly_once")',
            fallback=({"GUARANTEE": "at_least_once"}, 'processing_guarantee="at_least_once"'),
        ),
        Peer(
            "quix-streams",
            [str(QUIX_PYTHON), str(BENCH / "peer_quix.py")],
            False,
            'exactly once (processing_guarantee="exactly-once")',
        ),
    ]


def expected(n: int) -> set[tuple[str, int]]:
    wins = Counter(advocate(i, n) for i in range(n))
    return {(adv, t) for adv, c in wins.items() for t in range(1, c // EVERY + 1)}


def advocate(i: int, n: int) -> str:
    return f"adv-{i % max(1, n // PER_ADVOCATE):05d}"


async def prepare(settings: KafkaSettings, peer: Peer, n: int) -> tuple[str, str]:
    """Creates the peer's topics and fills its input; returns (input topic, output topic)."""
    names = TopicNames(settings.topic_prefix)
    admin = make_admin(settings)
    await admin.start()
    try:
        if peer.avro:  # the contract's topics the step uses, and the input's dead letters
            source, sink = names(STATUS), names(PAYOUTS_V2)
            topics = [source, sink, names(dlq_of(STATUS))]
            await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
        else:
            source, sink = names("wins.in"), names("payouts.out")
            await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (source, sink)])
    finally:
        await admin.close()
    codec = AvroCodec()
    when = datetime(2026, 5, 1, tzinfo=UTC)
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    try:
        for i in range(n):
            adv = advocate(i, n)
            if peer.avro:
                value = codec.encode(
                    ReferralStatusChanged(
                        status_id=f"st-{i}",
                        referral_id=f"r-{i}",
                        program_id="bench",
                        advocate_id=adv,
                        prospect_id=f"p-{i}",
                        channel=Channel.EMAIL,
                        matched_by=MatchedBy.CODE,
                        status=ReferralStatus.WON,
                        config_version=1,
                        occurred_at=when,
                    )
                )
            else:
                doc = {
                    "referral": f"r-{i}",
                    "advocate": adv,
                    "status": "WON",
                    "at": when.isoformat(),
                }
                value = json.dumps(doc).encode()
            await producer.send(source, value, key=adv.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return source, sink


def pair(peer: Peer, codec: AvroCodec, value: bytes) -> tuple[str, int]:
    if peer.avro:
        payout = codec.decode(value, "PayoutCommand")
        assert isinstance(payout, PayoutCommand)
        return payout.advocate_id, payout.tier
    doc = json.loads(value)
    return str(doc["advocate"]), int(doc["tier"])


@dataclass
class Outcome:
    rate: float = 0.0
    outputs: int = 0
    distinct: int = 0
    missing: int = 0
    doubled: int = 0
    error: str = ""
    fallback: str = ""  # why another guarantee than exactly once was measured


async def measure(bootstrap: str, peer: Peer, n: int, tmp: Path) -> Outcome:
    prefix = f"peer{uuid.uuid4().hex[:6]}."
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    source, sink = await prepare(settings, peer, n)
    want = expected(n)
    env = {
        **os.environ,
        "BOOTSTRAP": bootstrap,
        "PREFIX": prefix,
        "APP_ID": f"{prefix}app",
        "IN_TOPIC": source,
        "OUT_TOPIC": sink,
        "EVERY": str(EVERY),
        "PARTITIONS": str(PARTITIONS),
        "STATE_DIR": str(tmp / peer.name),
        "PYTHONUNBUFFERED": "1",
        "FIRST_FILE": str(tmp / f"{peer.name}.first"),
        **peer.env,
    }
    first_file = tmp / f"{peer.name}.first"
    log = (tmp / f"{peer.name}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *peer.command, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=tmp
    )
    consumer = make_consumer(settings)  # read_committed
    await consumer.start()
    codec = AvroCodec()
    seen: Counter[tuple[str, int]] = Counter()
    done_at: float | None = None
    out = Outcome()
    try:
        parts = [TopicPartition(sink, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        progress = launched = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.monotonic()
            for msgs in batch.values():
                for msg in msgs:
                    seen[pair(peer, codec, msg.value)] += 1
                progress = now
            if done_at is None and want <= set(seen):
                done_at = now
            if done_at is not None and now - done_at >= LINGER_S:
                break  # a little longer for doubles
            if proc.returncode is not None:
                out.error = f"exited with {proc.returncode} (log: {tmp / peer.name}.log)"
                break
            if not first_file.exists():
                progress = now  # still starting (group join, state restore)
                if now - launched > START_S:
                    out.error = f"processed no record within {START_S:.0f} s of its start"
                    break
            elif now - progress > STALL_S:
                out.error = f"no new output for {STALL_S:.0f} s"
                break
    finally:
        await consumer.stop()
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()
    out.outputs = sum(seen.values())
    out.distinct = len(set(seen) & want)
    out.missing = len(want - set(seen))
    out.doubled = out.outputs - len(seen) + len(set(seen) - want)
    if done_at is not None and first_file.exists():
        out.rate = n / max(done_at - float(first_file.read_text()), 1e-9)
    elif not out.error:
        out.error = "never processed a record"
    if out.error:
        lines = (tmp / f"{peer.name}.log").read_text(errors="replace").strip().splitlines()
        tail = list(dict.fromkeys(line.split("] ")[-1].strip() for line in lines[-20:]))[-3:]
        out.error += ": " + " | ".join(tail)
    return out


def workdir(tmp: str, name: str) -> Path:
    path = Path(tmp) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # aiokafka's retries while leaders move are noise
    smoke = common.scale() == "smoke"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300 if smoke else 30_000)
    parser.add_argument("--only", help="comma-separated peer names (default: all)")
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    chosen = [p for p in peers() if not args.only or p.name in args.only.split(",")]
    part = Part("peers")
    n = args.records
    results: dict[str, Outcome] = {}
    with common.bench_broker(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory() as tmp:
        for peer in chosen:
            if peer.name == "quix-streams" and not QUIX_PYTHON.exists():
                results[peer.name] = Outcome(error=f"not installed ({QUIX_PYTHON}; make bench)")
                continue
            got = asyncio.run(measure(bootstrap, peer, n, workdir(tmp, "eos")))
            if got.error and peer.fallback:
                env, how = peer.fallback
                print(f"{peer.name}: exactly once did not finish ({got.error[:200]}); {how}")
                failed_eos = got.error
                retry = Peer(peer.name, peer.command, peer.avro, how, env)
                got = asyncio.run(measure(bootstrap, retry, n, workdir(tmp, "fallback")))
                got.fallback = f"{how}: exactly once did not finish here ({failed_eos})"
            results[peer.name] = got
    want = len(expected(n))
    ran = {  # the peers that ran right: the best of them is ours' baseline
        k: v
        for k, v in results.items()
        if k != "ours" and v.rate > 0 and not (v.error or v.missing or v.doubled)
    }
    best = max(ran, key=lambda k: ran[k].rate) if ran else None
    for peer in chosen:
        got = results[peer.name]
        fmt = "Avro via the contract's codec" if peer.avro else "JSON"
        note = (
            f"{n:,} WONs, {n // PER_ADVOCATE:,} advocates, a payout every {EVERY}rd WON "
            f"({want:,} expected); {fmt}; {peer.guarantee}"
        )
        if got.fallback:
            note = note.replace(peer.guarantee, f"MEASURED AT {got.fallback}")
        if got.error:
            note += f"; DID NOT FINISH: {got.error}"
        if got.missing or got.doubled:
            note += f"; OUTPUTS WRONG: {got.missing:,} lost, {got.doubled:,} doubled"
        elif not got.error:
            note += "; every output exactly once"
        detail = {
            "inputs": n,
            "expected": want,
            "outputs": got.outputs,
            "lost": got.missing,
            "doubled": got.doubled,
            "ok": not (got.error or got.missing or got.doubled),
            "error": got.error,
            "fallback": got.fallback,
        }
        baseline = best if peer.name == "ours" else None
        part.add(peer.name, got.rate, "records/s", baseline=baseline, note=note, detail=detail)
    print(f"saved {save(part, common.results_dir())}")


if __name__ == "__main__":
    main()
