"""End-to-end smoke run: a few sales through a real Kafka broker into the Bronze table, printed back.

Usage: python -m lakehouse.ops.smoke [--count N] [--config config.ini]
It expects the broker to be running (``python -m lakehouse.local.kafka_broker start``) and creates the topic
if needed.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import threading

from kafka.errors import KafkaError

from lakehouse.bronze.stream import start_bronze_stream
from lakehouse.ingest.producer import ProducerError, ProducerSettings, connect, run
from lakehouse.ingest.simulator import SalesSimulator
from lakehouse.platform.cli import (
    add_config_flag,
    add_kafka_security_flags,
    config_or_exit,
    kafka_security_overrides,
    setup_logging,
)
from lakehouse.platform.config import Config
from lakehouse.platform.kafka_probe import broker_problem
from lakehouse.platform.kafka_security import KafkaSecurity
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import SparkSetupError, build_spark
from lakehouse.platform.topics import TopicError, ensure_topic

log = logging.getLogger("lakehouse.ops.smoke")


def send_sales(cfg: Config, count: int) -> list[str]:
    """Send ``count`` simulated sales and return their vente_ids once Kafka acknowledged them all."""
    seed = cfg.producer.seed if cfg.producer.seed is not None else random.SystemRandom().randrange(2**31)
    simulator = SalesSimulator(seed, cfg.producer.clients, max_event_bytes=cfg.streaming.max_event_bytes,
                               pool_seed=cfg.producer.pool_seed)
    sent: list[str] = []

    def remembered(records):
        for record in records:
            sent.append(record.event["vente_id"])
            yield record

    settings = ProducerSettings.from_config(cfg, rate=None, count=count, duration_s=None)
    result = run(connect(settings), remembered(simulator.records()), settings, threading.Event())
    if result.stats.delivered != count:
        raise ProducerError(result.summary_line())
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send a few sales through Kafka into Delta and show them.")
    parser.add_argument("--count", type=int, default=5, help="number of sales to send (default 5)")
    add_config_flag(parser)
    add_kafka_security_flags(parser)
    args = parser.parse_args(argv)
    cfg = config_or_exit(args, kafka_security_overrides(args))
    setup_logging(cfg.monitoring.log_level)
    paths = Paths.from_config(cfg)
    security = KafkaSecurity.from_config(cfg)
    problem = broker_problem(cfg.kafka.bootstrap_servers, cfg.kafka.connect_timeout.seconds, security)
    if problem is not None and problem.reachable:
        log.error("%s", problem.message)
        return 1
    try:
        ensure_topic(cfg.kafka.bootstrap_servers, cfg.kafka.topic, cfg.kafka.partitions,
                     cfg.kafka.replication_factor, cfg.kafka.connect_timeout.seconds, security)
        ids = send_sales(cfg, args.count)
        log.info("Sent %d sales to %s", len(ids), cfg.kafka.topic)
        spark = build_spark(cfg, "smoke")
    except (TopicError, ProducerError, KafkaError, SparkSetupError) as e:
        log.error("%s", e)
        return 1
    start_bronze_stream(spark, cfg, paths, available_now=True).awaitTermination()
    table = spark.read.format("delta").load(str(paths.bronze))
    landed = table.filter(table.vente_id.isin(ids))
    print(f"\nBronze table {paths.bronze}: {table.count()} rows in total; the {len(ids)} just sent:")
    landed.select("vente_id", "client_nom", "pays", "segment", "produit_nom", "quantite", "montant",
                  "jour", "kafka_partition", "kafka_offset").orderBy("kafka_partition", "kafka_offset") \
        .show(truncate=False)
    found = landed.count()
    if found != len(ids):
        log.error("Only %d of %d sent sales reached the Delta table", found, len(ids))
        return 1
    print(f"✅ {found}/{len(ids)} sales went Kafka → Spark → Delta and were read back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
