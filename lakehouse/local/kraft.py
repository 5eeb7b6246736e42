"""What every local Kafka node needs, the single broker (kafka_broker.py) and the three-node cluster
(kafka_cluster.py) alike: the broker's jars fetched once with Maven, a node's files and its KRaft configuration,
its storage formatted, and its JVM started in the background.

A node here is a combined broker and controller (``process.roles=broker,controller``), without ZooKeeper.
"""

from __future__ import annotations

import base64
import logging
import os
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from lakehouse.local.broker_tls import jdk_tool, write_private
from lakehouse.local.daemon import Daemon
from lakehouse.platform.config import redact
from lakehouse.platform.kafka_security import environment_without_password

log = logging.getLogger(__name__)

MAIN_CLASS = "kafka.Kafka"
JARS_COMPLETE_MARKER = ".complete"
MAVEN_HINT = ("Maven reads proxies and mirrors from ~/.m2/settings.xml "
              "(<proxies>/<mirrors>); see docs/TROUBLESHOOTING.md")


class BrokerError(RuntimeError):
    """The local broker could not be fetched, formatted, started or stopped."""


@dataclass(frozen=True)
class KraftNode:
    """One node: its version, listeners' host and ports, heap, start wait, and where its files go."""

    version: str
    host: str
    port: int
    controller_port: int
    heap: str
    start_timeout_s: float
    libs_dir: Path
    data_dir: Path
    log_file: Path

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.data_dir / "log4j2.properties"

    def as_daemon(self, name: str, *markers: str) -> Daemon:
        """Its process, as ``name``: its pid file and log; it is ours when its command line holds Kafka's main
        class and ``markers``."""
        return Daemon(name, self.pid_file, self.log_file, (MAIN_CLASS, *markers))


# --- jars ------------------------------------------------------------------------------------------

def _pom(version: str) -> str:
    # The broker is the kafka_2.13 artifact plus a log4j2 binding for its slf4j 1.x logging API
    # (the Apache distribution ships the same pair in libs/).
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.lakehouse</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>2.25.5</version>
    </dependency>
  </dependencies>
</project>
"""


def jars_cached(node: KraftNode) -> bool:
    """True when a complete set of broker jars is in the cache."""
    return (node.libs_dir / JARS_COMPLETE_MARKER).exists()


def fetch_jars(node: KraftNode) -> Path:
    """Download the broker's jars with Maven into the cache, unless they are already there."""
    if jars_cached(node):
        return node.libs_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not installed; it is needed once to fetch the Kafka broker jars "
                          "from Maven Central (Debian/Ubuntu: apt-get install maven)")
    work = node.libs_dir.parent
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_pom(node.version), encoding="utf-8")
    log.info("Fetching Apache Kafka %s broker jars from Maven Central into %s", node.version, node.libs_dir)
    cmd = [mvn, "-B", "-q", "dependency:copy-dependencies", f"-DoutputDirectory={node.libs_dir}",
           "-DincludeScope=runtime"]
    result = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"Could not download the Kafka {node.version} broker jars with Maven "
                          f"(exit {result.returncode}). {MAVEN_HINT}.\n{tail}")
    (node.libs_dir / JARS_COMPLETE_MARKER).write_text(node.version, encoding="utf-8")
    return node.libs_dir


# --- configuration files and storage ---------------------------------------------------------------

def listener_lines(node: KraftNode, voters: str | None = None) -> list[str]:
    """PLAINTEXT client and controller listeners on ``node.host``; ``voters``: the static controller
    quorum (default: this node alone, id 1)."""
    return [
        f"controller.quorum.voters={voters or f'1@{node.host}:{node.controller_port}'}",
        f"listeners=PLAINTEXT://{node.host}:{node.port},"
        f"CONTROLLER://{node.host}:{node.controller_port}",
        f"advertised.listeners=PLAINTEXT://{node.host}:{node.port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    ]


def node_properties(node: KraftNode, node_id: int, listeners: list[str], replication: list[str]) -> str:
    """A combined broker+controller KRaft node: its id, listeners, storage, and the replication settings of
    its topics (those of one node in kafka_broker.py, of three in kafka_cluster.py)."""
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node_id}",
        *listeners,
        f"log.dirs={node.log_dirs}",
        "num.partitions=3",
        # Topics are created explicitly (with the configured partition count); a typo in a topic
        # name should fail loudly rather than create a new empty topic.
        "auto.create.topics.enable=false",
        *replication,
        "group.initial.rebalance.delay.ms=0",
        "",
    ])


LOG4J2_PROPERTIES = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def new_cluster_id() -> str:
    """A KRaft cluster id in Kafka's own form: 16 random bytes, URL-safe base64, no padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not text.startswith("-"):
            return text


def _java() -> str:
    java = jdk_tool("java")
    if java is None:
        raise BrokerError("Java is not installed; Kafka and Spark need Java 17 or newer "
                          "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless)")
    return java


def _classpath(node: KraftNode) -> str:
    return str(node.libs_dir / "*")


def _format_command(node: KraftNode, argfile: Path) -> list[str]:
    # The tool's own arguments (the SCRAM credentials among them) are in a private argument file that
    # the java launcher expands: nothing secret appears in this process's command line.
    return [_java(), "-cp", _classpath(node), f"-Dlog4j2.configurationFile={node.log4j_file}", f"@{argfile}"]


def format_storage(node: KraftNode, properties_file: Path, scram: list[str], cluster_id: str | None = None) -> None:
    """``kafka-storage format`` with ``cluster_id`` (default: a new one), adding the SCRAM credentials
    ``scram``."""
    argfile = node.data_dir / "format.args"
    args = ["kafka.tools.StorageTool", "format", "-t", cluster_id or new_cluster_id(), "-c", str(properties_file)]
    for credential in scram:
        args += ["--add-scram", credential]
    write_private(argfile, "\n".join(f'"{a}"' for a in args) + "\n")
    try:
        result = subprocess.run(_format_command(node, argfile), capture_output=True, text=True,
                                env=environment_without_password(), check=False)
    finally:
        argfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise BrokerError(f"Formatting KRaft storage in {node.log_dirs} failed (exit {result.returncode}):"
                          f"\n{redact((result.stdout + result.stderr)[-2000:])}")


# --- the node's process ----------------------------------------------------------------------------

def kafka_opts() -> list[str]:
    """The JVM options in the KAFKA_OPTS environment variable, split as a shell would (BrokerError if they
    cannot be; the value is not repeated: it may hold a password)."""
    try:
        return shlex.split(os.environ.get("KAFKA_OPTS", ""))
    except ValueError as e:
        raise BrokerError(f"KAFKA_OPTS cannot be split into JVM options: {e}") from None


def launch(node: KraftNode, daemon: Daemon, banner: str | None = None) -> subprocess.Popen:
    """Start the node's JVM on prepared storage in the background (``daemon``: its pid file, its log, a session
    of its own, so that Ctrl-C in the terminal that started it does not kill it); does not wait for it."""
    # KAFKA_OPTS: more JVM options, as Kafka's own start scripts take them (the collector stays G1).
    cmd = [_java(), f"-Xmx{node.heap}", f"-Xms{node.heap}", "-XX:+UseG1GC",
           *kafka_opts(),
           "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={node.log4j_file}",
           "-cp", _classpath(node), MAIN_CLASS, str(node.properties_file)]
    # The broker's environment: ours without the clients' password, which it has no use for.
    return daemon.launch(cmd, env=environment_without_password(), banner=banner)
