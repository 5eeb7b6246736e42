"""The one configuration loader: config.ini, then environment variables, then CLI flags.

Every setting is declared once in ``SCHEMA`` with its type, default, allowed range and help text.
``load_config`` reads the file, applies ``LAKEHOUSE_<SECTION>_<KEY>`` environment variables and the
overrides a script collected from its flags, validates everything, and returns a frozen ``Config``.
Anything wrong (unknown section or key, wrong type, out-of-range value, malformed duration) raises
``ConfigError`` whose message names the key, the value and what is allowed; entry points turn it into
exit code 2.
"""

from __future__ import annotations

import configparser
import math
import os
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

ENV_PREFIX = "LAKEHOUSE_"
CONFIG_ENV = "LAKEHOUSE_CONFIG"
PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = PROJECT_DIR / "config.ini"


class ConfigError(ValueError):
    """A configuration value (file, environment or flag) is missing, unknown or invalid."""


# --- value parsers ---------------------------------------------------------------------------------

_DURATION_UNITS = {
    "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


@dataclass(frozen=True)
class Duration:
    """A length of time as written by the user (``10 minutes``), kept in seconds."""

    seconds: float
    text: str

    def spark(self) -> str:
        """The form Spark's watermark and trigger APIs accept, e.g. ``600 seconds``."""
        if self.seconds == int(self.seconds):
            return f"{int(self.seconds)} seconds"
        return f"{int(round(self.seconds * 1000))} milliseconds"

    def __str__(self) -> str:
        return self.text


def parse_duration(text: str) -> Duration:
    """Parse ``<number> <unit>`` (ms, s, min, h, d and their long forms) into a ``Duration``."""
    match = _DURATION_RE.match(text)
    if not match or match.group(2).lower() not in _DURATION_UNITS:
        units = "ms, s, min, h, d (or milliseconds, seconds, minutes, hours, days)"
        raise ValueError(f"expected a duration like '10 minutes' or '500 ms' with a unit among {units}")
    return Duration(float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()], text.strip())


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "on", "1"}:
        return True
    if lowered in {"false", "no", "off", "0"}:
        return False
    raise ValueError("expected true or false")


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError as e:
        raise ValueError("expected a whole number") from e


def _parse_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError as e:
        raise ValueError("expected a number") from e
    if not math.isfinite(value):  # float() takes nan and inf; no setting can use them
        raise ValueError("expected a finite number")
    return value


def _parse_str(text: str) -> str:
    return text.strip()


# Every secret value the loader has read, so that log handlers and captured outputs can mask it.
_SECRET_VALUES: set[str] = set()


class Secret:
    """A value that must not be shown: its ``repr`` and ``str`` are masked; ``reveal()`` gives it to the
    one client that needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value
        remember_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def remember_secret(value: str) -> None:
    """Add ``value`` to the values ``redact`` masks (the logging filter of the entry points uses it).
    Values shorter than 4 characters are not masked: they would mangle every line and reveal nothing."""
    if len(value) >= 4:
        _SECRET_VALUES.add(value)


def redact(text: str) -> str:
    """``text`` with every secret read so far replaced by ``***``."""
    for value in sorted(_SECRET_VALUES, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


_PARSERS: dict[type, Callable[[str], Any]] = {
    bool: _parse_bool, int: _parse_int, float: _parse_float, str: _parse_str, Duration: parse_duration,
    # A password is taken exactly as given: spaces at either end are part of it.
    Secret: Secret,
}


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
        value = _PARSERS[self.type](raw)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ValueError(f"expected {self.help.split(';')[0]}")
        number = value.seconds if isinstance(value, Duration) else value
        if self.min is not None and number < self.min:
            raise ValueError(f"expected at least {_fmt_bound(self, self.min)}")
        if self.max is not None and number > self.max:
            raise ValueError(f"expected at most {_fmt_bound(self, self.max)}")
        if self.check is not None:
            self.check(value)
        return value


def _fmt_bound(option: Option, bound: float) -> str:
    if option.type is Duration:
        return f"{bound:g} seconds"
    return f"{bound:g}"


_HOSTPORTS = r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}(,[A-Za-z0-9_.\-\[\]:]+:\d{1,5})*"
# What SparkSession.builder.master and spark-submit --master accept.
_SPARK_MASTER = (r"local(\[(\*|[1-9]\d*)(,\s*[1-9]\d*)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]"
                 r"|spark://[^\s:/]+:\d{1,5}(,[^\s:/]+:\d{1,5})*|yarn|k8s://\S+")


def _check_ports(value: str) -> None:
    for address in value.split(","):
        port = int(address.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} of {address} is not between 1 and 65535")


def _check_lake(value: str) -> None:
    """``[paths] lake``: a folder, or ``s3a://bucket[/prefix]`` (bucket names as S3 allows them)."""
    if "://" not in value:
        return
    if not value.startswith("s3a://"):
        raise ValueError("expected a folder or an s3a://bucket/prefix URI (the S3A connector's scheme)")
    bucket, _, prefix = value[len("s3a://"):].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise ValueError(f"bucket {bucket!r}: expected 3-63 lower-case letters, digits, dots or hyphens")
    parts = prefix.strip("/").split("/") if prefix.strip("/") else []
    if any(part in ("", ".", "..") or not re.fullmatch(r"[A-Za-z0-9._\-]+", part) for part in parts):
        raise ValueError("the prefix after the bucket: expected folder names of letters, digits, '.', '_', '-'")


def _check_timezone(value: str) -> None:
    # Spark takes region ids (Europe/Paris, UTC) and fixed offsets (+01:00); anything else fails only
    # when the first timestamp is read.
    if re.fullmatch(r"[+-](0\d|1[0-8]):[0-5]\d", value):
        return
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError("expected a time zone id such as UTC or Europe/Paris, or an offset such as "
                         "+01:00") from e

def _check_naive_timezone(value: str) -> None:
    if value in ("local", "reject"):
        return
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError("expected local, reject, or a time zone id such as Europe/Paris or UTC") from e


def local_zone_name(env: Mapping[str, str] | None = None) -> str | None:
    """This machine's IANA time zone name ($TZ, /etc/timezone, or where /etc/localtime links), or None
    when none of them names a zone Python knows."""
    env = os.environ if env is None else env
    candidates = [env.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        candidates.append(target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "")
    except OSError:
        pass
    for name in candidates:
        if name and not name.startswith("/"):
            try:
                zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
            return name
    return None


SCHEMA: Mapping[str, Mapping[str, Option]] = {
    "kafka": {
        "bootstrap_servers": Option(str, "localhost:9092", "host:port[,host:port...] of the Kafka brokers",
                                    pattern=_HOSTPORTS, check=_check_ports),
        "topic": Option(str, "ventes_stream", "topic the sales events flow through",
                        pattern=r"[A-Za-z0-9._\-]{1,249}"),
        "partitions": Option(int, "3", "partition count used when the topic is created", min=1, max=1000),
        "replication_factor": Option(int, "1", "replication factor used when the topic is created",
                                     min=1, max=10),
        "connect_timeout": Option(Duration, "10 seconds", "how long clients wait for the broker to answer",
                                  min=0.1, max=600),
        "broker_version": Option(str, "4.4.0", "Apache Kafka version of the local broker's jars",
                                 pattern=r"4\.\d+\.\d+"),
        "controller_port": Option(int, "9093", "KRaft controller port of the local broker", min=1,
                                  max=65535),
        "broker_heap": Option(str, "512m", "JVM heap of the local broker (-Xmx)", pattern=r"\d+[mMgG]"),
        "broker_start_timeout": Option(Duration, "60 seconds",
                                       "how long 'kafka_local start' waits for the broker", min=1, max=600),
        "security_protocol": Option(str, "PLAINTEXT", "PLAINTEXT (no TLS, no authentication) or SASL_SSL "
                                    "(TLS and SCRAM authentication) between the clients and the broker; "
                                    "the local broker is started the same way",
                                    choices=("PLAINTEXT", "SASL_SSL")),
        "sasl_mechanism": Option(str, "SCRAM-SHA-512", "SASL mechanism with SASL_SSL",
                                 choices=("SCRAM-SHA-512",)),
        "username": Option(str, "", "SCRAM user name (letters, digits, . _ @ -) of the clients with "
                           "SASL_SSL; the local broker creates it", allow_empty=True,
                           pattern=r"[A-Za-z0-9._@\-]{1,128}"),
        "password": Option(Secret, "", "SCRAM password of [kafka] username; from the environment only, "
                           "never in config.ini or on a command line", allow_empty=True, env_only=True),
        "ssl_cafile": Option(str, "", "PEM file of the CA that signed the broker's TLS certificate, with "
                             "SASL_SSL (empty = the local broker's own CA, <data_dir>/kafka/tls/ca.pem)",
                             allow_empty=True),
    },
    "spark": {
        "master": Option(str, "local[*]", "Spark master when not launched by spark-submit; local, "
                         "local[N], local[*], spark://host:port, yarn or k8s://...", pattern=_SPARK_MASTER),
        "timezone": Option(str, "UTC", "session time zone (naive timestamps are read in it)",
                           check=_check_timezone),
        "shuffle_partitions": Option(int, "4", "spark.sql.shuffle.partitions", min=1, max=10000),
        "driver_memory": Option(str, "2g", "driver JVM memory when started from python",
                                pattern=r"\d+[mMgG]"),
        "log_level": Option(str, "WARN", "Spark's own log level",
                            choices=("ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")),
        "ui_enabled": Option(bool, "false", "start the Spark web UI"),
        "bind_address": Option(str, "127.0.0.1", "address a local-mode driver (its RPC, block manager and "
                               "UI ports) listens on; empty = Spark's default (every interface)",
                               allow_empty=True),
        "jars_repositories": Option(str, "", "extra Maven repositories (comma-separated URLs) for the "
                                    "Kafka and Delta jars, e.g. a company mirror", allow_empty=True),
        "executor_wait": Option(Duration, "60 seconds", "on a spark:// master: how long a job may go without any "
                                "executor (workers gone, or every core taken) before it stops with an error",
                                min=5, max=86400),
        "cores_max": Option(int, "", "spark.cores.max of each job on a spark:// master: the cores one job may "
                            "take, so that the Bronze stream and Silver both get some (empty = all)",
                            allow_empty=True, min=1, max=100_000),
        "jars_on_workers": Option(bool, "false", "on a spark:// master whose workers read this machine's jar "
                                  "cache at the same path (the local cluster, or nodes sharing that folder): "
                                  "executors load the jars from there instead of a copy for each job"),
    },
    "cluster": {
        "s3proxy_version": Option(str, "4.0.0", "version of s3proxy (org.gaul:s3proxy), the local object store "
                                  "(python -m lakehouse.platform.object_store)", pattern=r"\d+\.\d+\.\d+"),
        "spark_master_port": Option(int, "7077", "port of the local Spark standalone master "
                                    "(python -m lakehouse.platform.spark_cluster)", min=1, max=65535),
        "spark_workers": Option(int, "2", "workers of the local Spark standalone cluster", min=1, max=16),
        "spark_worker_cores": Option(int, "1", "cores each local Spark worker offers", min=1, max=256),
        "spark_worker_memory": Option(str, "1g", "memory each local Spark worker offers (an executor takes "
                                      "1g by default)", pattern=r"\d+[mMgG]"),
        "start_timeout": Option(Duration, "60 seconds", "how long the local cluster's processes may take to "
                                "start", min=1, max=600),
        "kafka_nodes": Option(int, "3", "nodes (combined KRaft broker and controller) of the local Kafka cluster "
                              "(python -m lakehouse.platform.kafka_cluster)", min=3, max=9),
        "kafka_base_port": Option(int, "9192", "first port of the local Kafka cluster: node N listens for clients "
                                  "on base + 2(N-1) and for its controller on the next port", min=1024,
                                  max=65535 - 2 * 9 + 1),
        "kafka_node_heap": Option(str, "384m", "JVM heap of each node of the local Kafka cluster (-Xmx)",
                                  pattern=r"\d+[mMgG]"),
    },
    "paths": {
        "data_dir": Option(str, "./data", "root of all data (tables, checkpoints, broker data, logs); "
                           "relative paths are resolved against the config file's folder"),
        "cache_dir": Option(str, "./.cache", "downloaded jars (Kafka broker, Spark's Ivy cache); "
                            "relative paths are resolved against the config file's folder"),
        "lake": Option(str, "", "where the Delta tables and streaming checkpoints live: empty = <data_dir>, "
                       "a folder, or s3a://bucket/prefix on S3-compatible object storage (see [s3])",
                       allow_empty=True, check=_check_lake),
    },
    "s3": {
        "endpoint": Option(str, "http://127.0.0.1:8555", "URL of the S3-compatible object store of an s3a:// "
                           "lake (the local one: python -m lakehouse.platform.object_store); empty = AWS",
                           allow_empty=True, pattern=r"https?://[A-Za-z0-9_.\-\[\]:]+(:\d{1,5})?/?"),
        "region": Option(str, "us-east-1", "region of the object store", pattern=r"[a-z0-9\-]{1,32}"),
        "path_style_access": Option(bool, "true", "address buckets as <endpoint>/<bucket> (most S3-compatible "
                                    "stores) rather than <bucket>.<endpoint>"),
        "access_key": Option(str, "lakehouse", "access key id of the lake's object store",
                             pattern=r"[A-Za-z0-9._\-]{3,128}"),
        "secret_key": Option(Secret, "", "secret access key of the object store; from the environment only "
                             "(LAKEHOUSE_S3_SECRET_KEY), never in config.ini or on a command line",
                             allow_empty=True, env_only=True),
    },
    "streaming": {
        "starting_offsets": Option(str, "earliest", "where a first start reads the topic from",
                                   choices=("earliest", "latest")),
        "fail_on_data_loss": Option(bool, "true", "stop when Kafka offsets were lost (e.g. retention)"),
        "trigger_interval": Option(Duration, "1 second", "processing-time trigger of the Bronze stream",
                                   min=0, max=3600),
        "max_offsets_per_trigger": Option(int, "100000", "upper bound of records per micro-batch",
                                          min=1),
        "metrics_interval": Option(Duration, "10 seconds", "how often the Bronze stream appends its batches' "
                                   "figures to the metrics table (0 = with every batch, one more commit each)",
                                   min=0, max=3600),
        "watermark_delay": Option(Duration, "10 minutes", "late-data tolerance and duplicate window",
                                  min=0, max=7 * 86400),
        "max_event_bytes": Option(int, "65536", "largest accepted Kafka value; larger is quarantined",
                                  min=256, max=10 * 1024 * 1024),
        "max_quantite": Option(int, "100000", "largest accepted quantite; larger is quarantined "
                               "(bad_quantity)", min=1, max=2 ** 31 - 1),
        "max_future_skew": Option(Duration, "5 minutes", "how far a sale's event time may be ahead of its "
                                  "Kafka timestamp; further is quarantined (future_event)", min=0, max=7 * 86400),
        "max_event_age": Option(Duration, "365 days", "how far a sale's event time may be behind its Kafka "
                                "timestamp; further is quarantined (stale_event)", min=60, max=100 * 365 * 86400),
        "naive_timezone": Option(str, "local", "how a sale's timestamp without offset (2024-12-12T10:15:25) is "
                                 "read: local (this machine's time zone, found when the configuration is "
                                 "loaded; UTC if it cannot be found), a time zone id such as Europe/Paris, or "
                                 "reject (quarantined as bad_timestamp)", check=_check_naive_timezone),
        "broker_timeout": Option(Duration, "30 seconds", "how long the stream waits for an unreachable "
                                 "Kafka broker before it stops with an error", min=1, max=3600),
    },
    "producer": {
        "rate": Option(float, "0.5", "events per second (0.5 = one sale every 2 seconds)", min=0.001,
                       max=1_000_000),
        "seed": Option(int, "", "random seed of the events (empty = a new one each run)",
                       allow_empty=True, min=0),
        "pool_seed": Option(int, "1", "seed of the client pool: a client id is the same client (name, "
                            "country, city, segment) in every run while it is unchanged", min=0),
        "clients": Option(int, "500", "size of the simulated client pool", min=1, max=1_000_000),
        "linger_ms": Option(int, "50", "kafka-python linger_ms (batching delay)", min=0, max=10_000),
        "delivery_timeout": Option(Duration, "2 minutes", "a record Kafka has not acknowledged after this "
                                   "long (broker gone) is counted failed", min=1, max=86400),
        "batch_size": Option(int, "1048576", "kafka-python batch_size in bytes", min=1024,
                             max=16 * 1024 * 1024),
        "compression": Option(str, "lz4", "compression of produced batches",
                              choices=("none", "gzip", "lz4")),
        "return_ratio": Option(float, "0.03", "share of the sales that a return (retour) of some of their units "
                               "follows", min=0, max=1),
        "cancel_ratio": Option(float, "0.01", "share of the sales that a cancellation (annulation) follows",
                               min=0, max=1),
    },
    "analytics": {
        "loyalty_threshold": Option(int, "2", "purchases from which a client is loyal", min=1),
        "premium_threshold": Option(float, "500", "lifetime spend (EUR) from which a client is Premium",
                                    min=0),
        "standard_threshold": Option(float, "100", "lifetime spend (EUR) from which a client is Standard",
                                     min=0),
        "silver_trigger": Option(Duration, "1 second", "how often 'streaming_silver.py --continuous' (make demo) "
                                 "looks for new Bronze sales; a batch longer than this is followed at once "
                                 "by the next", min=0.1, max=3600),
        "silver_interval": Option(Duration, "30 seconds", "period of "
                                  "'streaming_silver.py --interval' given without a value", min=1, max=86400),
        "bronze_retention_days": Option(int, "90", "Bronze partitions older than this are deleted", min=1),
        "vacuum_retention": Option(Duration, "7 days", "Delta history kept by VACUUM", min=0),
        "silver_history": Option(Duration, "1 day", "Delta history kept by VACUUM for Silver's tables (a continuous "
                                 "Silver commits a version a second; Silver is rebuilt from Bronze with "
                                 "--full-refresh)", min=0),
        "orphan_timeout": Option(Duration, "1 hour", "a return or cancellation still waiting for its sale after "
                                 "this long is reported as an orphan (it keeps waiting: it is never dropped)",
                                 min=1, max=365 * 86400),
        "upkeep_interval": Option(Duration, "1 hour", "how often the long-running Silver job, and on an s3a:// "
                                  "lake the Bronze stream, run the upkeep of their own tables (make upkeep does "
                                  "Bronze's on a local lake)", min=1, max=30 * 86400),
    },
    "monitoring": {
        "log_level": Option(str, "INFO", "log level of the project's scripts",
                            choices=("DEBUG", "INFO", "WARNING", "ERROR")),
        "dashboard_refresh": Option(Duration, "2 seconds", "refresh period of the live dashboards (the "
                                    "demo's terminal view and the web page)", min=0.5, max=3600),
        "metrics_address": Option(str, "127.0.0.1", "address the jobs' Prometheus endpoints (/metrics) listen "
                                  "on; 0.0.0.0 = every interface (anyone who can reach the machine reads them)",
                                  pattern=r"[A-Za-z0-9_.\-:]{1,253}"),
        "metrics_port_bronze": Option(int, "9481", "port of the Bronze stream's /metrics (0: none)", min=0,
                                      max=65535),
        "metrics_port_silver": Option(int, "9482", "port of the Silver job's /metrics (0: none)", min=0,
                                      max=65535),
        "metrics_port_producer": Option(int, "9483", "port of the paced producer's /metrics (0: none)", min=0,
                                        max=65535),
        "prometheus_port": Option(int, "9090", "port of the Prometheus server make monitoring starts (on "
                                  "metrics_address)", min=1, max=65535),
        "scrape_interval": Option(Duration, "5 seconds", "how often make monitoring's Prometheus reads the jobs' "
                                  "/metrics and evaluates the alert rules", min=1, max=3600),
    },
    "dashboard": {
        "address": Option(str, "127.0.0.1", "address the web dashboard (streamlit_dashboard.py) listens on; "
                          "0.0.0.0 = every interface (anyone who can reach the machine sees the sales)",
                          pattern=r"[A-Za-z0-9_.\-:]{1,253}"),
        "port": Option(int, "8501", "port of the web dashboard", min=1, max=65535),
    },
    "query": {
        "sql_max_rows": Option(int, "100", "most rows the menu's custom SQL shows", min=1, max=100_000),
        "sql_timeout": Option(Duration, "60 seconds", "a custom SQL statement running longer is cancelled",
                              min=1, max=86400),
    },
}


def env_var_name(section: str, key: str) -> str:
    """The environment variable that overrides ``[section] key``."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


_ENV_TO_KEY = {env_var_name(s, k): (s, k) for s, opts in SCHEMA.items() for k in opts}


class Section:
    """Read-only attribute access to one validated section."""

    def __init__(self, name: str, values: Mapping[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError as e:
            raise AttributeError(f"[{self._name}] has no key {key!r}") from e

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("configuration is read-only")

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


@dataclass(frozen=True)
class Config:
    """The validated configuration, with paths resolved to absolute ``Path`` objects."""

    source: Path | None
    sections: Mapping[str, Section]
    base_dir: Path

    def __getattr__(self, name: str) -> Section:
        sections = object.__getattribute__(self, "sections")
        if name in sections:
            return sections[name]
        raise AttributeError(name)

    @property
    def data_dir(self) -> Path:
        return self._resolve(self.sections["paths"].data_dir)

    @property
    def cache_dir(self) -> Path:
        return self._resolve(self.sections["paths"].cache_dir)

    def resolve_path(self, value: str) -> Path:
        """A path setting as an absolute path (relative ones are read from the config file's folder)."""
        return self._resolve(value)

    def _resolve(self, value: str) -> Path:
        return _resolve_path(value, self.base_dir)


def _resolve_path(value: str, base_dir: Path) -> Path:
    path = Path(os.path.expanduser(value.strip()))
    return path if path.is_absolute() else (base_dir / path).resolve()


def _check(section: str, key: str, raw: str, origin: str) -> Any:
    option = SCHEMA[section][key]
    try:
        return option.parse(raw)
    except ValueError as e:
        shown = "'***'" if option.type is Secret else repr(raw)
        raise ConfigError(f"{origin}: [{section}] {key} = {shown} is invalid: {e}") from e


def _env_only_error(section: str, key: str, where: str) -> ConfigError:
    return ConfigError(f"{where}: [{section}] {key} is read from the environment only (a secret): set "
                       f"{env_var_name(section, key)} instead")


def read_config_text(path: Path) -> str:
    """The configuration file's text: UTF-8, with or without a byte order mark; ``ConfigError`` in one line
    naming the file and the problem for anything else (a Latin-1 byte, UTF-16, an unreadable file)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror or e}") from e
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{path}: is saved as UTF-16; save it as UTF-8 (most editors: 'Save with encoding')")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: is not UTF-8 text: byte 0x{data[e.start]:02x} on line {line} (Latin-1 or "
                          "Windows-1252?); save it as UTF-8") from e


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, str], Any] | None = None,
) -> Config:
    """Read and validate the configuration.

    ``path`` defaults to ``$LAKEHOUSE_CONFIG`` then to the project's config.ini (a missing default file
    means all defaults). ``env`` defaults to ``os.environ``. ``overrides`` maps ``(section, key)`` to
    values from CLI flags (``None`` entries are ignored, so unset flags can be passed through as is).
    """
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get(CONFIG_ENV))
    config_path = Path(path if path is not None else env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    raw: dict[str, dict[str, tuple[str, str]]] = {
        s: {k: (o.default, "default") for k, o in opts.items()} for s, opts in SCHEMA.items()
    }

    source: Path | None = None
    if config_path.exists():
        source = config_path.resolve()
        parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
        try:
            parser.read_string(read_config_text(config_path), source=str(config_path))
        except configparser.Error as e:
            raise ConfigError(f"{config_path}: cannot be parsed: {e}") from e
        for section in parser.sections():
            if section not in SCHEMA:
                raise ConfigError(f"{config_path}: unknown section [{section}]; allowed sections: "
                                  f"{', '.join(SCHEMA)}")
            for key, value in parser.items(section):
                if key not in SCHEMA[section]:
                    raise ConfigError(f"{config_path}: unknown key [{section}] {key!r}; allowed keys: "
                                      f"{', '.join(SCHEMA[section])}")
                if SCHEMA[section][key].env_only:
                    raise _env_only_error(section, key, str(config_path))
                raw[section][key] = (value, str(config_path))
    elif explicit:
        raise ConfigError(f"config file {config_path} does not exist")

    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        if name not in _ENV_TO_KEY:
            raise ConfigError(f"environment variable {name} is not a known setting; names look like "
                              f"{ENV_PREFIX}<SECTION>_<KEY>, e.g. {env_var_name('kafka', 'topic')}")
        section, key = _ENV_TO_KEY[name]
        raw[section][key] = (value, f"environment {name}")

    for (section, key), value in (overrides or {}).items():
        if value is None:
            continue
        if section not in SCHEMA or key not in SCHEMA[section]:
            raise ConfigError(f"override of unknown setting [{section}] {key}")
        if SCHEMA[section][key].env_only:
            raise _env_only_error(section, key, "command line")
        raw[section][key] = (str(value), "command line")

    values = {s: {k: _check(s, k, text, origin) for k, (text, origin) in keys.items()} for s, keys in raw.items()}
    if values["streaming"]["naive_timezone"] == "local":  # resolved once, here: every reader sees one zone
        values["streaming"]["naive_timezone"] = local_zone_name(env) or "UTC"
    sections = {s: Section(s, keys) for s, keys in values.items()}
    for key in ("data_dir", "cache_dir"):
        text, origin = raw["paths"][key]
        folder = _resolve_path(text, source.parent if source is not None else PROJECT_DIR)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{origin}: [paths] {key} = {text!r} is invalid: {folder} is a file, "
                              "expected a folder (or a path that does not exist yet)")
    lake = sections["paths"].lake or ""
    if lake.startswith("s3a://") and sections["s3"].secret_key is None:
        raise ConfigError(f"[paths] lake = {lake!r} is on object storage, and its secret key is not set: export "
                          "LAKEHOUSE_S3_SECRET_KEY (it is read from the environment only)")
    analytics = sections["analytics"]
    if analytics.standard_threshold > analytics.premium_threshold:
        raise ConfigError(
            f"[analytics] standard_threshold = {analytics.standard_threshold:g} is invalid: expected at most "
            f"premium_threshold ({analytics.premium_threshold:g})")
    base_dir = source.parent if source is not None else PROJECT_DIR
    return Config(source=source, sections=MappingProxyType(sections), base_dir=base_dir)


def describe_settings() -> list[tuple[str, str, str, str, str]]:
    """Rows (section, key, default, environment variable, meaning) for documentation."""
    return [(s, k, o.default, env_var_name(s, k), o.help) for s, opts in SCHEMA.items()
            for k, o in opts.items()]
