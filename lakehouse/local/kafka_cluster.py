"""A local Apache Kafka cluster of three KRaft nodes (each a combined broker and controller), no Docker.

Usage: python -m lakehouse.local.kafka_cluster start|stop|status [--config PATH]
(make kafka-cluster-start, make kafka-cluster-stop, make kafka-cluster-status.)

The nodes run from the same jars as the single local broker (kraft.py fetches them once with Maven)
and form a static controller quorum (``controller.quorum.voters``) under one cluster id. Node N
(``[cluster] kafka_nodes``, 3 by default) listens for clients on 127.0.0.1 at ``[cluster] kafka_base_port``
+ 2(N-1) and for the quorum on the next port: 9192/9193, 9194/9195, 9196/9197 by default. ``start`` and
``status`` print the bootstrap string the clients need, with ``[kafka] replication_factor = 3``:

    [kafka] bootstrap_servers = 127.0.0.1:9192,127.0.0.1:9194,127.0.0.1:9196

Durability: internal and new topics get three replicas, ``min.insync.replicas = 2`` and no unclean leader
election, so an acknowledged record (acks=all, as the producer sends) is on two nodes at least, and one node
may go without stopping writes or losing what was acknowledged; with two gone, writes stop (reads go on).
Each node has its storage, pid file and properties under <data_dir>/kafka-cluster/node-N and its log at
<data_dir>/logs/cluster/kafka-N.log; it runs in a session of its own (Ctrl-C in the terminal that started
it does not stop it). ``start`` and ``stop`` are idempotent; ``start`` refuses a taken port in one line,
and a node that does not start is named with the end of its log while what that call started is stopped.

PLAINTEXT only, on 127.0.0.1: the SASL_SSL set-up of kafka_broker.py is not carried over to the cluster.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from lakehouse.local.daemon import EXIT_NOT_RUNNING, Daemon, Exited, NotReady, command_line, state, wait_until_ready
from lakehouse.local.kraft import (
    LOG4J2_PROPERTIES,
    BrokerError,
    KraftNode,
    fetch_jars,
    format_storage,
    kafka_opts,
    launch,
    listener_lines,
    new_cluster_id,
    node_properties,
)
from lakehouse.platform.config import Config
from lakehouse.platform.kafka_probe import port_open, quiet_kafka_client
from lakehouse.platform.paths import Paths

log = logging.getLogger("lakehouse.local.kafka_cluster")

HOST = "127.0.0.1"
# Three replicas of every topic, internal ones included; a write needs two of them (acks=all), and a replica
# that fell behind never becomes leader (it could lack acknowledged records).
DURABILITY = [
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "offsets.topic.replication.factor=3",
    "transaction.state.log.replication.factor=3",
    "transaction.state.log.min.isr=2",
    "share.coordinator.state.topic.replication.factor=3",
    "share.coordinator.state.topic.min.isr=2",
    "unclean.leader.election.enable=false",
]


class ClusterError(RuntimeError):
    """The Kafka cluster could not be started as asked; the message says why (with a node's log's last lines)."""


@dataclass(frozen=True)
class KafkaClusterSettings:
    version: str
    nodes: int
    base_port: int
    heap: str
    start_timeout_s: float
    libs_dir: Path
    state_dir: Path  # one folder per node: storage, properties, pid file
    logs_dir: Path

    @classmethod
    def from_config(cls, cfg: Config) -> "KafkaClusterSettings":
        paths = Paths.from_config(cfg)
        c = cfg.cluster
        return cls(version=cfg.kafka.broker_version, nodes=c.kafka_nodes, base_port=c.kafka_base_port,
                   heap=c.kafka_node_heap, start_timeout_s=c.start_timeout.seconds,
                   libs_dir=paths.kafka_libs(cfg.kafka.broker_version),
                   state_dir=paths.data_dir / "kafka-cluster", logs_dir=paths.logs_dir / "cluster")

    def node_ids(self) -> list[int]:
        return list(range(1, self.nodes + 1))

    def port(self, node_id: int) -> int:
        return self.base_port + 2 * (node_id - 1)

    def controller_port(self, node_id: int) -> int:
        return self.port(node_id) + 1

    @property
    def bootstrap(self) -> str:
        """What clients put in ``[kafka] bootstrap_servers``: every node, so that any one may be down."""
        return ",".join(f"{HOST}:{self.port(n)}" for n in self.node_ids())

    @property
    def voters(self) -> str:
        return ",".join(f"{n}@{HOST}:{self.controller_port(n)}" for n in self.node_ids())

    @property
    def cluster_id_file(self) -> Path:
        return self.state_dir / "cluster.id"

    def node(self, node_id: int) -> KraftNode:
        """Node ``node_id``: its files, ports, heap, log."""
        return KraftNode(version=self.version, host=HOST, port=self.port(node_id),
                         controller_port=self.controller_port(node_id), heap=self.heap,
                         start_timeout_s=self.start_timeout_s, libs_dir=self.libs_dir,
                         data_dir=self.state_dir / f"node-{node_id}", log_file=self.logs_dir / f"kafka-{node_id}.log")

    def daemon(self, node_id: int) -> Daemon:
        """Node ``node_id``'s process: a Kafka broker whose command line names the node's own properties file
        (not a reused pid, nor another broker)."""
        node = self.node(node_id)
        return node.as_daemon(node_name(node_id), str(node.properties_file))


def node_name(node_id: int) -> str:
    return f"kafka-{node_id}"


def server_properties(settings: KafkaClusterSettings, node_id: int) -> str:
    """Node ``node_id``: PLAINTEXT listeners on 127.0.0.1, the static quorum of every node, three replicas."""
    node = settings.node(node_id)
    return node_properties(node, node_id, listener_lines(node, settings.voters), DURABILITY)


# --- storage and processes -------------------------------------------------------------------------

def cluster_id(settings: KafkaClusterSettings) -> str:
    """The id every node's storage is formatted with: made once, then read back (a node whose storage is
    gone is formatted again into the same cluster)."""
    try:
        return settings.cluster_id_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        new = new_cluster_id()
        settings.cluster_id_file.write_text(new, encoding="utf-8")
        return new


def prepare_node(settings: KafkaClusterSettings, node_id: int, cluster: str) -> None:
    """Write the node's configuration files; format its storage the first time."""
    node = settings.node(node_id)
    node.data_dir.mkdir(parents=True, exist_ok=True)
    node.properties_file.write_text(server_properties(settings, node_id), encoding="utf-8")
    node.log4j_file.write_text(LOG4J2_PROPERTIES, encoding="utf-8")
    if (node.log_dirs / "meta.properties").exists():
        return
    try:
        format_storage(node, node.properties_file, [], cluster_id=cluster)
    except BrokerError as e:
        raise ClusterError(f"{node_name(node_id)}: {e}") from e
    log.info("Formatted KRaft storage of %s in %s (cluster %s)", node_name(node_id), node.log_dirs, cluster)


def running_pid(settings: KafkaClusterSettings, node_id: int) -> int | None:
    """The pid of node ``node_id`` if it is alive (a stale pid file is removed)."""
    return settings.daemon(node_id).running_pid()


def status(settings: KafkaClusterSettings) -> dict[str, int | None]:
    """Each node's pid, or None when it does not run."""
    return {node_name(n): running_pid(settings, n) for n in settings.node_ids()}


def registered_brokers(bootstrap: str, timeout_s: float = 3.0) -> set[int]:
    """The ids of the brokers the cluster's metadata lists as alive (registered and unfenced); empty when
    no node answers."""
    try:
        with quiet_kafka_client():
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                     bootstrap_timeout_ms=int(timeout_s * 1000), client_id="lakehouse-cluster")
    except (KafkaError, OSError):
        return set()
    try:
        with quiet_kafka_client():
            # kafka-python asks for fenced brokers too (a node that registered but is not serving yet).
            return {int(b["broker_id"]) for b in admin.describe_cluster()["brokers"] if not b.get("is_fenced")}
    except (KafkaError, OSError):
        return set()
    finally:
        admin.close()


def _wait_ready(settings: KafkaClusterSettings, started: dict[int, subprocess.Popen]) -> None:
    """Until every node is a live broker of the cluster; ``ClusterError`` naming the node if one of those this
    call started exits, or if time runs out."""
    expected = set(settings.node_ids())
    live: set[int] = set()

    def every_node_live() -> bool:
        nonlocal live
        listening = {n for n in expected if port_open(HOST, settings.port(n))}
        live = registered_brokers(settings.bootstrap) if listening == expected else set()
        return live >= expected

    try:
        wait_until_ready(every_node_live, started.values(), settings.start_timeout_s)
    except Exited as e:
        n = next(n for n, proc in started.items() if proc is e.proc)
        daemon = settings.daemon(n)
        daemon.forget()
        raise ClusterError(f"{node_name(n)} exited with code {e.returncode} while starting; last lines "
                           f"of {daemon.log_file}:\n{daemon.log_tail(25)}") from None
    except NotReady:
        late = min((expected - live) or expected)
        daemon = settings.daemon(late)
        raise ClusterError(f"{node_name(late)} did not join the cluster as a live broker within "
                           f"{settings.start_timeout_s:g} s; last lines of {daemon.log_file}:\n"
                           f"{daemon.log_tail(25)}") from None


def _terminate(settings: KafkaClusterSettings, node_id: int, pid: int, timeout_s: float) -> bool:
    """SIGTERM (the node's controlled shutdown), then SIGKILL if it is still there; True if it was clean."""
    daemon = settings.daemon(node_id)
    clean = daemon.terminate(pid, timeout_s)
    daemon.forget()
    return clean


def _terminate_all(settings: KafkaClusterSettings, pids: dict[int, int], timeout_s: float) -> dict[int, bool]:
    """Stop these nodes at once: a node stopped after the others would wait for a controller quorum that has
    gone with them."""
    if not pids:
        return {}
    with ThreadPoolExecutor(max_workers=len(pids)) as pool:
        futures = {n: pool.submit(_terminate, settings, n, pid, timeout_s) for n, pid in pids.items()}
        return {n: f.result() for n, f in futures.items()}


def start(settings: KafkaClusterSettings) -> str:
    """Start the nodes that do not run (a running one is left alone) and wait until every node is a live
    broker; returns the bootstrap string. Idempotent."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    missing = [n for n in settings.node_ids() if running_pid(settings, n) is None]
    if not missing:
        log.info("Kafka cluster already running (%d nodes) on %s", settings.nodes, settings.bootstrap)
        return settings.bootstrap
    for n in missing:
        for port in (settings.port(n), settings.controller_port(n)):
            if port_open(HOST, port):
                raise ClusterError(f"Port {port} on {HOST} is already in use by another process; stop it or change "
                                   "[cluster] kafka_base_port")
    try:
        fetch_jars(settings.node(1))
        kafka_opts()
    except BrokerError as e:
        raise ClusterError(str(e)) from e
    cluster = cluster_id(settings)
    for n in missing:
        prepare_node(settings, n, cluster)
    started: dict[int, subprocess.Popen] = {}
    try:
        for n in missing:
            started[n] = launch(settings.node(n), settings.daemon(n), banner=node_name(n))
            log.info("%s starting (pid %d) on %s:%d, controller %d; log: %s", node_name(n), started[n].pid, HOST,
                     settings.port(n), settings.controller_port(n), settings.node(n).log_file)
        _wait_ready(settings, started)
    except BaseException:
        # What this call started goes (Ctrl-C included); nodes that ran before stay.
        _terminate_all(settings, {n: p.pid for n, p in started.items() if p.poll() is None}, 10.0)
        for n in started:
            settings.daemon(n).forget()
        raise
    log.info("Kafka cluster of %d nodes ready on %s (%d started now)", settings.nodes, settings.bootstrap,
             len(started))
    return settings.bootstrap


def stop(settings: KafkaClusterSettings, timeout_s: float = 60.0) -> bool:
    """Stop every running node (all at once); False if none was running. Idempotent."""
    pids = {n: pid for n in settings.node_ids() if (pid := running_pid(settings, n)) is not None}
    if not pids:
        log.info("The Kafka cluster is not running")
        return False
    log.info("Stopping %s", ", ".join(f"{node_name(n)} (pid {pid})" for n, pid in pids.items()))
    for n, clean in _terminate_all(settings, pids, timeout_s).items():
        if not clean:
            log.warning("%s did not stop within %g s and was killed", node_name(n), timeout_s)
    return True


def main(argv: list[str] | None = None) -> int:
    return command_line("A local Kafka cluster of three KRaft nodes (PLAINTEXT, 127.0.0.1).", run_command, argv,
                        action_help="start the nodes that do not run, stop them all, or say which run")


def run_command(action: str, cfg: Config) -> int:
    """Carry out ``start``, ``stop`` or ``status``; returns the exit code."""
    settings = KafkaClusterSettings.from_config(cfg)
    clients = f"set [kafka] bootstrap_servers = {settings.bootstrap} and [kafka] replication_factor = 3"
    if action == "start":
        if cfg.kafka.security_protocol != "PLAINTEXT":
            log.error("The local Kafka cluster is PLAINTEXT only; [kafka] security_protocol = %s is for the single "
                      "local broker (python -m lakehouse.local.kafka_broker)", cfg.kafka.security_protocol)
            return 1
        try:
            start(settings)
        except ClusterError as e:
            log.error("%s", e)
            return 1
        print(f"Kafka cluster: {settings.bootstrap} ({clients})")
        return 0
    if action == "stop":
        stop(settings)
        return 0
    pids = status(settings)
    for n, (name, pid) in zip(settings.node_ids(), pids.items()):
        print(f"{name}: {state(pid)} on {HOST}:{settings.port(n)}, log {settings.node(n).log_file}")
    print(f"bootstrap: {settings.bootstrap}" + (f" ({clients})" if all(pids.values()) else ""))
    return 0 if all(pids.values()) else EXIT_NOT_RUNNING


if __name__ == "__main__":
    sys.exit(main())
