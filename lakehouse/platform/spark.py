"""The one SparkSession factory: Delta Lake and the Kafka source, sized for a small machine."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from py4j.java_gateway import JVMView
from py4j.protocol import Py4JJavaError
from pyspark import SparkConf
from pyspark.sql import SparkSession

from lakehouse.platform.config import Config, ConfigError
from lakehouse.platform.lake import S3Settings, on_object_storage
from lakehouse.platform.local_fs import local_fs_jar, local_fs_settings
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark_jars import JarResolutionError, beside_spark, listing_file, resolve_jars, spark_packages

log = logging.getLogger(__name__)

EXIT_NO_EXECUTOR = 1
REQUIRED_CLASSES = {
    "org.apache.spark.sql.delta.catalog.DeltaCatalog": "Delta Lake",
    "org.apache.spark.sql.kafka010.KafkaSourceProvider": "the Kafka source",
}


# Spark's writer of a stream's checkpoint files through Hadoop's FileSystem API, instead of its default
# through FileContext (see local_checkpoint_settings).
FILE_SYSTEM_CHECKPOINT_FILES = \
    "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"


def local_checkpoint_settings(object_storage: bool) -> dict[str, str]:
    """Spark settings for streams whose checkpoints are on this machine's disk.

    Each trigger of a stream writes two small files into its checkpoint (the offsets it will read, then its
    commit). Spark's default writer, Hadoop's FileContext, resolves symbolic links on a local disk by running
    ``readlink`` in a child process, about eight times per file, which made those two files (Spark's
    walCommit and commitOffsets) a large share of a small Bronze trigger; the FileSystem-based writer starts
    no process. It also writes a temporary file and renames it into place, which is atomic on a local file
    system, and refuses to replace a batch's file that exists (it checks before the rename). On object
    storage, with no local links to resolve, Spark's default stays."""
    if object_storage:
        return {}
    return {"spark.sql.streaming.checkpointFileManagerClass": FILE_SYSTEM_CHECKPOINT_FILES}


class SparkSetupError(RuntimeError):
    """Spark started without the jars or settings this project needs."""


def spark_submit_options(cfg: Config) -> list[str]:
    """The spark-submit options that give a job the same jars and Delta settings as ``build_spark``."""
    options = ["--packages", ",".join(spark_packages(on_object_storage(cfg))),
               "--conf", f"spark.jars.ivy={Paths.from_config(cfg).ivy_dir}"]
    if cfg.spark.jars_repositories:
        options += ["--repositories", cfg.spark.jars_repositories]
    return options


def _spark_submit_master() -> str | None:
    """The master spark-submit started the job with, or None when it was started with ``python``."""
    # Under spark-submit the JVM exists before Python runs, and SparkConf() sees its spark.* settings.
    return SparkConf().get("spark.master")


def session_jvm(spark: SparkSession) -> JVMView:
    """The driver JVM's view of a running session (PySpark types it optional: it has none before a context
    starts)."""
    jvm = spark.sparkContext._jvm
    if jvm is None:
        raise RuntimeError("The Spark session has no JVM (its context is not running)")
    return jvm


Builder = SparkSession.Builder

# --- the session's set-up, in steps: each takes a builder and gives it back configured (as delta's
# configure_spark_with_delta_pip does), so that build_spark reads as the list of what a job's Spark gets.


def with_delta(builder: Builder) -> Builder:
    """Delta Lake's SQL extension and catalog (its jars come from ``with_jars`` or spark-submit)."""
    return (builder.config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
            .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"))


def with_job_settings(builder: Builder, cfg: Config) -> Builder:
    """What every job of the project runs with: ``[spark]``'s time zone, partitions and UI, sized for a small
    machine, and the formats other engines read."""
    return (
        builder.config("spark.sql.session.timeZone", cfg.spark.timezone)
        .config("spark.sql.shuffle.partitions", str(cfg.spark.shuffle_partitions))
        .config("spark.ui.enabled", str(cfg.spark.ui_enabled).lower())
        # Small tables and a 2-core machine: avoid the 200-task defaults and adaptive coalescing noise.
        .config("spark.default.parallelism", str(cfg.spark.shuffle_partitions))
        # Delta reads its log with 50 tasks by default; a handful is faster for tables of this size.
        .config("spark.databricks.delta.snapshotPartitions", str(cfg.spark.shuffle_partitions))
        # Progress bars would garble the logs and the dashboards printed on the same terminal.
        .config("spark.ui.showConsoleProgress", "false")
        # Timestamps as Parquet TIMESTAMP_MICROS (Spark's default is the legacy INT96, which other
        # engines such as delta-rs read badly or not at all).
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        # The Bronze contract check names duplicate keys itself (try_parse_json would otherwise give
        # NULL for them, like for text that is not JSON).
        .config("spark.sql.variant.allowDuplicateKeys", "true")
    )


def with_settings(builder: Builder, settings: dict[str, str]) -> Builder:
    """Each of ``settings`` on the builder."""
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder


def with_checkpoint_files(builder: Builder, object_storage: bool) -> Builder:
    """The stream checkpoints' file writer (``local_checkpoint_settings``)."""
    return with_settings(builder, local_checkpoint_settings(object_storage))


def with_local_address(builder: Builder, address: str) -> Builder:
    """A local job's ports (driver RPC, block manager) on ``address`` only: they serve no one else. (Cluster
    masters need the driver reachable by executors, so they keep Spark's default.)"""
    return builder.config("spark.driver.bindAddress", address).config("spark.driver.host", address)


def export_local_ip(address: str) -> None:
    """Put ``SPARK_LOCAL_IP=address`` in this process's environment, for the web UI (when enabled).

    Spark's web UI binds to the address in the ``SPARK_LOCAL_IP`` environment variable, or to every
    interface without it (``WebUI.initServer`` reads it with ``System.getenv``): no Spark setting names that
    address, so neither the builder's config nor a spark-submit ``--conf`` can carry it. PySpark starts the
    driver's JVM with a copy of this process's environment and no way to add to it, so the variable has to
    be in ``os.environ`` before the session starts (and the processes this one starts afterwards inherit it).
    Under spark-submit the JVM exists already: nothing is exported there."""
    os.environ["SPARK_LOCAL_IP"] = address


def with_object_storage(builder: Builder, cfg: Config) -> Builder:
    """The S3A connector's settings for a lake on S3-compatible storage (the secret from the environment);
    SparkSetupError when they are incomplete."""
    try:
        s3a = S3Settings.from_config(cfg).hadoop_options()
    except ConfigError as e:
        raise SparkSetupError(str(e)) from e
    return with_settings(builder, {f"spark.hadoop.{key}": value for key, value in s3a.items()})


def with_cores_max(builder: Builder, cores: int) -> Builder:
    """A standalone master gives a job every free core unless told: leave some to the other job."""
    return builder.config("spark.cores.max", str(cores))


def with_master(builder: Builder, cfg: Config, paths: Paths) -> Builder:
    """``[spark]``'s master and driver memory, and the jar cache's Ivy directory (spark-submit sets them
    itself)."""
    return (builder.master(cfg.spark.master).config("spark.driver.memory", cfg.spark.driver_memory)
            .config("spark.jars.ivy", str(paths.ivy_dir)))


def with_local_file_system(builder: Builder, paths: Paths) -> Builder:
    """Hadoop's local file system without its ``chmod`` and ``readlink`` processes (``local_fs``), compiled into
    the cache on first use; Hadoop's own class when there is no Java compiler or the cache cannot be written
    (``local_fs_jar`` logs why). For local mode only, when PySpark starts the driver's JVM: that JVM writes
    every file, so the class needs no shipping to executors (spark-submit starts the JVM before Python runs,
    without the class)."""
    jar = local_fs_jar(paths.cache_dir)
    return with_settings(builder, local_fs_settings(jar)) if jar else builder


def with_jars(builder: Builder, cfg: Config, paths: Paths, on_cluster: bool, verbose: bool = False) -> Builder:
    """The Delta and Kafka jars (and the S3 connector's, for a lake on object storage), resolved once through
    Spark's Ivy into the cache (``spark_jars``): SparkSetupError, naming the spark-submit options, when they
    cannot be."""
    packages = spark_packages(on_object_storage(cfg))
    try:
        jars = resolve_jars(paths, packages, cfg.spark.jars_repositories, verbose)
    except JarResolutionError as e:
        raise SparkSetupError(f"Spark could not start with Delta and the Kafka source ({e}). With "
                              f"spark-submit, pass: {' '.join(spark_submit_options(cfg))}") from e
    if on_cluster and cfg.spark.jars_on_workers:
        # The workers read the jar cache where this machine does: the driver and the executors load the
        # jars from it, and no executor receives a copy of its own (hundreds of MB with the S3 connector).
        classpath = os.pathsep.join(beside_spark(jars, listing_file(paths, packages, cfg.spark.jars_repositories)))
        return (builder.config("spark.driver.extraClassPath", classpath)
                .config("spark.executor.extraClassPath", classpath))
    return builder.config("spark.jars", ",".join(jars))


def start_session(builder: Builder, cfg: Config) -> SparkSession:
    """``getOrCreate``, a JVM that fails to start (jar resolution, class loading) as SparkSetupError."""
    try:
        return builder.getOrCreate()
    except Exception as e:  # py4j surfaces JVM failures (jar resolution, class loading) as plain errors
        raise SparkSetupError(
            f"Spark could not start with Delta and the Kafka source ({e.__class__.__name__}: "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}). With spark-submit, pass: "
            f"{' '.join(spark_submit_options(cfg))}") from e


def build_spark(cfg: Config, app_name: str, verbose: bool = False) -> SparkSession:
    """Create (or return) the SparkSession with Delta and the Kafka source configured.

    Started with ``python``, the session gets the jars resolved once through Spark's Ivy into the cache
    directory (see ``spark_jars``; Ivy's output goes to data/logs/spark-jars.log unless ``verbose``).
    Started with ``spark-submit``, the jars must come from ``--packages`` (see ``spark_submit_options``);
    master and memory then come from spark-submit too.
    """
    submitted_master = _spark_submit_master()
    submitted = submitted_master is not None
    master = cfg.spark.master if submitted_master is None else submitted_master
    on_cluster, object_storage, paths = master.startswith("spark://"), on_object_storage(cfg), Paths.from_config(cfg)
    builder = with_job_settings(with_delta(SparkSession.builder.appName(app_name)), cfg)
    builder = with_checkpoint_files(builder, object_storage)
    if master.startswith("local") and cfg.spark.bind_address:
        builder = with_local_address(builder, cfg.spark.bind_address)
        if not submitted:
            export_local_ip(cfg.spark.bind_address)
    if object_storage:
        builder = with_object_storage(builder, cfg)
    if on_cluster and cfg.spark.cores_max is not None:
        builder = with_cores_max(builder, cfg.spark.cores_max)
    if not submitted:
        builder = with_master(builder, cfg, paths)
        if not on_cluster and "PYSPARK_GATEWAY_PORT" not in os.environ:
            builder = with_local_file_system(builder, paths)
        builder = with_jars(builder, cfg, paths, on_cluster, verbose)
    spark = start_session(builder, cfg)
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    route_jvm_logs(spark, jvm_log_file(paths, app_name))
    quiet_query_context_loggers(cfg.monitoring.log_level)
    check_jars(spark, cfg)
    if on_cluster:
        ExecutorWatchdog(spark, master, cfg.spark.executor_wait.seconds).start()
    return spark


class ExecutorWatchdog(threading.Thread):
    """On a cluster master, a job left without any executor (every worker gone, or every core taken by other
    jobs) waits for ever: Spark neither fails its tasks nor lets a stream stop, even on SIGTERM. This thread
    looks every second; after ``limit_s`` without an executor it says so in one line and ends the process and
    the driver's JVM (as a SIGKILL would: nothing is lost, the batch in flight was not committed, and the next
    start runs it again from the checkpoint)."""

    def __init__(self, spark: SparkSession, master: str, limit_s: float, exit=os._exit):
        super().__init__(name="lakehouse-executor-watchdog", daemon=True)
        self.spark, self.master, self.limit_s, self.exit = spark, master, limit_s, exit

    def executors(self) -> int:
        # The block managers the driver knows: its own and one per executor.
        return self.spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1

    def run(self) -> None:
        since = time.monotonic()
        while True:
            time.sleep(1)
            try:
                if self.executors() > 0:
                    since = time.monotonic()
                    continue
            except Exception:  # noqa: BLE001 - the session is stopping: nothing left to watch
                return
            if time.monotonic() - since >= self.limit_s:
                log.error("No Spark executor for %g s on %s (its workers are gone, or other jobs hold every core: "
                          "[spark] cores_max): stopping. Nothing is lost: start the workers, then this job again.",
                          self.limit_s, self.master)
                for handler in logging.getLogger().handlers:
                    handler.flush()
                # The JVM first, at once: left to notice its Python parent gone, it prints the stack traces of
                # every call that was waiting on it.
                jvm = getattr(self.spark.sparkContext._gateway, "proc", None)
                if jvm is not None:
                    jvm.kill()
                self.exit(EXIT_NO_EXECUTOR)
                return


JVM_LOG_APPENDER = "lakehouse-spark-log"


def jvm_log_file(paths: Paths, app_name: str) -> Path:
    """Where a job's Spark log lines go (``data/logs/spark-<app>.log``)."""
    return paths.logs_dir / f"spark-{app_name}.log"


def route_jvm_logs(spark: SparkSession, log_file: Path) -> None:
    """Spark's own log lines (log4j2, at ``[spark] log_level``) go to ``log_file`` instead of the terminal.

    The user reads the job's one clear line when something stops it; Spark's ERROR lines and their Java
    stack traces (a failed streaming query: dozens to hundreds of lines; a task that failed in the SQL
    console) are for the log file, which keeps every line. Every console appender is taken off every
    logger; the file appender goes on the root logger."""
    jvm = session_jvm(spark)
    core = jvm.org.apache.logging.log4j.core
    log_file.parent.mkdir(parents=True, exist_ok=True)
    context = jvm.org.apache.logging.log4j.LogManager.getContext(False)
    config = context.getConfiguration()
    if config.getAppender(JVM_LOG_APPENDER) is not None:  # a session built again in this process
        config.removeAppender(JVM_LOG_APPENDER)
    layout = (core.layout.PatternLayout.newBuilder().withPattern("%d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex")
              .withConfiguration(config).build())
    appender = (core.appender.FileAppender.newBuilder().setName(JVM_LOG_APPENDER)
                .withFileName(str(log_file)).withAppend(True).setLayout(layout).setConfiguration(config).build())
    appender.start()
    config.addAppender(appender)
    for logger in [config.getRootLogger(), *config.getLoggers().values()]:
        for name, found in list(logger.getAppenders().items()):
            if found.getClass().getSimpleName() == "ConsoleAppender":
                logger.removeAppender(name)
    config.getRootLogger().addAppender(appender, None, None)
    context.updateLoggers()


def quiet_query_context_loggers(level: str) -> None:
    """PySpark logs every SQL error it raises, handled or not, as JSON with the whole JVM stack trace on
    stderr (its "query context" loggers). The error still reaches the code that handles it and says it
    in one line; the stack trace is kept for DEBUG only."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        logger = PySparkLogger.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        if level == "DEBUG":
            handler = logging.StreamHandler()
            logger.addHandler(handler)  # PySparkLogger formats it as JSON
        else:
            logger.addHandler(logging.NullHandler())
            logger.setLevel(logging.CRITICAL)


def build_spark_or_log(cfg: Config, app_name: str, logger: logging.Logger,
                       verbose: bool = False) -> SparkSession | None:
    """``build_spark`` for an entry point: on a setup error, log it and return None (exit 1)."""
    try:
        return build_spark(cfg, app_name, verbose)
    except SparkSetupError as e:
        logger.error("%s", e)
        return None


def check_jars(spark: SparkSession, cfg: Config) -> None:
    """Fail with the exact spark-submit options when Delta or the Kafka source is missing."""
    jvm = session_jvm(spark)
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    missing = []
    for class_name, what in REQUIRED_CLASSES.items():
        try:
            jvm.java.lang.Class.forName(class_name, False, loader)
        except Py4JJavaError:  # ClassNotFoundException on the JVM side
            missing.append(what)
    if missing:
        raise SparkSetupError(f"Spark is running without {' and '.join(missing)}. With spark-submit, "
                              f"pass: {' '.join(spark_submit_options(cfg))}")
