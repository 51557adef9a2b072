"""The pipeline bench's instruments: a stamping SMTP catcher, a read_committed follower that
stamps when each record became readable, the services as processes that can be restarted one
by one, /proc readings (CPU-seconds, peak RSS) and the py-spy profile summary.

Every stamp is `time.monotonic()`, the system-wide monotonic clock: the producer and the
follower stamp in the bench's own process, the SMTP relay (`bench/mailsink.py`) in its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from referrals.contract.avro import AvroCodec
from referrals.contract.records import Record
from referrals.contract.topics import TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer, partitions_of
from referrals.tools.program_year import SERVICES, ServiceProcesses, _http_ok

CLK_TCK = os.sysconf("SC_CLK_TCK")


class StampingCatcher:
    """The year's SMTP relay (`bench/mailsink.py`, a process of its own), stamping each accepted
    message: `accepted` holds (monotonic time, notification id from its Message-ID, kind from
    X-Referrals-Kind), read from the relay's stdout by a thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted: list[tuple[float, str, str]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def count(self) -> int:
        return len(self.accepted)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> StampingCatcher:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("mailsink.py")), str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline()
        if not first.startswith("ready"):
            self._proc.kill()
            raise RuntimeError(f"the bench's SMTP relay did not start on :{self.port}: {first!r}")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            at, mid, kind = line.split()
            self.accepted.append((float(at), mid, kind))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)


class Stamped(Sequence[tuple[float, Record]]):
    """A topic's records as the follower saw them: (monotonic time returned, record), each
    decoded when first read, not when it arrived. Decoding every status as it came cost the
    bench most of a core while the year drained, a core the services it measures lacked."""

    def __init__(self, codec: AvroCodec) -> None:
        self.codec = codec
        self.times: list[float] = []
        self._records: list[bytes | Record] = []  # the bytes until first read, then the record

    def append(self, at: float, value: bytes) -> None:
        self.times.append(at)
        self._records.append(value)

    def __len__(self) -> int:
        return len(self.times)

    def _one(self, i: int) -> tuple[float, Record]:
        record = self._records[i]
        if isinstance(record, bytes):
            record = self._records[i] = self.codec.decode(record)
        return self.times[i], record

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._one(i) for i in range(*index.indices(len(self)))]
        return self._one(range(len(self))[index])


class Follower:
    """Reads `topics` read_committed from their end at `start` (or their beginning), stamping
    the moment each record was returned: `seen[topic]` holds (monotonic time, record), the
    record decoded when it is first read (`Stamped`)."""

    def __init__(self, kafka: KafkaSettings, topics: Sequence[str], from_start: bool = False):
        self.kafka, self.topics, self.from_start = kafka, topics, from_start
        self.codec = AvroCodec()
        self.seen: dict[str, Stamped] = {t: Stamped(self.codec) for t in topics}
        # Beside each seen record, aligned by index: (wall time it was returned, its producer's
        # timestamp), to split an end-to-end time into its hops.
        self.stamps: dict[str, list[tuple[float, float]]] = {t: [] for t in topics}
        self.stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._ready.wait()

    async def close(self) -> None:
        self.stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        names = TopicNames(self.kafka.topic_prefix)
        consumer = make_consumer(self.kafka, client_id="bench-follower", fetch_max_wait_ms=50)
        await consumer.start()
        try:
            logical = {names(t): t for t in self.topics}
            parts = [tp for t in self.topics for tp in await partitions_of(consumer, names(t))]
            consumer.assign(parts)
            if self.from_start:
                await consumer.seek_to_beginning(*parts)
            else:
                await consumer.seek_to_end(*parts)
                for tp in parts:
                    await consumer.position(tp)
            self._ready.set()
            while not self.stop.is_set():
                batch = await consumer.getmany(timeout_ms=100, max_records=5000)
                at, wall = time.monotonic(), time.time()
                for tp, messages in batch.items():
                    seen = self.seen[logical[tp.topic]]
                    stamps = self.stamps[logical[tp.topic]]
                    for msg in messages:
                        seen.append(at, msg.value)
                        stamps.append((wall, msg.timestamp / 1000))
        finally:
            self._ready.set()
            await consumer.stop()


class Services(ServiceProcesses):
    """`ServiceProcesses` plus restarting one service and its process ids."""

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def restart(self, name: str, within: float = 300.0) -> tuple[float, float]:
        """SIGTERM `name`, wait for it to exit, start it again with the same environment;
        returns seconds from the new process's start to its /readyz answering, and to its
        owning every task (each task's stores restored)."""
        self.stop_one(name)
        return self.start_one(name, within)

    def stop_one(self, name: str) -> None:
        proc = self.procs[name]
        proc.terminate()
        proc.wait(timeout=120)

    def start_one(self, name: str, within: float = 300.0, tasks: int = 6) -> tuple[float, float]:
        """Starts `name` again (after `stop_one`); (seconds to /readyz, seconds to `tasks`
        tasks open, their state restored: referrals_assigned_partitions)."""
        began = time.monotonic()
        self.start_process(name)
        port, ready = self.plan.metrics_ports[name], None
        while time.monotonic() - began < within:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited on restart; see its log")
            if ready is None and _http_ok(port, "/readyz"):
                ready = time.monotonic() - began
            if ready is not None and (name == "api" or self._tasks_open(name) >= tasks):
                return ready, time.monotonic() - began
            time.sleep(0.05)
        raise RuntimeError(f"{name} not ready within {within:.0f} s of its restart")

    def buckets(self, name: str, metric: str, **labels: str) -> dict[float, float]:
        """A histogram's cumulative bucket counts on a service's /metrics (the label sets that
        hold `labels` summed), by upper bound."""
        from referrals.tools.program_year import _http_get

        body = _http_get(self.plan.metrics_ports[name], "/metrics")
        want = [f'{k}="{v}"' for k, v in labels.items()]
        out: dict[float, float] = {}
        for line in body.splitlines():
            if line.startswith(metric + "_bucket{") and all(w in line for w in want):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                bound = float("inf") if le == "+Inf" else float(le)
                out[bound] = out.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    def _tasks_open(self, name: str) -> float:
        try:
            return self.metric(name, "referrals_assigned_partitions")
        except OSError:
            return 0.0

    def topic_in(self, service: str, topic: str) -> float:
        """records_in of one input topic (logical name) on a service's /metrics."""
        from referrals.tools.program_year import _http_get

        body = _http_get(self.plan.metrics_ports[service], "/metrics")
        want = f'referrals_records_in_total{{topic="{topic}"}}'
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if want in line)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children: cutime + cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is state (field 3); utime is field 14 -> index 11.
    return sum(int(f) for f in fields[11:15]) / CLK_TCK


# A JVM's threads by what they do (/proc/<pid>/task/*/comm, 15 characters at most).
JVM_THREADS = (
    ("requests", ("data-plane-kafk", "executor-Fetch", "executor-Produc")),
    ("JIT", ("C1 CompilerThre", "C2 CompilerThre", "Sweeper thread")),
    ("GC", ("GC Thread#", "G1 ", "VM Thread")),
)


def jvm_thread_cpu(pid: int) -> dict[str, float]:
    """CPU-seconds so far of a JVM's threads, grouped as JVM_THREADS says (the rest: other);
    threads that have ended are not counted."""
    out = dict.fromkeys([*(group for group, _ in JVM_THREADS), "other"], 0.0)
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        group = next(
            (g for g, prefixes in JVM_THREADS if comm.startswith(prefixes)),
            "other",
        )
        out[group] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def cpu_shares(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """CPU-seconds used between two readings, as % of one core, by name."""
    return {name: 100 * (after[name] - before.get(name, 0.0)) / seconds for name in after}


def show_shares(shares: dict[str, float]) -> str:
    """`cpu_shares` busiest first, and their total."""
    parts = [f"{name} {pct:.0f}%" for name, pct in sorted(shares.items(), key=lambda kv: -kv[1])]
    return ", ".join(parts) + f" (total {sum(shares.values()):.0f}%)"


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding quantile `q` of what a histogram observed between
    two readings (inf when nothing was observed)."""
    delta = sorted((b, after.get(b, 0.0) - before.get(b, 0.0)) for b in after)
    total = delta[-1][1] if delta else 0.0
    for bound, count in delta:
        if total and count >= q * total:
            return bound
    return float("inf")


def percentiles(values: Iterable[float]) -> tuple[float, float, float]:
    """p50, p90, p99 of `values` (at least one)."""
    data = sorted(values)
    if len(data) == 1:
        return data[0], data[0], data[0]
    q = statistics.quantiles(data, n=100, method="inclusive")
    return q[49], q[89], q[98]


TAIL_WINDOW_S, TAIL_TOP = 0.25, 4  # how `tail_in_windows` cuts a phase, and how many it takes


def tail_in_windows(
    sent: dict[str, float],
    latency_ms: dict[str, float],
    window_s: float = TAIL_WINDOW_S,
    top: int = TAIL_TOP,
) -> tuple[int, float]:
    """Whether the slowest 1% are stalls or a spread: of the WONs at or above the p99, how many
    there are and the share of them sent within the `top` windows of `window_s` holding the
    most of them (`sent`: when each was sent; `latency_ms`: its latency, same keys)."""
    if not latency_ms:
        return 0, 0.0
    p99 = percentiles(latency_ms.values())[2]
    slow = [sent[key] for key, ms in latency_ms.items() if ms >= p99]
    windows = Counter(int(at // window_s) for at in slow)
    return len(slow), sum(n for _, n in windows.most_common(top)) / len(slow)


def profile(pids: dict[str, int], seconds: int, out: Path) -> dict[str, Path]:
    """Starts `py-spy record` (raw collapsed stacks) on each pid; returns the files once done.
    Empty when py-spy is not installed."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return {}
    out.mkdir(parents=True, exist_ok=True)
    procs, files = [], {}
    for name, pid in pids.items():
        path = out / f"{name}.txt"
        cmd = [str(spy), "record", "-d", str(seconds), "-f", "raw", "-o", str(path)]
        cmd += ["--pid", str(pid), "--nonblocking"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        files[name] = path
    for p in procs:
        p.wait()
    return {n: f for n, f in files.items() if f.exists()}


def top_own(raw: Path, n: int = 10) -> tuple[int, list[tuple[str, float]]]:
    """The n functions with the most own (leaf) samples in a py-spy raw file, as % of all."""
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():  # --nonblocking: torn names
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        own[leaf] += int(count)
        total += int(count)
    return total, [(f, 100.0 * c / total) for f, c in own.most_common(n)] if total else []


def top_total(
    raw: Path, n: int = 10, under: str = "referrals/|services/"
) -> list[tuple[str, float]]:
    """The n project functions (path matching `under`) with the most inclusive samples (the
    function anywhere on the stack), as % of all samples."""
    pattern = re.compile(under)
    total_of: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():  # --nonblocking: torn names
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            if pattern.search(frame):
                total_of[frame] += int(count)
    if not total:
        return []
    # Entry points (main, run_service, ...) are on every stack: leave them out.
    ranked = [(f, 100.0 * c / total) for f, c in total_of.most_common() if c < 0.95 * total]
    return ranked[:n]


def wait_until(check: Callable[[], bool], within: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def jit_compiled(pid: int) -> int | None:
    """Methods the JVM `pid` has compiled so far (`jstat -compiler`), None if it cannot tell."""
    try:
        out = subprocess.run(
            ["jstat", "-compiler", str(pid)], capture_output=True, text=True, timeout=30
        ).stdout.splitlines()
        return int(out[1].split()[0])
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None


__all__ = ["SERVICES", "Follower", "Services", "StampingCatcher"]
