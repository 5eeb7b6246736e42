"""Every setting, declared once: a frozen dataclass per section, one field per setting.

A field's annotation is the setting's value type (``X | None``: it may be left empty) and ``setting(...)``
gives its default as written in config.ini, its meaning, its allowed values and whether it is a secret
read from the environment only. ``SCHEMA`` (section → key → ``Option``) is derived from these classes;
the loader validates against it, and ``python -m lakehouse.platform.config.docs`` writes
docs/CONFIGURATION.md from it.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from lakehouse.platform.config.values import (
    HOSTPORTS,
    PARSERS,
    SPARK_MASTER,
    Duration,
    Secret,
    check_lake,
    check_naive_timezone,
    check_ports,
    check_timezone,
    resolve_path,
)

ENV_PREFIX = "LAKEHOUSE_"
_SETTING = "lakehouse.setting"  # the key of a field's metadata that holds its declaration
_SIZE = r"\d+[mMgG]"
_SIZE_WORDS = "a size: a number then m or g (512m, 2g)"
_NAME = "letters, digits, '.', '_', '-'"


@dataclass(frozen=True)
class Option:
    """One setting: its type, default (as written in config.ini), allowed values and meaning."""

    type: type
    default: str
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    # The end of "expected ..." when a value does not match ``pattern``.
    expected: str | None = None
    # The allowed values in words, for the documentation, where the bounds and choices do not say it.
    allowed: str | None = None
    allow_empty: bool = False
    # A further check of the parsed value; raises ValueError saying what is allowed.
    check: Callable[[Any], None] | None = None
    # Secrets are read from the environment only: never from a file (it may be committed or shared)
    # nor from a flag (command lines are visible to every user of the machine).
    env_only: bool = False

    def parse(self, raw: str) -> Any:
        """Convert ``raw`` to the option's type, or raise ``ValueError`` saying what is allowed."""
        if (raw if self.type is Secret else raw.strip()) == "":
            if self.allow_empty:
                return None
            raise ValueError("a value is required")
        value = PARSERS[self.type](raw)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ValueError(f"expected {self.expected}")
        number = value.seconds if isinstance(value, Duration) else value
        if self.min is not None and number < self.min:
            raise ValueError(f"expected at least {self.bound(self.min)}")
        if self.max is not None and number > self.max:
            raise ValueError(f"expected at most {self.bound(self.max)}")
        if self.check is not None:
            self.check(value)
        return value

    def bound(self, bound: float) -> str:
        """A ``min`` or ``max`` as error messages write it."""
        return f"{bound:g} seconds" if self.type is Duration else f"{bound:g}"


def setting(default: str, help: str, *, min: float | None = None, max: float | None = None,
            choices: tuple[str, ...] | None = None, pattern: str | None = None, expected: str | None = None,
            allowed: str | None = None, check: Callable[[Any], None] | None = None,
            env_only: bool = False) -> Any:
    """Declare a section's field as a setting (the field's annotation gives its type; see ``Option``)."""
    if (pattern is None) != (expected is None):
        raise TypeError("a pattern needs the 'expected' text its error message ends with, and only a pattern")
    return field(metadata={_SETTING: dict(default=default, help=help, min=min, max=max, choices=choices,
                                          pattern=pattern, expected=expected, allowed=allowed, check=check,
                                          env_only=env_only)})


@dataclass(frozen=True)
class Section:
    """The validated values of one section of config.ini, as typed attributes."""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class KafkaSection(Section):
    """The broker the jobs talk to, the topic, the local broker, and the clients' security."""

    bootstrap_servers: str = setting(
        "localhost:9092", "host:port[,host:port...] of the Kafka brokers", pattern=HOSTPORTS,
        expected="host:port[,host:port...] of the Kafka brokers", check=check_ports,
        allowed="host:port[,host:port...], each port 1 to 65535")
    topic: str = setting("ventes_stream", "topic the sales events flow through", pattern=r"[A-Za-z0-9._\-]{1,249}",
                         expected="topic the sales events flow through", allowed=f"1 to 249 {_NAME}")
    partitions: int = setting("3", "partition count used when the topic is created", min=1, max=1000)
    replication_factor: int = setting("1", "replication factor used when the topic is created", min=1, max=10)
    connect_timeout: Duration = setting("10 seconds", "how long clients wait for the broker to answer", min=0.1,
                                        max=600)
    broker_version: str = setting("4.4.0", "Apache Kafka version of the local broker's jars", pattern=r"4\.\d+\.\d+",
                                  expected="Apache Kafka version of the local broker's jars", allowed="4.x.y")
    controller_port: int = setting("9093", "KRaft controller port of the local broker", min=1, max=65535)
    broker_heap: str = setting("512m", "JVM heap of the local broker (-Xmx)", pattern=_SIZE,
                               expected="JVM heap of the local broker (-Xmx)", allowed=_SIZE_WORDS)
    broker_start_timeout: Duration = setting("60 seconds", "how long 'kafka_broker start' waits for the broker",
                                             min=1, max=600)
    security_protocol: str = setting(
        "PLAINTEXT", "PLAINTEXT (no TLS, no authentication) or SASL_SSL (TLS and SCRAM logins) between the "
        "clients and the broker; the local broker is started the same way", choices=("PLAINTEXT", "SASL_SSL"))
    sasl_mechanism: str = setting("SCRAM-SHA-512", "SASL mechanism with SASL_SSL", choices=("SCRAM-SHA-512",))
    username: str | None = setting(
        "", "SCRAM user of the clients with SASL_SSL; the local broker creates it",
        pattern=r"[A-Za-z0-9._@\-]{1,128}", allowed="1 to 128 letters, digits, '.', '_', '@', '-'",
        expected="SCRAM user name (letters, digits, . _ @ -) of the clients with SASL_SSL")
    password: Secret | None = setting(
        "", "SCRAM password of [kafka] username: from the environment only, refused in config.ini and as a flag, "
        "masked in every log line",
        env_only=True)
    ssl_cafile: str | None = setting(
        "", "PEM file of the CA that signed the broker's TLS certificate, with SASL_SSL (empty = the local "
        "broker's own CA, `<data_dir>/kafka/tls/ca.pem`)", allowed="a file")


@dataclass(frozen=True)
class SparkSection(Section):
    """The Spark session of the Bronze stream, Silver, the menu and the report."""

    master: str = setting(
        "local[*]", "Spark master when not launched by spark-submit; local, local[N], local[*], spark://host:port, "
        "yarn or k8s://...", pattern=SPARK_MASTER, expected="Spark master when not launched by spark-submit",
        allowed="local, local[N], local[N,F], local[*], local-cluster[N,C,M], spark://host:port[,host:port...], "
        "yarn, k8s://...")
    timezone: str = setting("UTC", "session time zone (naive timestamps are read in it)", check=check_timezone,
                            allowed="a time zone id (UTC, Europe/Paris) or an offset (+01:00)")
    shuffle_partitions: int = setting("4", "spark.sql.shuffle.partitions", min=1, max=10000)
    driver_memory: str = setting("2g", "driver JVM memory when started from python", pattern=_SIZE,
                                 expected="driver JVM memory when started from python", allowed=_SIZE_WORDS)
    log_level: str = setting("WARN", "Spark's own log level",
                             choices=("ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"))
    ui_enabled: bool = setting("false", "start the Spark web UI")
    bind_address: str | None = setting(
        "127.0.0.1", "address a local-mode driver (its RPC, block manager and UI ports) listens on; empty = "
        "Spark's default (every interface)", allowed="a host name or IP address")
    jars_repositories: str | None = setting(
        "", "extra Maven repositories (comma-separated URLs) for the Kafka and Delta jars, e.g. a company mirror",
        allowed="URLs, comma-separated")
    executor_wait: Duration = setting(
        "60 seconds", "on a spark:// master: how long a job may go without any executor (workers gone, or every "
        "core taken) before it stops with an error", min=5, max=86400)
    cores_max: int | None = setting(
        "", "spark.cores.max of each job on a spark:// master: the cores one job may take, so that the Bronze "
        "stream and Silver both get some (empty = all)", min=1, max=100_000)
    jars_on_workers: bool = setting(
        "false", "on a spark:// master whose workers read this machine's jar cache at the same path (the local "
        "cluster, or nodes sharing that folder): executors load the jars from there instead of a copy for each job")


@dataclass(frozen=True)
class ClusterSection(Section):
    """The local stand-in cluster: the object store, a Spark standalone cluster, a three-node Kafka."""

    s3proxy_version: str = setting(
        "4.0.0", "version of s3proxy (org.gaul:s3proxy, from Maven Central), the local object store "
        "(python -m lakehouse.local.object_store)", pattern=r"\d+\.\d+\.\d+", allowed="x.y.z",
        expected="version of s3proxy (org.gaul:s3proxy), the local object store "
                 "(python -m lakehouse.local.object_store)")
    spark_master_port: int = setting(
        "7077", "port of the local Spark standalone master (python -m lakehouse.local.spark_cluster)",
        min=1, max=65535)
    spark_workers: int = setting("2", "workers of the local Spark standalone cluster", min=1, max=16)
    spark_worker_cores: int = setting("1", "cores each local Spark worker offers", min=1, max=256)
    spark_worker_memory: str = setting(
        "1g", "memory each local Spark worker offers (an executor takes 1g by default)", pattern=_SIZE,
        expected="memory each local Spark worker offers (an executor takes 1g by default)", allowed=_SIZE_WORDS)
    start_timeout: Duration = setting("60 seconds", "how long the local cluster's processes may take to start",
                                      min=1, max=600)
    kafka_nodes: int = setting(
        "3", "nodes (combined KRaft broker and controller) of the local Kafka cluster "
        "(python -m lakehouse.local.kafka_cluster)", min=3, max=9)
    kafka_base_port: int = setting(
        "9192", "first port of the local Kafka cluster: node N listens for clients on base + 2(N-1) and for its "
        "controller on the next port", min=1024, max=65535 - 2 * 9 + 1)
    kafka_node_heap: str = setting(
        "384m", "JVM heap of each node of the local Kafka cluster (-Xmx)", pattern=_SIZE,
        expected="JVM heap of each node of the local Kafka cluster (-Xmx)", allowed=_SIZE_WORDS)


@dataclass(frozen=True)
class PathsSection(Section):
    """Where the data, the downloaded jars and the lake live."""

    data_dir: str = setting(
        "./data", "root of all data (tables, checkpoints, broker data, logs); relative paths are resolved against "
        "the config file's folder", allowed="a folder (made when missing)")
    cache_dir: str = setting(
        "./.cache", "downloaded jars (Kafka broker, Spark's Ivy cache); relative paths are resolved against the "
        "config file's folder", allowed="a folder (made when missing)")
    lake: str | None = setting(
        "", "where the Delta tables and streaming checkpoints live: empty = `<data_dir>`, a folder, or "
        "s3a://bucket/prefix on S3-compatible object storage (see [s3])", check=check_lake,
        allowed="a folder, or s3a://bucket[/prefix] (bucket: 3 to 63 lower-case letters, digits, '.', '-')")


@dataclass(frozen=True)
class S3Section(Section):
    """The object store of an s3a:// lake."""

    endpoint: str | None = setting(
        "http://127.0.0.1:8555", "URL of the S3-compatible object store of an s3a:// lake (the local one: "
        "python -m lakehouse.local.object_store); empty = AWS", pattern=r"https?://[A-Za-z0-9_.\-\[\]:]+(:\d{1,5})?/?",
        expected="URL of the S3-compatible object store of an s3a:// lake (the local one: "
                 "python -m lakehouse.local.object_store)", allowed="http://host[:port] or https://host[:port]")
    region: str = setting("us-east-1", "region of the object store", pattern=r"[a-z0-9\-]{1,32}",
                          expected="region of the object store", allowed="1 to 32 lower-case letters, digits, '-'")
    path_style_access: bool = setting(
        "true", "address buckets as `<endpoint>/<bucket>` (most S3-compatible stores) rather than "
        "`<bucket>.<endpoint>`")
    access_key: str = setting("lakehouse", "access key id of the lake's object store",
                              pattern=r"[A-Za-z0-9._\-]{3,128}", expected="access key id of the lake's object store",
                              allowed=f"3 to 128 {_NAME}")
    secret_key: Secret | None = setting(
        "", "secret access key of the object store: from the environment only, refused in config.ini and as a "
        "flag, masked in every log line",
        env_only=True)


@dataclass(frozen=True)
class StreamingSection(Section):
    """The Bronze stream (spark_streaming_delta.py) and the bounds of the event contract."""

    starting_offsets: str = setting("earliest", "where a first start reads the topic from",
                                    choices=("earliest", "latest"))
    fail_on_data_loss: bool = setting("true", "stop when Kafka offsets were lost (e.g. retention)")
    trigger_interval: Duration = setting("1 second", "processing-time trigger of the Bronze stream", min=0,
                                         max=3600)
    max_offsets_per_trigger: int = setting("100000", "upper bound of records per micro-batch", min=1)
    metrics_interval: Duration = setting(
        "10 seconds", "how often the Bronze stream appends its batches' figures to the metrics table (0 = with "
        "every batch, one more commit each)", min=0, max=3600)
    watermark_delay: Duration = setting("10 minutes", "late-data tolerance and duplicate window", min=0,
                                        max=7 * 86400)
    max_event_bytes: int = setting("65536", "largest accepted Kafka value; larger is quarantined", min=256,
                                   max=10 * 1024 * 1024)
    max_quantite: int = setting("100000", "largest accepted quantite; larger is quarantined (bad_quantity)", min=1,
                                max=2 ** 31 - 1)
    max_future_skew: Duration = setting(
        "5 minutes", "how far a sale's event time may be ahead of its Kafka timestamp; further is quarantined "
        "(future_event)", min=0, max=7 * 86400)
    max_event_age: Duration = setting(
        "365 days", "how far a sale's event time may be behind its Kafka timestamp; further is quarantined "
        "(stale_event)", min=60, max=100 * 365 * 86400)
    naive_timezone: str = setting(
        "local", "how a sale's timestamp without offset (2024-12-12T10:15:25) is read: local (this machine's time "
        "zone, found when the configuration is loaded; UTC if it cannot be found), a time zone id such as "
        "Europe/Paris, or reject (quarantined as bad_timestamp)", check=check_naive_timezone,
        allowed="local, reject, or a time zone id (Europe/Paris, UTC)")
    broker_timeout: Duration = setting(
        "30 seconds", "how long the stream waits for an unreachable Kafka broker before it stops with an error",
        min=1, max=3600)


@dataclass(frozen=True)
class ProducerSection(Section):
    """The simulated sales and their corrections (producer_ventes.py)."""

    rate: float = setting("0.5", "events per second (0.5 = one sale every 2 seconds)", min=0.001, max=1_000_000)
    seed: int | None = setting("", "random seed of the events (empty = a new one each run)", min=0)
    pool_seed: int = setting(
        "1", "seed of the client pool: a client id is the same client (name, country, city, segment) in every "
        "run while it is unchanged", min=0)
    clients: int = setting("500", "size of the simulated client pool", min=1, max=1_000_000)
    linger_ms: int = setting("50", "kafka-python linger_ms (batching delay)", min=0, max=10_000)
    delivery_timeout: Duration = setting(
        "2 minutes", "a record Kafka has not acknowledged after this long (broker gone) is counted failed", min=1,
        max=86400)
    batch_size: int = setting("1048576", "kafka-python batch_size in bytes", min=1024, max=16 * 1024 * 1024)
    compression: str = setting("lz4", "compression of produced batches", choices=("none", "gzip", "lz4"))
    return_ratio: float = setting(
        "0.03", "share of the sales that a return (retour) of some of their units follows", min=0, max=1)
    cancel_ratio: float = setting("0.01", "share of the sales that a cancellation (annulation) follows", min=0,
                                  max=1)


@dataclass(frozen=True)
class AnalyticsSection(Section):
    """Silver's client rules, its schedule, and the upkeep of the tables."""

    loyalty_threshold: int = setting("2", "purchases from which a client is loyal", min=1)
    premium_threshold: float = setting("500", "lifetime spend (EUR) from which a client is Premium", min=0)
    standard_threshold: float = setting(
        "100", "lifetime spend (EUR) from which a client is Standard (at most premium_threshold)", min=0)
    silver_trigger: Duration = setting(
        "1 second", "how often 'streaming_silver.py --continuous' (make demo) looks for new Bronze sales; a batch "
        "longer than this is followed at once by the next", min=0.1, max=3600)
    silver_interval: Duration = setting(
        "30 seconds", "period of 'streaming_silver.py --interval' given without a value", min=1, max=86400)
    bronze_retention_days: int = setting("90", "Bronze partitions older than this are deleted", min=1)
    vacuum_retention: Duration = setting("7 days", "Delta history kept by VACUUM", min=0)
    silver_history: Duration = setting(
        "1 day", "Delta history kept by VACUUM for Silver's tables (a continuous Silver commits a version a "
        "second; Silver is rebuilt from Bronze with --full-refresh)", min=0)
    orphan_timeout: Duration = setting(
        "1 hour", "a return or cancellation still waiting for its sale after this long is reported as an orphan "
        "(it keeps waiting: it is never dropped)", min=1, max=365 * 86400)
    upkeep_interval: Duration = setting(
        "1 hour", "how often the long-running Silver job, and on an s3a:// lake the Bronze stream, run the upkeep "
        "of their own tables (make upkeep does Bronze's on a local lake)", min=1, max=30 * 86400)


@dataclass(frozen=True)
class MonitoringSection(Section):
    """Logs, the live dashboards' refresh, and the Prometheus endpoints of the jobs."""

    log_level: str = setting("INFO", "log level of the project's scripts",
                             choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    dashboard_refresh: Duration = setting(
        "2 seconds", "refresh period of the live dashboards (the demo's terminal view and the web page)", min=0.5,
        max=3600)
    metrics_address: str = setting(
        "127.0.0.1", "address the jobs' Prometheus endpoints (/metrics) listen on; 0.0.0.0 = every interface "
        "(anyone who can reach the machine reads them)", pattern=r"[A-Za-z0-9_.\-:]{1,253}",
        expected="address the jobs' Prometheus endpoints (/metrics) listen on", allowed="a host name or IP address")
    metrics_port_bronze: int = setting("9481", "port of the Bronze stream's /metrics (0: none)", min=0, max=65535)
    metrics_port_silver: int = setting("9482", "port of the Silver job's /metrics (0: none)", min=0, max=65535)
    metrics_port_producer: int = setting("9483", "port of the paced producer's /metrics (0: none)", min=0,
                                         max=65535)
    prometheus_port: int = setting(
        "9090", "port of the Prometheus server make monitoring starts (on metrics_address)", min=1, max=65535)
    scrape_interval: Duration = setting(
        "5 seconds", "how often make monitoring's Prometheus reads the jobs' /metrics and evaluates the alert "
        "rules", min=1, max=3600)


@dataclass(frozen=True)
class DashboardSection(Section):
    """The web dashboard (streamlit_dashboard.py, make dashboard)."""

    address: str = setting(
        "127.0.0.1", "address the web dashboard (streamlit_dashboard.py) listens on; 0.0.0.0 = every interface "
        "(anyone who can reach the machine sees the sales)", pattern=r"[A-Za-z0-9_.\-:]{1,253}",
        expected="address the web dashboard (streamlit_dashboard.py) listens on", allowed="a host name or IP address")
    port: int = setting("8501", "port of the web dashboard", min=1, max=65535)


@dataclass(frozen=True)
class QuerySection(Section):
    """The custom SQL of the menu (query_utils.py, choice 11)."""

    sql_max_rows: int = setting("100", "most rows the menu's custom SQL shows", min=1, max=100_000)
    sql_timeout: Duration = setting("60 seconds", "a custom SQL statement running longer is cancelled", min=1,
                                    max=86400)


@dataclass(frozen=True)
class Config:
    """The validated configuration: one typed attribute per section of config.ini, and the paths resolved
    to absolute ``Path`` objects."""

    source: Path | None  # the file read, or None when every value is a default, a variable or a flag
    base_dir: Path  # relative path settings are read from this folder (the file's)
    kafka: KafkaSection
    spark: SparkSection
    cluster: ClusterSection
    paths: PathsSection
    s3: S3Section
    streaming: StreamingSection
    producer: ProducerSection
    analytics: AnalyticsSection
    monitoring: MonitoringSection
    dashboard: DashboardSection
    query: QuerySection

    @property
    def data_dir(self) -> Path:
        return self.resolve_path(self.paths.data_dir)

    @property
    def cache_dir(self) -> Path:
        return self.resolve_path(self.paths.cache_dir)

    def resolve_path(self, value: str) -> Path:
        """A path setting as an absolute path (relative ones are read from the config file's folder)."""
        return resolve_path(value, self.base_dir)


def _value_type(hint: Any) -> tuple[type, bool]:
    """A field's annotation as (value type, may be empty): ``int | None`` is ``(int, True)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (value_type,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return value_type, True
    return hint, False


def section_options(section: type[Section]) -> dict[str, Option]:
    """The settings of a section class, in the order they are declared."""
    hints = typing.get_type_hints(section)
    options = {}
    for f in fields(section):
        value_type, optional = _value_type(hints[f.name])
        options[f.name] = Option(type=value_type, allow_empty=optional, **f.metadata[_SETTING])
    return options


def _sections() -> dict[str, type[Section]]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)
            if isinstance(hints[f.name], type) and issubclass(hints[f.name], Section)}


# Section name → its class, in the order of Config's fields (and of config.ini).
SECTIONS: Mapping[str, type[Section]] = _sections()

SCHEMA: Mapping[str, Mapping[str, Option]] = {name: section_options(cls) for name, cls in SECTIONS.items()}


def env_var_name(section: str, key: str) -> str:
    """The environment variable that overrides ``[section] key``."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def describe_settings() -> list[tuple[str, str, str, str, str]]:
    """Rows (section, key, default, environment variable, meaning) for documentation."""
    return [(s, k, o.default, env_var_name(s, k), o.help) for s, opts in SCHEMA.items()
            for k, o in opts.items()]
