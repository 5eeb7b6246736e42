"""A real single-node Apache Kafka broker (KRaft, no ZooKeeper) without Docker.

The broker's jars come from Maven Central through Maven, once, into the cache directory; its data and
log live under the data directory, so topics survive restarts. What it shares with the nodes of the local
cluster (jars, KRaft configuration, storage, the JVM) is in kraft.py.

With ``[kafka] security_protocol = SASL_SSL`` the broker's client listener takes TLS and SCRAM-SHA-512
logins only: the first start makes a local CA and the broker's certificate (broker_tls.py) and formats
the storage with the SCRAM user ``[kafka] username`` (password from LAKEHOUSE_KAFKA_PASSWORD). The
controller listener stays PLAINTEXT and bound to localhost.

Usage: python -m lakehouse.local.kafka_broker {start,stop,status,wipe,fetch,docker-prepare} [--config config.ini]
Example: python -m lakehouse.local.kafka_broker start && python -m lakehouse.local.kafka_broker status
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from lakehouse.local.broker_tls import (
    BROKER_USER,
    BrokerSecrets,
    TlsError,
    TlsFiles,
    ensure_tls,
    scram_credential,
    write_private,
)
from lakehouse.local.daemon import EXIT_NOT_RUNNING, Daemon, Exited, NotReady, command_line, wait_until_ready
from lakehouse.local.kraft import (
    LOG4J2_PROPERTIES,
    BrokerError,
    KraftNode,
    fetch_jars,
    format_storage,
    kafka_opts,
    launch,
    listener_lines,
    node_properties,
)
from lakehouse.platform.config import Config
from lakehouse.platform.kafka_probe import PLAINTEXT_SECURITY, broker_problem, first_host_port, port_open
from lakehouse.platform.kafka_security import SASL_SSL, SCRAM_LOGIN_MODULE, KafkaSecurity
from lakehouse.platform.paths import Paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerSettings(KraftNode):
    """Everything the launcher needs, derived from the configuration: the node, and its clients' security."""

    security: KafkaSecurity = PLAINTEXT_SECURITY

    @classmethod
    def from_config(cls, cfg: Config) -> "BrokerSettings":
        host, port = first_host_port(cfg.kafka.bootstrap_servers)
        paths = Paths.from_config(cfg)
        return cls(
            version=cfg.kafka.broker_version, host=host, port=port,
            controller_port=cfg.kafka.controller_port, heap=cfg.kafka.broker_heap,
            start_timeout_s=cfg.kafka.broker_start_timeout.seconds,
            libs_dir=paths.kafka_libs(cfg.kafka.broker_version), data_dir=paths.kafka_data,
            log_file=paths.logs_dir / "kafka.log", security=KafkaSecurity.from_config(cfg),
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.data_dir / "tls")

    @property
    def formatted_for_file(self) -> Path:
        """How the storage was formatted (protocol, SCRAM user), to refuse a mismatch with a clear reason."""
        return self.data_dir / "formatted-for.json"

    @property
    def daemon(self) -> Daemon:
        """The broker's process: the pid in its pid file, if that process runs Kafka's main class."""
        return self.as_daemon("Kafka broker")


# --- configuration files and storage ---------------------------------------------------------------

def secured_listener_lines(listen: str, advertise: str, controller_port: int, keystore: Path, ca_pem: Path,
                           secrets: BrokerSecrets, mechanism: str) -> list[str]:
    """The listeners of a SASL_SSL broker: TLS + SCRAM for clients and for the broker's own
    inter-broker connections; the controller listener PLAINTEXT on localhost only."""
    jaas = f'{SCRAM_LOGIN_MODULE} required username="{BROKER_USER}" password="{secrets.broker_password}";'
    return [
        f"controller.quorum.voters=1@localhost:{controller_port}",
        f"listeners=SASL_SSL://{listen},CONTROLLER://localhost:{controller_port}",
        f"advertised.listeners=SASL_SSL://{advertise}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=SASL_SSL",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        f"sasl.enabled.mechanisms={mechanism}",
        f"sasl.mechanism.inter.broker.protocol={mechanism}",
        f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={keystore}",
        f"ssl.keystore.password={secrets.store_password}",
        # The broker connects to itself (transaction markers): it checks its own certificate like a client.
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={ca_pem}",
        "ssl.client.auth=none",
    ]


def server_properties(settings: BrokerSettings, secrets: BrokerSecrets | None = None,
                      listen_host: str | None = None) -> str:
    """A single combined broker+controller KRaft node, sized for one machine (``secrets``: the SASL_SSL
    variant; ``listen_host``: bind the client listener there instead of the advertised host)."""
    if secrets is None:
        listeners = listener_lines(settings)
    else:
        listeners = secured_listener_lines(
            f"{listen_host or settings.host}:{settings.port}", settings.bootstrap, settings.controller_port,
            settings.tls.keystore, settings.tls.ca_pem, secrets, settings.security.mechanism)
    # One node: internal topics cannot have more than one replica.
    replication = ["offsets.topic.replication.factor=1",
                   "transaction.state.log.replication.factor=1",
                   "transaction.state.log.min.isr=1",
                   "share.coordinator.state.topic.replication.factor=1",
                   "share.coordinator.state.topic.min.isr=1"]
    return node_properties(settings, 1, listeners, replication)


def _formatted_for(settings: BrokerSettings) -> dict:
    try:
        return json.loads(settings.formatted_for_file.read_text(encoding="utf-8"))
    except FileNotFoundError:  # formatted before the launcher knew SASL_SSL
        return {"security_protocol": "PLAINTEXT", "username": None}


def check_formatted_for(settings: BrokerSettings) -> None:
    """A SASL_SSL start needs storage formatted with its SCRAM user; refuse anything else, saying why."""
    if not settings.security.secured or not (settings.log_dirs / "meta.properties").exists():
        return
    formatted = _formatted_for(settings)
    if formatted.get("security_protocol") != SASL_SSL:
        raise BrokerError(f"The broker's storage in {settings.log_dirs} was formatted for PLAINTEXT, without "
                          "SCRAM users: to start it with SASL_SSL, wipe it (python -m "
                          "lakehouse.local.kafka_broker wipe deletes its topics) or use another "
                          "[paths] data_dir")
    if formatted.get("username") != settings.security.username:
        raise BrokerError(f"The broker's storage in {settings.log_dirs} was formatted with SCRAM user "
                          f"{formatted.get('username')}, not {settings.security.username}: set [kafka] username "
                          "to it, or wipe the broker's data (python -m lakehouse.local.kafka_broker wipe "
                          "deletes its topics)")


def _scram_credentials(settings: BrokerSettings, secrets: BrokerSecrets) -> list[str]:
    security, user = settings.security, settings.security.scram_user()
    return [scram_credential(security.mechanism, BROKER_USER, secrets.broker_password),
            scram_credential(security.mechanism, user.name, user.password.reveal())]


def _record_format(settings: BrokerSettings) -> None:
    settings.formatted_for_file.write_text(json.dumps({
        "security_protocol": settings.security.protocol, "username": settings.security.username}),
        encoding="utf-8")


def prepare_storage(settings: BrokerSettings) -> None:
    """Write the broker's config files and format KRaft storage the first time (with SASL_SSL: make the
    certificate first, and create the SCRAM users while formatting)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secrets = None
    if settings.security.secured:
        check_formatted_for(settings)
        try:
            secrets = ensure_tls(settings.tls, settings.host)
        except TlsError as e:
            raise BrokerError(str(e)) from e
    # With SASL_SSL the file holds the keystore password and the broker's own SCRAM password.
    write_private(settings.properties_file, server_properties(settings, secrets))
    settings.log4j_file.write_text(LOG4J2_PROPERTIES, encoding="utf-8")
    if (settings.log_dirs / "meta.properties").exists():
        return
    format_storage(settings, settings.properties_file,
                   _scram_credentials(settings, secrets) if secrets is not None else [])
    _record_format(settings)
    log.info("Formatted KRaft storage in %s%s", settings.log_dirs,
             f" with SCRAM user {settings.security.username}" if secrets else "")


# --- the secured broker in Docker -------------------------------------------------------------------

DOCKER_MOUNT = Path("/var/lib/kafka/lakehouse")


def docker_prepare(settings: BrokerSettings, target: Path) -> Path:
    """What docker-compose.yml's ``kafka-secured`` service runs from, made here with the same code as the
    local broker: the CA and certificate, storage formatted with the SCRAM users, and a server.properties
    whose paths are those of the container (``target`` is mounted at ``DOCKER_MOUNT``). Returns the CA
    file clients use."""
    if not settings.security.secured:
        raise BrokerError("docker-prepare makes the SASL_SSL broker: set [kafka] security_protocol = SASL_SSL "
                          "(plain docker compose up -d needs no preparation)")
    problem = settings.security.credentials_problem()
    if problem is not None:
        raise BrokerError(problem)
    fetch_jars(settings)
    host = replace(settings, data_dir=target, host="localhost")  # formatting runs here, on host paths
    container = replace(host, data_dir=DOCKER_MOUNT)
    target.mkdir(parents=True, exist_ok=True)
    check_formatted_for(host)
    try:
        secrets = ensure_tls(host.tls, "localhost")
    except TlsError as e:
        raise BrokerError(str(e)) from e
    host.log4j_file.write_text(LOG4J2_PROPERTIES, encoding="utf-8")
    if not (host.log_dirs / "meta.properties").exists():
        formatting = target / "format.properties"
        write_private(formatting, server_properties(host, secrets))
        try:
            format_storage(host, formatting, _scram_credentials(host, secrets))
        finally:
            formatting.unlink(missing_ok=True)
        _record_format(host)
    # In the container the client listener binds every interface (Docker forwards the port to it).
    write_private(target / "server.properties", server_properties(container, secrets, listen_host="0.0.0.0"))
    log.info("Prepared %s for docker compose --profile secured up -d kafka-secured; clients trust %s",
             target, host.tls.ca_pem)
    return host.tls.ca_pem


# --- process management ----------------------------------------------------------------------------

def log_tail(settings: BrokerSettings, lines: int = 25) -> str:
    return settings.daemon.log_tail(lines)


def running_pid(settings: BrokerSettings) -> int | None:
    """The pid of this data directory's broker if it is alive, else None (a stale pid file is removed)."""
    return settings.daemon.running_pid()


def broker_answers(bootstrap_servers: str, timeout_s: float,
                   security: KafkaSecurity = PLAINTEXT_SECURITY) -> bool:
    """True when a Kafka broker at ``bootstrap_servers`` answers a metadata request in time (with these
    security settings); ``kafka_probe.broker_problem`` says why not."""
    return broker_problem(bootstrap_servers, timeout_s, security) is None


def start(settings: BrokerSettings) -> int:
    """Start the broker in the background and wait until it answers; returns its pid. Idempotent."""
    daemon = settings.daemon
    pid = daemon.running_pid()
    if pid is not None:
        log.info("Kafka broker already running (pid %d) on %s:%d", pid, settings.host, settings.port)
        return pid
    for port in (settings.port, settings.controller_port):
        if port_open(settings.host, port):
            raise BrokerError(f"Port {port} on {settings.host} is already in use by another process; "
                              "stop it (e.g. a broker from docker compose) or change "
                              "[kafka] bootstrap_servers / controller_port")
    if settings.security.secured:
        problem = settings.security.credentials_problem()
        if problem is not None:
            raise BrokerError(problem)
    fetch_jars(settings)
    kafka_opts()  # before anything is written
    prepare_storage(settings)
    proc = launch(settings, daemon)
    bootstrap = settings.bootstrap
    refused_since = None

    def answers() -> bool:
        nonlocal refused_since
        listening = port_open(settings.host, settings.port)
        problem = broker_problem(bootstrap, 2.0, settings.security) if listening else None
        if listening and problem is None:
            return True
        # A refusal that lasts is not the broker still loading its users: stop it and say why.
        if problem is not None and problem.reachable:
            refused_since = refused_since or time.monotonic()
            if time.monotonic() - refused_since > 5.0:
                daemon.terminate(proc.pid, 10.0)
                daemon.forget()
                if not problem.refused_login:
                    raise BrokerError(f"{problem.message}. The broker was stopped")
                raise BrokerError(f"{problem.message}. The broker was stopped: its SCRAM users were created "
                                  "with the password set when its storage was formatted; use that one, or "
                                  "wipe the broker's data to set a new one")
        else:
            refused_since = None
        return False

    try:
        wait_until_ready(answers, [proc], settings.start_timeout_s)
    except Exited:
        daemon.forget()
        raise BrokerError(f"Kafka broker exited with code {proc.returncode} while starting; "
                          f"last lines of {settings.log_file}:\n{log_tail(settings)}") from None
    except NotReady:
        daemon.terminate(proc.pid, 10.0)
        daemon.forget()
        raise BrokerError(f"Kafka broker did not accept connections on {bootstrap} within "
                          f"{settings.start_timeout_s:g} s; last lines of {settings.log_file}:\n"
                          f"{log_tail(settings)}") from None
    log.info("Kafka broker %s started (pid %d) on %s (%s); log: %s", settings.version, proc.pid,
             bootstrap, settings.security.describe(), settings.log_file)
    return proc.pid


def stop(settings: BrokerSettings, timeout_s: float = 60.0) -> bool:
    """Stop the broker cleanly (SIGTERM, Kafka's clean shutdown; SIGKILL after ``timeout_s``); returns False if
    it was not running. Idempotent."""
    if settings.daemon.stop(timeout_s):
        return True
    log.info("Kafka broker is not running")
    return False


def wipe(settings: BrokerSettings) -> None:
    """Delete the broker's data (topics, offsets). Refuses while it runs."""
    if running_pid(settings) is not None:
        raise BrokerError("Stop the broker before wiping its data (python -m lakehouse.local.kafka_broker stop)")
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    log.info("Deleted broker data in %s", settings.data_dir)


def main(argv: list[str] | None = None) -> int:
    return command_line("Run a local single-node Kafka broker (KRaft).", run_command, argv,
                        actions=("start", "stop", "status", "wipe", "fetch", "docker-prepare"), dest="command",
                        action_help="start/stop the broker, show its status, delete its data (wipe), only "
                                    "download its jars (fetch), or make what the secured docker-compose broker "
                                    "runs from (docker-prepare, into <data_dir>/kafka-docker)",
                        kafka_security=True)


def run_command(command: str, cfg: Config) -> int:
    """Carry out one command of the launcher; returns its exit code."""
    settings = BrokerSettings.from_config(cfg)
    try:
        if command == "start":
            start(settings)
        elif command == "stop":
            stop(settings)
        elif command == "wipe":
            wipe(settings)
        elif command == "fetch":
            fetch_jars(settings)
            log.info("Kafka %s broker jars are in %s", settings.version, settings.libs_dir)
        elif command == "docker-prepare":
            docker_prepare(settings, Paths.from_config(cfg).kafka_docker)
        else:
            pid = running_pid(settings)
            if pid is None:
                print(f"Kafka broker: not running (expected on {settings.host}:{settings.port})")
                return EXIT_NOT_RUNNING
            print(f"Kafka broker: running (pid {pid}) on {settings.host}:{settings.port} "
                  f"({settings.security.describe()}), log {settings.log_file}")
    except BrokerError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
