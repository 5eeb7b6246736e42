"""Kafka → Bronze Delta: the parsing transform and the streaming edges around it."""

from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from lakehouse.config import Config
from lakehouse.contract import RAW_EVENT_SCHEMA, SEGMENT_ALIASES

log = logging.getLogger(__name__)


def with_parsed_sale(kafka_df: DataFrame) -> DataFrame:
    """Parse Kafka records into sale columns, keeping Kafka lineage and the raw value.

    Expects the Kafka source's columns (key, value, topic, partition, offset, timestamp).
    Timestamps without an offset are read in the session time zone.
    """
    raw = F.col("value").cast("string")
    event = F.from_json(raw, RAW_EVENT_SCHEMA)
    segment_map = F.create_map(*[F.lit(x) for kv in SEGMENT_ALIASES.items() for x in kv])
    parsed = kafka_df.select(
        event.alias("e"),
        raw.alias("raw_value"),
        F.col("key").cast("string").alias("kafka_key"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
    )
    return parsed.select(
        F.col("e.vente_id").alias("vente_id"),
        F.col("e.client_id").alias("client_id"),
        F.col("e.produit_id").alias("produit_id"),
        F.to_timestamp(F.col("e.timestamp")).alias("event_ts"),
        F.col("e.quantite").cast(T.IntegerType()).alias("quantite"),
        F.col("e.montant").cast(T.DecimalType(12, 2)).alias("montant"),
        F.col("e.client_nom").alias("client_nom"),
        F.col("e.produit_nom").alias("produit_nom"),
        F.col("e.categorie").alias("categorie"),
        F.col("e.pays").alias("pays"),
        segment_map[F.col("e.segment")].alias("segment"),
        "raw_value", "kafka_key", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp",
        F.current_timestamp().alias("ingestion_ts"),
    ).withColumn("jour", F.to_date("event_ts"))


def read_kafka_stream(spark: SparkSession, cfg: Config, topic: str | None = None) -> DataFrame:
    """The Kafka source as a stream, with offsets and data-loss policy from the configuration."""
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.kafka.bootstrap_servers)
        .option("subscribe", topic or cfg.kafka.topic)
        .option("startingOffsets", cfg.streaming.starting_offsets)
        .option("failOnDataLoss", str(cfg.streaming.fail_on_data_loss).lower())
        .option("maxOffsetsPerTrigger", cfg.streaming.max_offsets_per_trigger)
        .load()
    )


def start_bronze_stream(spark: SparkSession, cfg: Config, table: Path, checkpoint: Path,
                        available_now: bool = False, topic: str | None = None) -> StreamingQuery:
    """Start the Kafka → Bronze query (append, partitioned by jour, exactly once via checkpoint)."""
    writer = (
        read_kafka_stream(spark, cfg, topic).transform(with_parsed_sale)
        .writeStream.format("delta")
        .outputMode("append")
        .partitionBy("jour")
        .option("checkpointLocation", str(checkpoint))
        .queryName("bronze_ventes")
    )
    writer = (writer.trigger(availableNow=True) if available_now
              else writer.trigger(processingTime=cfg.streaming.trigger_interval.spark()))
    log.info("Streaming %s → %s (checkpoint %s)", topic or cfg.kafka.topic, table, checkpoint)
    return writer.start(str(table))
