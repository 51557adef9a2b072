"""The project's own local Apache Kafka broker: single node, KRaft (broker + controller).

Jars come from Maven Central through `deploy/kafka/pom.xml` into `deploy/kafka/lib/` (fetched once;
later starts reuse them). `start` formats the storage on first use, launches the broker in the
background and returns once it accepts clients; `stop` shuts it down cleanly (SIGTERM, then
SIGKILL after a grace period). Transactions work on one node: the transaction state log and the
offsets topic have replication factor 1 and min ISR 1.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from pydantic_settings import SettingsConfigDict

from referrals.platform.errors import ReferralsError
from referrals.platform.settings import EnvSettings, load

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_DIR = REPO_ROOT / "deploy" / "kafka"
LIB_DIR = KAFKA_DIR / "lib"
STARTED_LINE = "Kafka Server started"
_children: list[subprocess.Popen[bytes]] = []  # keeps started brokers referenced in-process


class BrokerError(ReferralsError):
    reason = "BROKER"


class BrokerConfig(EnvSettings):
    """Where the local broker listens and keeps its data (env prefix REFERRALS_BROKER_)."""

    model_config = SettingsConfigDict(env_prefix="REFERRALS_BROKER_")

    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 0  # 0: port + 1
    data_dir: Path = REPO_ROOT / ".local" / "kafka"
    heap: str = "512m"
    partitions: int = 6

    @classmethod
    def from_env(cls) -> BrokerConfig:
        return load(cls, "REFERRALS_BROKER")

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def cport(self) -> int:
        return self.controller_port or self.port + 1

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"


def ensure_jars(*, force: bool = False) -> Path:
    """Fetches the broker jars with Maven unless already present for the current pom.xml."""
    stamp = LIB_DIR / ".fetched"
    pom = KAFKA_DIR / "pom.xml"
    if not force and stamp.exists() and stamp.stat().st_mtime >= pom.stat().st_mtime:
        return LIB_DIR
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not on PATH; it is needed once to fetch the Kafka jars")
    proc = subprocess.run(
        [mvn, "-B", "-q", "-f", str(pom), "package"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BrokerError(
            f"fetching Kafka jars failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    stamp.touch()
    return LIB_DIR


def server_properties(cfg: BrokerConfig) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{cfg.host}:{cfg.cport}",
        "listeners": f"PLAINTEXT://{cfg.host}:{cfg.port},CONTROLLER://{cfg.host}:{cfg.cport}",
        "advertised.listeners": f"PLAINTEXT://{cfg.host}:{cfg.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(cfg.data_dir / "data"),
        "num.partitions": str(cfg.partitions),
        # One node: internal topics cannot have more replicas than brokers.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        # Fewer internal partitions: a faster first start, plenty for one machine.
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.num.partitions": "6",
        # No 3 s wait before the first rebalance of a group (tests and restarts are quicker).
        "group.initial.rebalance.delay.ms": "0",
        # Topics are created explicitly (`referrals topics create`); a typo must not make one.
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java is not on PATH; the broker needs Java 17")
    return java


def _jvm(cfg: BrokerConfig, main: str, *args: str) -> list[str]:
    return [
        _java(),
        f"-Xmx{cfg.heap}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{KAFKA_DIR / 'log4j.properties'}",
        "-cp",
        str(LIB_DIR / "*"),
        main,
        *args,
    ]


def _cluster_id() -> str:
    # Kafka's Uuid.toString(): URL-safe base64 of 16 random bytes, unpadded.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _format(cfg: BrokerConfig, props: Path) -> None:
    if (cfg.data_dir / "data" / "meta.properties").exists():
        return
    # `--cluster-id=<id>` in one argument: a random id may start with "-" and would otherwise
    # be read as an option (about one start in 64 failed that way).
    cluster = f"--cluster-id={_cluster_id()}"
    cmd = _jvm(cfg, "kafka.tools.StorageTool", "format", cluster, "-c", str(props))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BrokerError(f"formatting {cfg.data_dir} failed:\n{proc.stdout}{proc.stderr}")


def _pid(cfg: BrokerConfig) -> int | None:
    try:
        pid = int(cfg.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"kafka.Kafka" in cmdline else None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(cfg: BrokerConfig, lines: int = 60) -> str:
    try:
        return "\n".join(cfg.log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no broker log at {cfg.log_file})"


def start(cfg: BrokerConfig, *, timeout: float = 120.0) -> int:
    """Starts the broker unless it already runs; returns its pid once it accepts clients."""
    pid = _pid(cfg)
    if pid is not None and port_open(cfg.host, cfg.port):
        return pid
    if pid is None and port_open(cfg.host, cfg.port):
        raise BrokerError(f"port {cfg.port} is taken by another process; choose another port")
    ensure_jars()
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    props = cfg.data_dir / "server.properties"
    props.write_text(server_properties(cfg))
    _format(cfg, props)
    log = cfg.log_file.open("ab")
    offset = log.tell()  # only a "started" line written by this launch counts
    proc = subprocess.Popen(
        _jvm(cfg, "kafka.Kafka", str(props)),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the caller's terminal must not kill the broker
    )
    log.close()
    _children.append(proc)
    cfg.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(
                f"the broker exited with status {proc.returncode} while starting; "
                f"its log ({cfg.log_file}):\n{log_tail(cfg)}"
            )
        with cfg.log_file.open("rb") as f:
            f.seek(offset)
            fresh = f.read().decode(errors="replace")
        if STARTED_LINE in fresh and port_open(cfg.host, cfg.port):
            return proc.pid
        time.sleep(0.2)
    stop(cfg)
    raise BrokerError(
        f"the broker did not accept clients on {cfg.bootstrap} within {timeout:.0f} s; "
        f"its log ({cfg.log_file}):\n{log_tail(cfg)}"
    )


def stop(cfg: BrokerConfig, *, timeout: float = 30.0) -> bool:
    """Stops the broker cleanly; returns False when none was running."""
    pid = _pid(cfg)
    if pid is None:
        cfg.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
    cfg.pid_file.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    for child in _children:
        if child.pid == pid:
            return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    # A zombie (state Z) has exited; its parent simply has not reaped it yet.
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def status(cfg: BrokerConfig) -> dict[str, object]:
    pid = _pid(cfg)
    return {
        "running": pid is not None and port_open(cfg.host, cfg.port),
        "pid": pid,
        "bootstrap": cfg.bootstrap,
        "data_dir": str(cfg.data_dir),
        "log": str(cfg.log_file),
    }
