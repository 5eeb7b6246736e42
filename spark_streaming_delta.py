"""Stream sales events from Kafka into the Bronze Delta table.

Usage: spark_streaming_delta.py [--available-now] [--topic TOPIC] [--bootstrap-servers HOST:PORT]
Example:
    python spark_streaming_delta.py --available-now
    spark-submit --packages org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0,io.delta:delta-spark_4.2_2.13:4.4.0 \
        --conf spark.jars.ivy=$PWD/.cache/ivy spark_streaming_delta.py
"""

from __future__ import annotations

import argparse
import logging
import sys

from pyspark.errors import StreamingQueryException

from lakehouse.bronze.monitoring import remove_progress_loggers
from lakehouse.bronze.stream import (
    BronzeStateError,
    start_bronze_stream,
    stop_after_current_batch,
    stream_failure_message,
)
from lakehouse.ops.metrics import BronzeMetrics, jvm_heap_reader, serve_metrics
from lakehouse.ops.upkeep import OwnUpkeep, bronze_tables
from lakehouse.platform.cli import (
    add_config_flag,
    add_kafka_security_flags,
    add_verbose_flag,
    config_or_exit,
    kafka_security_overrides,
    setup_logging,
    stop_on_signals,
)
from lakehouse.platform.config import Config
from lakehouse.platform.job_lock import lock_or_exit
from lakehouse.platform.kafka_probe import broker_problem
from lakehouse.platform.kafka_security import KafkaSecurity
from lakehouse.platform.lake import on_object_storage
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import build_spark_or_log

log = logging.getLogger("spark_streaming_delta")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Stream sales events from Kafka into Bronze Delta.")
    parser.add_argument("--available-now", action="store_true",
                        help="process everything in the topic, then exit (tests, periodic runs)")
    parser.add_argument("--topic", default=None, help="Kafka topic (overrides [kafka] topic)")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None,
                        help="upper bound of records per micro-batch "
                             "(overrides [streaming] max_offsets_per_trigger)")
    parser.add_argument("--bootstrap-servers", default=None,
                        help="Kafka brokers (overrides [kafka] bootstrap_servers)")
    add_config_flag(parser)
    add_verbose_flag(parser)
    add_kafka_security_flags(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = config_or_exit(args, {("kafka", "topic"): args.topic,
                                ("kafka", "bootstrap_servers"): args.bootstrap_servers,
                                ("streaming", "max_offsets_per_trigger"): args.max_offsets_per_trigger,
                                **kafka_security_overrides(args)})
    setup_logging(cfg.monitoring.log_level)
    paths = Paths.from_config(cfg)
    # One stream per checkpoint, refused before the broker check and Spark: a second one would skip the
    # batch the first committed and die on Spark's log conflict.
    with lock_or_exit("The Bronze stream", paths, paths.bronze_checkpoint, log):
        return run(args, cfg, paths)


def run(args: argparse.Namespace, cfg: Config, paths: Paths) -> int:
    """Check the broker, start Spark and the stream, wait until it stops; the exit code."""
    servers = cfg.kafka.bootstrap_servers
    security = KafkaSecurity.from_config(cfg)
    problem = broker_problem(servers, cfg.kafka.connect_timeout.seconds, security)
    if problem is not None:
        if problem.reachable:
            log.error("%s", problem.message)
        else:
            log.error("Kafka broker at %s is not reachable: start it (make broker-start, or docker compose "
                      "up -d) or set [kafka] bootstrap_servers", servers)
        return 1
    spark = build_spark_or_log(cfg, "bronze_ventes", log, args.verbose)
    if spark is None:
        return 1
    metrics = None
    if not args.available_now:  # a long-running stream: Prometheus may scrape it
        metrics = BronzeMetrics(jvm_heap_reader(spark))
        serve_metrics(metrics, cfg.monitoring.metrics_address, cfg.monitoring.metrics_port_bronze,
                      "Bronze stream", "metrics_port_bronze")
    try:
        query = start_bronze_stream(spark, cfg, paths, available_now=args.available_now, metrics=metrics)
    except BronzeStateError as e:
        log.error("%s", e)
        return 1
    stop_requested = stop_on_signals(log, "stopping after the current batch")
    upkeep = None
    if on_object_storage(cfg) and not args.available_now:
        # On object storage the stream's driver is the one process writing Bronze's tables (see upkeep).
        upkeep = OwnUpkeep(spark, cfg, paths, bronze_tables(paths), cfg.analytics.upkeep_interval.seconds)
        upkeep.start_background()
    try:
        while query.isActive and not stop_requested.is_set():
            query.awaitTermination(1)
    except StreamingQueryException:
        pass  # reported below from query.exception()
    if upkeep is not None:
        upkeep.close()
    if query.isActive:
        stop_after_current_batch(query)
    remove_progress_loggers(spark)
    if query.exception() is not None:
        after = broker_problem(servers, cfg.kafka.connect_timeout.seconds, security)
        log.error("%s", after.message if after is not None and after.reachable else stream_failure_message(
            str(query.exception()), servers, paths.bronze_checkpoint, after is None, security))
        return 1
    log.info("Bronze stream stopped; table %s", paths.bronze)
    return 0


if __name__ == "__main__":
    sys.exit(main())
