"""A real single-node Apache Kafka broker (KRaft, no ZooKeeper) without Docker.

The broker's jars come from Maven Central through Maven, once, into the cache directory; its data and
log live under the data directory, so topics survive restarts.

Usage: python -m lakehouse.platform.kafka_local {start,stop,status,wipe} [--config config.ini]
Example: python -m lakehouse.platform.kafka_local start && python -m lakehouse.platform.kafka_local status
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from lakehouse.platform.cli import add_config_flag, config_or_exit, setup_logging
from lakehouse.platform.config import Config
from lakehouse.platform.kafka_probe import PLAINTEXT_SECURITY, broker_problem, first_host_port, port_open
from lakehouse.platform.kafka_security import KafkaSecurity
from lakehouse.platform.paths import Paths

log = logging.getLogger(__name__)

JARS_COMPLETE_MARKER = ".complete"
MAVEN_HINT = ("Maven reads proxies and mirrors from ~/.m2/settings.xml "
              "(<proxies>/<mirrors>); see docs/TROUBLESHOOTING.md")


class BrokerError(RuntimeError):
    """The local broker could not be fetched, formatted, started or stopped."""


@dataclass(frozen=True)
class BrokerSettings:
    """Everything the launcher needs, derived from the configuration."""

    version: str
    host: str
    port: int
    controller_port: int
    heap: str
    start_timeout_s: float
    libs_dir: Path
    data_dir: Path
    log_file: Path

    @classmethod
    def from_config(cls, cfg: Config) -> "BrokerSettings":
        host, port = first_host_port(cfg.kafka.bootstrap_servers)
        paths = Paths.from_config(cfg)
        return cls(
            version=cfg.kafka.broker_version, host=host, port=port,
            controller_port=cfg.kafka.controller_port, heap=cfg.kafka.broker_heap,
            start_timeout_s=cfg.kafka.broker_start_timeout.seconds,
            libs_dir=paths.kafka_libs(cfg.kafka.broker_version), data_dir=paths.kafka_data,
            log_file=paths.logs_dir / "kafka.log",
        )

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


def jars_cached(settings: BrokerSettings) -> bool:
    """True when a complete set of broker jars is in the cache."""
    return (settings.libs_dir / JARS_COMPLETE_MARKER).exists()


def fetch_jars(settings: BrokerSettings) -> Path:
    """Download the broker's jars with Maven into the cache, unless they are already there."""
    if jars_cached(settings):
        return settings.libs_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not installed; it is needed once to fetch the Kafka broker jars "
                          "from Maven Central (Debian/Ubuntu: apt-get install maven)")
    work = settings.libs_dir.parent
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_pom(settings.version), encoding="utf-8")
    log.info("Fetching Apache Kafka %s broker jars from Maven Central into %s", settings.version,
             settings.libs_dir)
    cmd = [mvn, "-B", "-q", "dependency:copy-dependencies", f"-DoutputDirectory={settings.libs_dir}",
           "-DincludeScope=runtime"]
    result = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"Could not download the Kafka {settings.version} broker jars with Maven "
                          f"(exit {result.returncode}). {MAVEN_HINT}.\n{tail}")
    (settings.libs_dir / JARS_COMPLETE_MARKER).write_text(settings.version, encoding="utf-8")
    return settings.libs_dir


# --- configuration files and storage ---------------------------------------------------------------

def server_properties(settings: BrokerSettings) -> str:
    """A single combined broker+controller KRaft node, sized for one machine."""
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{settings.host}:{settings.controller_port}",
        f"listeners=PLAINTEXT://{settings.host}:{settings.port},"
        f"CONTROLLER://{settings.host}:{settings.controller_port}",
        f"advertised.listeners=PLAINTEXT://{settings.host}:{settings.port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={settings.log_dirs}",
        "num.partitions=3",
        # Topics are created explicitly (with the configured partition count); a typo in a topic
        # name should fail loudly rather than create a new empty topic.
        "auto.create.topics.enable=false",
        # One node: internal topics cannot have more than one replica.
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
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
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Java is not installed; Kafka and Spark need Java 17 or newer "
                          "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless)")
    return java


def _classpath(settings: BrokerSettings) -> str:
    return str(settings.libs_dir / "*")


def prepare_storage(settings: BrokerSettings) -> None:
    """Write the broker's config files and format KRaft storage the first time."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.properties_file.write_text(server_properties(settings), encoding="utf-8")
    settings.log4j_file.write_text(LOG4J2_PROPERTIES, encoding="utf-8")
    if (settings.log_dirs / "meta.properties").exists():
        return
    cmd = [_java(), "-cp", _classpath(settings), f"-Dlog4j2.configurationFile={settings.log4j_file}",
           "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c",
           str(settings.properties_file)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"Formatting KRaft storage in {settings.log_dirs} failed "
                          f"(exit {result.returncode}):\n{(result.stdout + result.stderr)[-2000:]}")
    log.info("Formatted KRaft storage in %s", settings.log_dirs)


# --- process management ----------------------------------------------------------------------------

def _read_pid(settings: BrokerSettings) -> int | None:
    try:
        return int(settings.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _is_broker_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie has an empty command line: it is gone for our purposes.
    return b"kafka.Kafka" in cmdline


def running_pid(settings: BrokerSettings) -> int | None:
    """The pid of this data directory's broker if it is alive, else None (a stale pid file is removed)."""
    pid = _read_pid(settings)
    if pid is None:
        return None
    if _is_broker_process(pid):
        return pid
    settings.pid_file.unlink(missing_ok=True)
    return None


def broker_answers(bootstrap_servers: str, timeout_s: float,
                   security: KafkaSecurity = PLAINTEXT_SECURITY) -> bool:
    """True when a Kafka broker at ``bootstrap_servers`` answers a metadata request in time (with these
    security settings); ``kafka_probe.broker_problem`` says why not."""
    return broker_problem(bootstrap_servers, timeout_s, security) is None


def log_tail(settings: BrokerSettings, lines: int = 25) -> str:
    try:
        return "\n".join(settings.log_file.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def start(settings: BrokerSettings) -> int:
    """Start the broker in the background and wait until it answers; returns its pid. Idempotent."""
    pid = running_pid(settings)
    if pid is not None:
        log.info("Kafka broker already running (pid %d) on %s:%d", pid, settings.host, settings.port)
        return pid
    for port in (settings.port, settings.controller_port):
        if port_open(settings.host, port):
            raise BrokerError(f"Port {port} on {settings.host} is already in use by another process; "
                              "stop it (e.g. a broker from docker compose) or change "
                              "[kafka] bootstrap_servers / controller_port")
    fetch_jars(settings)
    prepare_storage(settings)
    settings.log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [_java(), f"-Xmx{settings.heap}", f"-Xms{settings.heap}", "-XX:+UseG1GC",
           "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={settings.log4j_file}",
           "-cp", _classpath(settings), "kafka.Kafka", str(settings.properties_file)]
    with open(settings.log_file, "ab") as out:
        # A session of its own: Ctrl-C in the terminal that started it must not kill the broker.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    settings.pid_file.write_text(str(proc.pid), encoding="utf-8")
    bootstrap = f"{settings.host}:{settings.port}"
    deadline = time.monotonic() + settings.start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            settings.pid_file.unlink(missing_ok=True)
            raise BrokerError(f"Kafka broker exited with code {proc.returncode} while starting; "
                              f"last lines of {settings.log_file}:\n{log_tail(settings)}")
        if port_open(settings.host, settings.port) and broker_answers(bootstrap, 2.0):
            log.info("Kafka broker %s started (pid %d) on %s; log: %s", settings.version, proc.pid,
                     bootstrap, settings.log_file)
            return proc.pid
        time.sleep(0.5)
    _terminate(proc.pid, 10.0)
    settings.pid_file.unlink(missing_ok=True)
    raise BrokerError(f"Kafka broker did not accept connections on {bootstrap} within "
                      f"{settings.start_timeout_s:g} s; last lines of {settings.log_file}:\n"
                      f"{log_tail(settings)}")


def _terminate(pid: int, timeout_s: float) -> bool:
    """SIGTERM (Kafka's clean shutdown), then SIGKILL if it is still there; True if it was clean."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _is_broker_process(pid):
            return True
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    return False


def stop(settings: BrokerSettings, timeout_s: float = 60.0) -> bool:
    """Stop the broker cleanly; returns False if it was not running. Idempotent."""
    pid = running_pid(settings)
    if pid is None:
        log.info("Kafka broker is not running")
        return False
    log.info("Stopping Kafka broker (pid %d)", pid)
    if not _terminate(pid, timeout_s):
        log.warning("Kafka broker did not stop within %g s and was killed", timeout_s)
    settings.pid_file.unlink(missing_ok=True)
    return True


def wipe(settings: BrokerSettings) -> None:
    """Delete the broker's data (topics, offsets). Refuses while it runs."""
    if running_pid(settings) is not None:
        raise BrokerError("Stop the broker before wiping its data (python -m lakehouse.platform.kafka_local stop)")
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    log.info("Deleted broker data in %s", settings.data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local single-node Kafka broker (KRaft).")
    parser.add_argument("command", choices=("start", "stop", "status", "wipe", "fetch"),
                        help="start/stop the broker, show its status, delete its data (wipe), "
                             "or only download its jars (fetch)")
    add_config_flag(parser)
    args = parser.parse_args(argv)
    cfg = config_or_exit(args)
    setup_logging(cfg.monitoring.log_level)
    settings = BrokerSettings.from_config(cfg)
    try:
        if args.command == "start":
            start(settings)
        elif args.command == "stop":
            stop(settings)
        elif args.command == "wipe":
            wipe(settings)
        elif args.command == "fetch":
            fetch_jars(settings)
            log.info("Kafka %s broker jars are in %s", settings.version, settings.libs_dir)
        else:
            pid = running_pid(settings)
            if pid is None:
                print(f"Kafka broker: not running (expected on {settings.host}:{settings.port})")
                return 3
            print(f"Kafka broker: running (pid {pid}) on {settings.host}:{settings.port}, "
                  f"log {settings.log_file}")
    except BrokerError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
