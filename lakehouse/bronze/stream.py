"""The Bronze stream's edge: read Kafka, check the contract, hand each batch to the writer; start, stop
and explain failures."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.bronze.contract_check import check_contract
from lakehouse.bronze.metrics_sink import MetricsSink
from lakehouse.bronze.monitoring import BronzeProgressLogger, register_progress_logger
from lakehouse.bronze.writer import BronzeBatchWriter
from lakehouse.ingest.contract import ContractLimits
from lakehouse.ops.metrics import BronzeMetrics
from lakehouse.platform import job_lock
from lakehouse.platform.config import Config
from lakehouse.platform.delta import checkpoint_has_entries, delta_table_exists, one_row
from lakehouse.platform.kafka_security import KafkaSecurity, explain_java_error, spark_source_options
from lakehouse.platform.lake import LakePath
from lakehouse.platform.paths import Paths

log = logging.getLogger(__name__)

# Commits between two Delta log checkpoints of the tables the stream creates (Delta's default: 10).
LOG_CHECKPOINT_INTERVAL = 100
# Spark's Kafka source tries an offset lookup this many times (its default, fetchOffset.numRetries),
# this far apart, before the query fails.
OFFSET_FETCH_ATTEMPTS = 3
OFFSET_FETCH_RETRY_MS = 1000


def read_kafka_stream(spark: SparkSession, cfg: Config) -> DataFrame:
    """The Kafka source as a stream, with offsets, batch bound, data-loss policy, broker timeout and
    security (TLS, SCRAM) from config. The options hold the password: they are never logged."""
    # Without these, an unreachable broker keeps the driver's offset lookups and the executors' fetches
    # waiting for minutes (60 s per admin call, retried; 120 s per poll) before the query fails. The
    # driver makes OFFSET_FETCH_ATTEMPTS attempts at each offset lookup, so each gets a share of
    # broker_timeout: the stream then stops within broker_timeout plus a few seconds, not three times it.
    timeout_ms = str(int(cfg.streaming.broker_timeout.seconds * 1000))
    attempt_ms = str(max(1000, int(cfg.streaming.broker_timeout.seconds * 1000 / OFFSET_FETCH_ATTEMPTS)))
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.kafka.bootstrap_servers)
        .option("subscribe", cfg.kafka.topic)
        # Records of aborted transactions (and of transactions still open) are never read.
        .option("kafka.isolation.level", "read_committed")
        .option("startingOffsets", cfg.streaming.starting_offsets)
        .option("failOnDataLoss", str(cfg.streaming.fail_on_data_loss).lower())
        .option("maxOffsetsPerTrigger", cfg.streaming.max_offsets_per_trigger)
        # Spark's consumers only ask for offsets a batch planned, yet a fetch at the end of a range
        # waits fetch.max.wait.ms (500 ms by default) for data that is not coming: most of a small
        # batch's time.
        .option("kafka.fetch.max.wait.ms", "10")
        .option("fetchOffset.numRetries", str(OFFSET_FETCH_ATTEMPTS))
        .option("fetchOffset.retryIntervalMs", str(OFFSET_FETCH_RETRY_MS))
        .option("kafka.default.api.timeout.ms", attempt_ms)
        .option("kafka.request.timeout.ms", attempt_ms)  # Kafka wants it ≤ default.api.timeout.ms
        .option("kafkaConsumer.pollTimeoutMs", timeout_ms)
        .options(**spark_source_options(KafkaSecurity.from_config(cfg)))
        .load()
    )


class BronzeQuery:
    """The running Bronze query (a ``StreamingQuery``), which writes the batches' last figures to the
    metrics table once it has stopped, whether by ``stop()`` or by ending (``awaitTermination``)."""

    def __init__(self, query: StreamingQuery, sink: MetricsSink, lock_file: Path | None = None):
        self._query, self._sink, self._lock_file = query, sink, lock_file

    def __getattr__(self, name: str):
        return getattr(self._query, name)

    def _close_sink(self) -> None:
        try:
            self._sink.close()
        except Exception as e:  # noqa: BLE001 - the stream's own outcome matters more; the next start recovers
            log.warning("Bronze metrics of the last batches not written (%s); the next start writes them",
                        str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        finally:
            if self._lock_file is not None:
                job_lock.release(self._lock_file)
                self._lock_file = None

    def awaitTermination(self, timeout: int | None = None) -> bool | None:  # noqa: N802 (Spark's API name)
        try:
            return self._query.awaitTermination() if timeout is None else self._query.awaitTermination(timeout)
        finally:
            if not self._query.isActive:
                self._close_sink()

    def stop(self) -> None:
        try:
            self._query.stop()
        finally:
            self._close_sink()


class BronzeStateError(RuntimeError):
    """The checkpoint and the tables do not belong together (one of them was deleted)."""


def check_bronze_state(spark: SparkSession, paths: Paths, checkpoint: LakePath) -> None:
    """Refuse to start when the checkpoint and the tables disagree: resuming would then skip records
    (tables deleted, checkpoint kept) or read the topic again from the start (checkpoint deleted)."""
    data_tables = (paths.bronze, paths.corrections, paths.quarantine, paths.duplicates)
    tables_exist = any(delta_table_exists(p) for p in (*data_tables, paths.bronze_metrics))
    if checkpoint_has_entries(checkpoint, "commits"):
        gone = not tables_exist or (
            not delta_table_exists(paths.bronze) and delta_table_exists(paths.bronze_metrics)
            and (one_row(spark.read.format("delta").load(str(paths.bronze_metrics))
                         .agg(F.sum("bronze_rows")))[0] or 0) > 0)
        if gone:
            raise BronzeStateError(
                f"Bronze checkpoint {checkpoint} has committed batches but the Bronze tables under "
                f"{paths.delta_dir / 'bronze'} are gone: resuming would skip the records already read. "
                "Delete the checkpoint too to read the topic again from [streaming] starting_offsets "
                "(make demo ARGS=--fresh deletes both and empties the topic).")
    elif tables_exist and not checkpoint_has_entries(checkpoint, "offsets"):
        raise BronzeStateError(
            f"Bronze tables exist under {paths.delta_dir} but the checkpoint {checkpoint} does not: starting "
            "would read the topic again from [streaming] starting_offsets. Restore the checkpoint, or delete "
            "the Bronze tables too for a fresh start (make demo ARGS=--fresh).")


def start_bronze_stream(spark: SparkSession, cfg: Config, paths: Paths, available_now: bool = False,
                        checkpoint: LakePath | None = None, metrics: BronzeMetrics | None = None) -> BronzeQuery:
    """Start the Kafka → Bronze/quarantine/metrics query (``BronzeStateError`` if the checkpoint and
    the tables do not match, ``JobAlreadyRunning`` if another process streams into this checkpoint). The
    query holds the checkpoint's lock until it has stopped."""
    checkpoint = checkpoint or paths.bronze_checkpoint
    # The entry point took it before Spark started (this shares it); other callers take it here.
    lock_file = job_lock.acquire("The Bronze stream", paths, checkpoint)
    try:
        return _start(spark, cfg, paths, available_now, checkpoint, lock_file, metrics)
    except BaseException:
        job_lock.release(lock_file)
        raise


def _start(spark: SparkSession, cfg: Config, paths: Paths, available_now: bool, checkpoint: LakePath,
           lock_file: Path, metrics: BronzeMetrics | None) -> BronzeQuery:
    check_bronze_state(spark, paths, checkpoint)
    # Tables this session creates (Bronze, quarantine, duplicates, metrics) get a log checkpoint every 100 commits
    # instead of 10: writing one takes seconds, a latency spike every tenth batch otherwise.
    spark.conf.set("spark.databricks.delta.properties.defaults.checkpointInterval",
                   str(LOG_CHECKPOINT_INTERVAL))
    # The optimizer's constraint propagation over the contract check's large plan took seconds at every
    # trigger (bench/bronze_latency.py); Delta's post-commit checksum file is one more write per commit
    # (readers compute what it holds when it is missing).
    spark.conf.set("spark.sql.constraintPropagation.enabled", "false")
    spark.conf.set("spark.databricks.delta.writeChecksumFile.enabled", "false")
    # Each batch is cached once between its key collect and its writes, then dropped: compressing the
    # cache cost more than it saved (a drain batch's collect was slower with it on, bench/bronze_drain.py).
    spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "false")
    sink = MetricsSink(spark, paths.bronze_metrics, cfg.streaming.metrics_interval.seconds)
    writer = BronzeBatchWriter(spark, cfg, paths, checkpoint, sink, metrics=metrics)
    register_progress_logger(spark, BronzeProgressLogger(writer, paths.bronze_status, metrics))
    # The contract check is part of the streaming plan, built once, not rebuilt in every batch; the writer
    # judges event times against each batch's clock.
    checked = read_kafka_stream(spark, cfg).transform(
        lambda df: check_contract(df, ContractLimits.from_config(cfg)))
    stream = (checked.writeStream.foreachBatch(writer)
              .option("checkpointLocation", str(checkpoint)).queryName("bronze_ventes"))
    stream = (stream.trigger(availableNow=True) if available_now
              else stream.trigger(processingTime=cfg.streaming.trigger_interval.spark()))
    log.info("Streaming %s → %s (quarantine %s, checkpoint %s)", cfg.kafka.topic, paths.bronze,
             paths.quarantine, checkpoint)
    return BronzeQuery(stream.start(), sink, lock_file)


def stream_failure_message(error: str, servers: str, checkpoint: Path, broker_up: bool,
                           security: KafkaSecurity | None = None) -> str:
    """What a user should read when the Bronze query failed: the likely cause and the fix."""
    explained = explain_java_error(error, security, servers) if broker_up and security is not None else None
    if explained is not None:
        return (f"{explained}. The Bronze stream stopped after its last committed batch; nothing is lost: "
                f"fix the setting, then start this job again (it resumes from {checkpoint})")
    if not broker_up:
        return (f"Kafka broker at {servers} is not reachable: the Bronze stream stopped after its last "
                "committed batch. Nothing is lost: start the broker again, then this job; it resumes from "
                f"its checkpoint {checkpoint}")
    # Spark's wording ("Some data may have been lost ...", error class KAFKA_DATA_LOSS.*).
    if "KAFKA_DATA_LOSS" in error or "Some data may have been lost" in error:
        return (f"Kafka no longer holds records that the checkpoint {checkpoint} expects to read next (the "
                "topic's retention deleted them, or the topic was deleted and created again). To go on from "
                "what Kafka still has, set [streaming] fail_on_data_loss = false (the gap is logged); to "
                "start over, make demo ARGS=--fresh.")
    if "No space left on device" in error:
        return (f"The disk is full (No space left on device): the Bronze stream stopped after its last "
                f"committed batch and nothing is lost. Free space (make upkeep applies retention and VACUUM; "
                f"old logs are in data/logs), then start this job again: it resumes from {checkpoint}")
    return f"Bronze stream failed: {error.strip().splitlines()[0] if error.strip() else error}"


def stop_after_current_batch(query: StreamingQuery | BronzeQuery, timeout_s: float = 120.0) -> None:
    """Stop between two batches: wait until no trigger is running, then stop."""
    deadline = time.monotonic() + timeout_s
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()
