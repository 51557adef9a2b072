"""The project's own local Apache Kafka broker: KRaft, one node or a cluster of several, every
node both broker and controller.

Jars come from Maven Central through `deploy/kafka/pom.xml` into `deploy/kafka/lib/` (fetched once;
later starts reuse them). `start` formats the storage on first use, launches the broker in the
background and returns once it accepts clients; `stop` shuts it down cleanly (SIGTERM, then
SIGKILL after a grace period). Transactions work on one node: the transaction state log and the
offsets topic have replication factor 1 and min ISR 1.

With `nodes` > 1 (`referrals broker start --nodes 3`) it is a cluster on one machine, for trying
failover. Node i (0-based) has node id i + 1, client port `port + i`, controller port
`controller_port + i` (`controller_port` defaults to `port + nodes`: 9092-9094 for clients,
9095-9097 for controllers) and its own folder `<data_dir>/node-<i>` (storage, server.properties,
broker.log, broker.pid). All nodes are voters of one controller quorum and share one cluster id
(`<data_dir>/cluster.id`). Internal topics get min(3, nodes) replicas; with three or more nodes
`min.insync.replicas` is 2, so one node of three can be lost with nothing lost and writes going
on. `kill_node` / `stop_node` / `start_node` take one node down and bring it back.
A one-node config keeps the layout it always had (storage directly in `data_dir`).

With `secure` (`referrals broker start --secure`) clients connect over SASL_SSL with SCRAM and
the StandardAuthorizer checks every request (`referrals.tools.broker_secure`); a data folder
holding a secured broker always starts secured.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiokafka.cluster import ClusterMetadata
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from referrals.contract.acls import ADMIN
from referrals.platform.errors import ReferralsError
from referrals.platform.settings import EnvSettings, load
from referrals.streams.kafka import client_options
from referrals.tools import broker_secure

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_DIR = REPO_ROOT / "deploy" / "kafka"
LIB_DIR = KAFKA_DIR / "lib"
STARTED_LINE = "Kafka Server started"
_children: list[subprocess.Popen[bytes]] = []  # keeps started brokers referenced in-process


class BrokerError(ReferralsError):
    reason = "BROKER"


class BrokerConfig(EnvSettings):
    """Where the local broker listens and keeps its data (env prefix REFERRALS_BROKER_).

    With `nodes` > 1 it describes a cluster: `node(cfg, i)` is node i's own view.
    """

    model_config = SettingsConfigDict(env_prefix="REFERRALS_BROKER_")

    host: str = "127.0.0.1"
    port: int = 9092  # node i of a cluster: port + i
    controller_port: int = 0  # 0: port + nodes; node i of a cluster: controller_port + i
    data_dir: Path = REPO_ROOT / ".local" / "kafka"
    heap: str = ""  # per node; "": 512m for one node, 384m each for several
    partitions: int = 6
    nodes: int = Field(default=1, ge=1)
    # SASL_SSL (SCRAM-SHA-512), TLS, ACLs; see referrals.tools.broker_secure.
    secure: bool = False

    @classmethod
    def from_env(cls) -> BrokerConfig:
        return load(cls, "REFERRALS_BROKER")

    @property
    def bootstrap(self) -> str:
        """Every node's host:port, comma-separated (one node: just its own)."""
        return ",".join(f"{self.host}:{self.port + i}" for i in range(self.nodes))

    @property
    def cport(self) -> int:
        """The (first) node's controller port."""
        return self.controller_port or self.port + self.nodes

    @property
    def jvm_heap(self) -> str:
        return self.heap or ("512m" if self.nodes == 1 else "384m")

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


def node(cfg: BrokerConfig, index: int) -> BrokerConfig:
    """Node `index` (0-based) of a cluster as a one-node view: its own client and controller port,
    folder, log and pid file, and `bootstrap` naming it alone. Start and stop it through
    `start_node` / `stop_node` / `kill_node` (its properties are the cluster's)."""
    if not 0 <= index < cfg.nodes:
        raise BrokerError(f"no node {index}: the cluster has nodes 0..{cfg.nodes - 1}")
    if cfg.nodes == 1:
        return cfg.model_copy(update={"controller_port": cfg.cport, "heap": cfg.jvm_heap})
    return cfg.model_copy(
        update={
            "port": cfg.port + index,
            "controller_port": cfg.cport + index,
            "data_dir": cfg.data_dir / f"node-{index}",
            "heap": cfg.jvm_heap,
            "nodes": 1,
        }
    )


def nodes_in(data_dir: Path) -> int:
    """How many nodes the cluster kept in `data_dir` has (node-0, node-1, ...); 1 if none."""
    count = 0
    while (data_dir / f"node-{count}" / "server.properties").exists():
        count += 1
    return count or 1


def server_properties(
    cfg: BrokerConfig, index: int = 0, secure: broker_secure.Material | None = None
) -> str:
    """Node `index`'s server.properties; with `secure`, its SASL_SSL listener, TLS controller
    listener and authorizer (`broker_secure.properties`)."""
    me = node(cfg, index)
    client = broker_secure.PROTOCOL if secure else "PLAINTEXT"
    voters = ",".join(f"{i + 1}@{cfg.host}:{cfg.cport + i}" for i in range(cfg.nodes))
    replicas = str(min(3, cfg.nodes))
    min_isr = "2" if cfg.nodes >= 3 else "1"
    props = {
        "process.roles": "broker,controller",
        "node.id": str(index + 1),
        "controller.quorum.voters": voters,
        "listeners": f"{client}://{me.host}:{me.port},CONTROLLER://{me.host}:{me.cport}",
        "advertised.listeners": f"{client}://{me.host}:{me.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(me.data_dir / "data"),
        "num.partitions": str(cfg.partitions),
        # Internal topics cannot have more replicas than brokers: min(3, nodes), and with three
        # or more a write needs two in sync, so losing one broker of three loses nothing.
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        # Fewer internal partitions: a faster first start, plenty for one machine.
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.num.partitions": "6",
        # No 3 s wait before the first rebalance of a group (tests and restarts are quicker).
        "group.initial.rebalance.delay.ms": "0",
        # Topics are created explicitly (`referrals topics create`); a typo must not make one.
        "auto.create.topics.enable": "false",
        # A process that died mid-transaction holds up the partitions it wrote until the broker
        # aborts the transaction (the services' 10 s transaction timeout); the broker looks for
        # such transactions every 10 s by default, which could double that.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "2000",
    }
    if cfg.nodes > 1:
        props |= {
            # Several JVMs on one small machine: fewer threads each.
            "num.network.threads": "2",
            "num.io.threads": "4",
            # A lost node is fenced (its partitions led elsewhere, it leaves the ISRs) after 6 s
            # rather than 9, and a node restarted at once may register again that much sooner.
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "6000",
        }
    if secure is not None:
        props |= broker_secure.properties(secure)
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java is not on PATH; the broker needs Java 17")
    return java


def _jvm(cfg: BrokerConfig, main: str, *args: str) -> list[str]:
    return [
        _java(),
        f"-Xmx{cfg.jvm_heap}",
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


def _meta(me: BrokerConfig) -> Path:
    return me.data_dir / "data" / "meta.properties"


def _shared_cluster_id(cfg: BrokerConfig) -> str:
    """The one cluster id every node is formatted with: a formatted node's, else the one kept in
    `<data_dir>/cluster.id`, else a new one (kept there). One node: always a new one."""
    if cfg.nodes == 1:
        return _cluster_id()
    for i in range(cfg.nodes):
        try:
            lines = _meta(node(cfg, i)).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
    kept = cfg.data_dir / "cluster.id"
    if kept.exists():
        return kept.read_text().strip()
    cluster = _cluster_id()
    kept.write_text(cluster + "\n")
    return cluster


def _format(cfg: BrokerConfig, indices: list[int], secure: broker_secure.Material | None) -> None:
    """Formats the storage of the nodes that have none yet (in parallel), with one cluster id;
    a secured broker's with its SCRAM users."""
    todo = [i for i in indices if not _meta(node(cfg, i)).exists()]
    if not todo:
        return
    # `--cluster-id=<id>` in one argument: a random id may start with "-" and would otherwise
    # be read as an option (about one start in 64 failed that way).
    cluster = f"--cluster-id={_shared_cluster_id(cfg)}"
    users = broker_secure.scram_arguments(secure) if secure else []
    procs = []
    for i in todo:
        me = node(cfg, i)
        props = me.data_dir / "server.properties"
        cmd = _jvm(me, "kafka.tools.StorageTool", "format", cluster, "-c", str(props), *users)
        procs.append((me, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
    for me, proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise BrokerError(f"formatting {me.data_dir} failed:\n{out.decode(errors='replace')}")


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
    """Starts every node that does not run yet; returns (node 0's) pid once all accept clients
    and, for a cluster, its metadata shows all of its brokers."""
    return _start(cfg, list(range(cfg.nodes)), timeout)[0]


def start_node(cfg: BrokerConfig, index: int, *, timeout: float = 120.0) -> int:
    """(Re)starts node `index` of a cluster unless it runs; returns its pid once it accepts
    clients and is back in the cluster's metadata."""
    return _start(cfg, [index], timeout)[index]


def _start(cfg: BrokerConfig, indices: list[int], timeout: float) -> dict[int, int]:
    pids: dict[int, int] = {}
    todo: list[int] = []
    for i in indices:
        me = node(cfg, i)
        pid = _pid(me)
        if pid is not None and port_open(me.host, me.port):
            pids[i] = pid
            continue
        if pid is None and port_open(me.host, me.port):
            raise BrokerError(f"port {me.port} is taken by another process; choose another port")
        todo.append(i)
    if not todo:
        return pids
    ensure_jars()
    secure = None
    if broker_secure.secured(cfg):
        formatted = any(_meta(node(cfg, i)).exists() for i in range(cfg.nodes))
        secure = broker_secure.ensure(cfg, formatted)
    for i in todo:
        me = node(cfg, i)
        me.data_dir.mkdir(parents=True, exist_ok=True)
        props = me.data_dir / "server.properties"
        props.touch(mode=0o600)  # a secured broker's holds passwords
        props.chmod(0o600)
        props.write_text(server_properties(cfg, i, secure))
    _format(cfg, todo, secure)
    launched = {i: _launch(node(cfg, i)) for i in todo}
    deadline = time.monotonic() + timeout
    try:
        _await_started(launched, deadline, timeout)
        if cfg.nodes > 1:
            _await_brokers(cfg, launched, deadline, timeout)
    except BrokerError:
        _terminate([node(cfg, i) for i in todo], signal.SIGTERM, 10.0)
        raise
    return pids | {i: proc.pid for i, (_, proc, _) in launched.items()}


Launch = tuple[BrokerConfig, "subprocess.Popen[bytes]", int]


def _launch(me: BrokerConfig) -> Launch:
    log = me.log_file.open("ab")
    offset = log.tell()  # only a "started" line written by this launch counts
    proc = subprocess.Popen(
        _jvm(me, "kafka.Kafka", str(me.data_dir / "server.properties")),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the caller's terminal must not kill the broker
    )
    log.close()
    _children.append(proc)
    me.pid_file.write_text(str(proc.pid))
    return me, proc, offset


def _check_alive(launched: dict[int, Launch]) -> None:
    for me, proc, _ in launched.values():
        if proc.poll() is not None:
            raise BrokerError(
                f"the broker exited with status {proc.returncode} while starting; "
                f"its log ({me.log_file}):\n{log_tail(me)}"
            )


def _await_started(launched: dict[int, Launch], deadline: float, timeout: float) -> None:
    """Until every launched node logged that it started (this time) and accepts clients."""
    waiting = dict(launched)
    while waiting:
        if time.monotonic() > deadline:
            me = next(iter(waiting.values()))[0]
            raise BrokerError(
                f"the broker did not accept clients on {me.bootstrap} within {timeout:.0f} s; "
                f"its log ({me.log_file}):\n{log_tail(me)}"
            )
        _check_alive(waiting)
        for i, (me, _, offset) in list(waiting.items()):
            with me.log_file.open("rb") as f:
                f.seek(offset)
                fresh = f.read().decode(errors="replace")
            if STARTED_LINE in fresh and port_open(me.host, me.port):
                del waiting[i]
        if waiting:
            time.sleep(0.2)


def _await_brokers(
    cfg: BrokerConfig, launched: dict[int, Launch], deadline: float, timeout: float
) -> None:
    """Until every node answers and its metadata lists every node as a broker (registered and
    unfenced): asking one node is not enough, another's view may trail it for a moment."""
    wanted = {i + 1 for i in range(cfg.nodes)}
    views: dict[int, set[int]] = {}
    while time.monotonic() < deadline:
        _check_alive(launched)
        views = _views(cfg)
        if len(views) == cfg.nodes and all(wanted <= view for view in views.values()):
            return
        time.sleep(0.3)
    raise BrokerError(
        f"the cluster at {cfg.bootstrap} did not list brokers {sorted(wanted)} on every node "
        f"after {timeout:.0f} s (node id: brokers it lists: "
        f"{ {i + 1: sorted(v) for i, v in views.items()} }); "
        f"see the nodes' logs under {cfg.data_dir}"
    )


def cluster_brokers(cfg: BrokerConfig) -> set[int]:
    """The node ids of the brokers that every node answering now lists in its metadata (empty
    when none answers). A node that is down is listed until the controller fences it."""
    views = list(_views(cfg).values())
    return set.intersection(*views) if views else set()


def _views(cfg: BrokerConfig) -> dict[int, set[int]]:
    """Node index -> the broker ids its metadata lists, for each node that answers."""

    options = {}
    if broker_secure.secured(cfg):
        opts = client_options(broker_secure.client_settings(cfg, ADMIN))
        options = {k: opts[k] for k in _CONN_OPTIONS}

    async def ask_all() -> list[set[int] | None]:
        me = [node(cfg, i) for i in range(cfg.nodes)]
        return await asyncio.gather(*(_brokers_seen_by(n.host, n.port, options) for n in me))

    # In a thread of its own: callers may be inside an event loop (an async test) or not.
    with ThreadPoolExecutor(1) as pool:
        answers = pool.submit(asyncio.run, ask_all()).result()
    return {i: seen for i, seen in enumerate(answers) if seen is not None}


_CONN_OPTIONS = (
    "security_protocol",
    "ssl_context",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
)


async def _brokers_seen_by(host: str, port: int, options: dict[str, Any]) -> set[int] | None:
    """The broker ids in this node's own metadata (not another node's); None if it does not
    answer. `options`: how to connect to a secured one (as admin)."""
    conn = AIOKafkaConnection(
        host, port, client_id="referrals-broker", request_timeout_ms=5000, **options
    )
    try:
        await conn.connect()
        response = await conn.send(MetadataRequest([]))
    except (TimeoutError, OSError, KafkaError):
        return None
    finally:
        await _closed(conn)
    metadata = ClusterMetadata()
    metadata.update_metadata(response)
    return {int(b.nodeId) for b in metadata.brokers()}


async def _closed(conn: AIOKafkaConnection) -> None:
    """Closes `conn` and waits until its socket is: this loop ends with the call (a thread's
    asyncio.run), and a TLS transport closes only after its close_notify exchange; left to the
    garbage collector, the socket would be reported unclosed."""
    closing = conn.close()
    if closing is not None and conn._protocol is not None:  # a connection was made
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(closing), 5.0)


def stop(cfg: BrokerConfig, *, timeout: float = 30.0) -> bool:
    """Stops every node cleanly (all at once); returns False when none was running."""
    return _terminate([node(cfg, i) for i in range(cfg.nodes)], signal.SIGTERM, timeout)


def stop_node(cfg: BrokerConfig, index: int, *, timeout: float = 30.0) -> bool:
    """Stops node `index` cleanly (SIGTERM); returns False when it was not running."""
    return _terminate([node(cfg, index)], signal.SIGTERM, timeout)


def kill_node(cfg: BrokerConfig, index: int) -> bool:
    """Kills node `index` at once (SIGKILL), as a crash would; returns False when it was not
    running. Returns once the process is gone."""
    return _terminate([node(cfg, index)], signal.SIGKILL, 10.0)


def _terminate(views: list[BrokerConfig], sig: signal.Signals, timeout: float) -> bool:
    """Sends `sig` to each node that runs, waits up to `timeout` for all of them to exit, then
    SIGKILLs those left. Removes their pid files."""
    running: list[int] = []
    for me in views:
        pid = _pid(me)
        if pid is not None:
            os.kill(pid, sig)
            running.append(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in running):
        time.sleep(0.1)
    for pid in running:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
    for me in views:
        me.pid_file.unlink(missing_ok=True)
    return bool(running)


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


def _node_status(me: BrokerConfig) -> dict[str, object]:
    pid = _pid(me)
    return {
        "running": pid is not None and port_open(me.host, me.port),
        "pid": pid,
        "bootstrap": me.bootstrap,
        "data_dir": str(me.data_dir),
        "log": str(me.log_file),
    }


def _security(cfg: BrokerConfig) -> dict[str, object]:
    if not broker_secure.secured(cfg):
        return {"secure": False}
    mat = broker_secure.material(cfg)
    return {"secure": True, "credentials": str(mat.folder)}


def status(cfg: BrokerConfig) -> dict[str, object]:
    """One node: its state. A cluster: `running` when every node runs, node 0's pid and log,
    all nodes' bootstrap, and each node's state under `nodes` (with its `node_id`)."""
    if cfg.nodes == 1:
        return _node_status(cfg) | _security(cfg)
    nodes = [{"node_id": i + 1, **_node_status(node(cfg, i))} for i in range(cfg.nodes)]
    return {
        "running": all(n["running"] for n in nodes),
        "running_nodes": sum(1 for n in nodes if n["running"]),
        "pid": nodes[0]["pid"],
        "bootstrap": cfg.bootstrap,
        "data_dir": str(cfg.data_dir),
        "log": nodes[0]["log"],
        "nodes": nodes,
    } | _security(cfg)
