"""Kafka → Bronze Delta: contract checks, quarantine, duplicates and late events, exactly once.

Pure transforms (``with_contract_check``, ``to_bronze_rows``, ``to_quarantine_rows``,
``with_duplicate_and_late_flags``) work on batch DataFrames and are unit tested; ``BronzeBatchWriter``
is the foreachBatch edge that reads prior state and writes the three tables with idempotent Delta
commits (``txnAppId`` + ``txnVersion`` = batch id), so a batch replayed after a crash writes nothing
twice.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from lakehouse.config import Config
from lakehouse.contract import FIELDS, SEGMENT_ALIASES
from lakehouse.paths import Paths

log = logging.getLogger(__name__)

MONEY = T.DecimalType(14, 2)
LINEAGE = ["kafka_key", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp"]

BRONZE_COLUMNS = [
    "vente_id", "client_id", "produit_id", "event_ts", "jour", "quantite", "montant", "prix_unitaire",
    "client_nom", "produit_nom", "categorie", "pays", "ville", "segment", "canal", "devise",
    "contract_version", "is_late", "raw_json", *LINEAGE, "ingestion_ts", "bronze_query_id",
    "bronze_batch_id",
]
QUARANTINE_COLUMNS = ["reason", "reasons", "raw_value", "raw_text", *LINEAGE, "ingestion_ts",
                      "bronze_batch_id"]
METRICS_SCHEMA = T.StructType([
    T.StructField("query_id", T.StringType()), T.StructField("batch_id", T.LongType()),
    T.StructField("committed_at", T.TimestampType()), T.StructField("input_rows", T.LongType()),
    T.StructField("bronze_rows", T.LongType()), T.StructField("quarantined_rows", T.LongType()),
    T.StructField("duplicate_rows", T.LongType()), T.StructField("late_rows", T.LongType()),
    T.StructField("max_event_ts", T.TimestampType()), T.StructField("watermark", T.TimestampType()),
    T.StructField("duration_ms", T.LongType()), T.StructField("rows_per_s", T.DoubleType()),
    T.StructField("latency_p50_ms", T.LongType()), T.StructField("latency_max_ms", T.LongType()),
    T.StructField("kafka_lag", T.LongType()),
])

_NUMBER_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT")


def _variant_type(v: Column, name: str) -> Column:
    # "BIGINT", "STRING", "DECIMAL(3,1)", "DOUBLE", "BOOLEAN", "OBJECT<...>"; JSON null is "VOID",
    # a missing field gives SQL NULL.
    return F.schema_of_variant(F.variant_get(v, f"$.{name}", "variant"))


def _kind_ok(kind: str, type_name: Column, text: Column) -> Column:
    if kind == "id":
        return type_name.isin("BIGINT", "INT", "SMALLINT", "TINYINT") | (
            (type_name == "STRING") & (F.length(text) > 0))
    if kind in ("text", "segment", "timestamp"):
        return type_name == "STRING"
    if kind == "int":
        return type_name.isin("BIGINT", "INT", "SMALLINT", "TINYINT")
    if kind == "number":
        return type_name.isin(*_NUMBER_TYPES) | type_name.startswith("DECIMAL")
    raise ValueError(f"unknown field kind {kind!r}")


def with_contract_check(kafka_df: DataFrame, max_event_bytes: int) -> DataFrame:
    """Check each Kafka record against the sale contract and extract typed columns.

    Adds ``reasons`` (empty for a valid sale; same names as ``contract.violations``), the typed sale
    columns, Kafka lineage, ``raw_value`` (the bytes as received) and ``ingestion_ts``.
    Timestamps without an offset are read in the session time zone.
    """
    value = F.col("value")
    size = F.coalesce(F.length(value), F.lit(0))
    utf8 = F.is_valid_utf8(value)
    df = kafka_df.select(
        value.alias("raw_value"),
        F.col("key").cast("string").alias("kafka_key"), F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.when((size > 0) & (size <= max_event_bytes) & utf8, value.cast("string")).alias("raw_text"),
        size.alias("_size"), utf8.alias("_utf8"),
    )
    df = df.withColumn("_v", F.try_parse_json("raw_text"))
    v = F.col("_v")
    types = {f.name: _variant_type(v, f.name) for f in FIELDS}
    text = {f.name: F.try_variant_get(v, f"$.{f.name}", "string") for f in FIELDS}
    df = df.select("*", *[types[f.name].alias(f"_t_{f.name}") for f in FIELDS],
                   *[text[f.name].alias(f"_s_{f.name}") for f in FIELDS])
    t = {f.name: F.col(f"_t_{f.name}") for f in FIELDS}
    s = {f.name: F.col(f"_s_{f.name}") for f in FIELDS}

    field_checks = []
    for f in FIELDS:
        absent = t[f.name].isNull() | (t[f.name] == "VOID")
        if f.required:
            field_checks.append(F.when(absent, F.lit(f"missing_field:{f.name}")))
        field_checks.append(F.when(~absent & ~_kind_ok(f.kind, t[f.name], s[f.name]),
                                   F.lit(f"wrong_type:{f.name}")))
    quantite = F.try_variant_get(v, "$.quantite", "bigint")
    montant = F.try_variant_get(v, "$.montant", "double")
    event_ts = F.try_to_timestamp(s["timestamp"])
    field_checks += [
        F.when(_kind_ok("int", t["quantite"], s["quantite"]) & (quantite < 1), F.lit("bad_quantity")),
        F.when(_kind_ok("number", t["montant"], s["montant"]) & (montant < 0), F.lit("negative_amount")),
        F.when((t["segment"] == "STRING") & ~s["segment"].isin(*SEGMENT_ALIASES), F.lit("unknown_segment")),
        F.when((t["timestamp"] == "STRING") & event_ts.isNull(), F.lit("bad_timestamp")),
    ]
    reasons = (
        F.when(F.col("_size") == 0, F.array(F.lit("empty")))
        .when(F.col("_size") > max_event_bytes, F.array(F.lit("oversized")))
        .when(~F.col("_utf8"), F.array(F.lit("non_utf8")))
        .when(v.isNull(), F.array(F.lit("not_json")))
        .when(~F.schema_of_variant(v).startswith("OBJECT"), F.array(F.lit("not_object")))
        .otherwise(F.array_compact(F.array(*field_checks)))
    )
    segment_map = F.create_map(*[F.lit(x) for kv in SEGMENT_ALIASES.items() for x in kv])
    return df.select(
        reasons.alias("reasons"),
        s["vente_id"].alias("vente_id"), s["client_id"].alias("client_id"),
        s["produit_id"].alias("produit_id"), event_ts.alias("event_ts"),
        F.to_date(event_ts).alias("jour"),
        F.try_variant_get(v, "$.quantite", "int").alias("quantite"),
        F.try_variant_get(v, "$.montant", MONEY.simpleString()).alias("montant"),
        F.try_variant_get(v, "$.prix_unitaire", MONEY.simpleString()).alias("prix_unitaire"),
        s["client_nom"].alias("client_nom"), s["produit_nom"].alias("produit_nom"),
        s["categorie"].alias("categorie"), s["pays"].alias("pays"), s["ville"].alias("ville"),
        segment_map[s["segment"]].alias("segment"), s["canal"].alias("canal"),
        s["devise"].alias("devise"),
        F.try_variant_get(v, "$.contract_version", "int").alias("contract_version"),
        F.col("raw_text"), F.col("raw_value"), *LINEAGE, F.current_timestamp().alias("ingestion_ts"),
    )


def with_duplicate_and_late_flags(valid_df: DataFrame, prior_df: DataFrame | None, query_id: str,
                                  batch_id: int, delay_s: float, watermark: datetime | None) -> DataFrame:
    """Flag duplicates and late sales among this batch's valid rows.

    A row is a duplicate when a row that arrived before it (earlier Bronze rows, or this batch at a lower
    Kafka partition/offset) has the same vente_id and an event time within ``delay_s`` of its own.
    A row is late when its event time is before ``watermark`` (latest event time of earlier batches
    minus the delay). ``prior_df`` holds earlier Bronze rows (vente_id, event_ts, bronze_batch_id,
    kafka_partition, kafka_offset) that could match.
    """
    keys = ["vente_id", "event_ts", "kafka_partition", "kafka_offset"]
    current = (valid_df.withColumn("bronze_query_id", F.lit(query_id))
               .withColumn("bronze_batch_id", F.lit(batch_id).cast("long")))
    candidates = current.select(*keys, F.lit(False).alias("is_prior"))
    if prior_df is not None:
        candidates = candidates.unionByName(prior_df.select(*keys, F.lit(True).alias("is_prior")))
    c, p = current.alias("c"), candidates.alias("p")
    delay_us = int(delay_s * 1_000_000)
    earlier = (
        F.col("p.is_prior")
        | (F.col("p.kafka_partition") < F.col("c.kafka_partition"))
        | ((F.col("p.kafka_partition") == F.col("c.kafka_partition"))
           & (F.col("p.kafka_offset") < F.col("c.kafka_offset")))
    )
    close = F.abs(F.unix_micros(F.col("c.event_ts")) - F.unix_micros(F.col("p.event_ts"))) <= delay_us
    duplicates = (
        c.join(p, (F.col("c.vente_id") == F.col("p.vente_id")) & close & earlier, "left_semi")
        .select("kafka_partition", "kafka_offset").withColumn("is_duplicate", F.lit(True))
    )
    late = F.lit(False) if watermark is None else (F.col("event_ts") < F.lit(watermark))
    return (current.join(duplicates, ["kafka_partition", "kafka_offset"], "left")
            .withColumn("is_duplicate", F.coalesce("is_duplicate", F.lit(False)))
            .withColumn("is_late", late))


def to_bronze_rows(flagged_df: DataFrame) -> DataFrame:
    """Valid, non-duplicate sales in Bronze's column order (late ones kept, flagged)."""
    return flagged_df.filter(~F.col("is_duplicate")).withColumnRenamed("raw_text", "raw_json") \
        .select(*BRONZE_COLUMNS)


def to_quarantine_rows(checked_df: DataFrame, batch_id: int) -> DataFrame:
    """Records that break the contract, with the raw bytes kept losslessly and every reason."""
    return (checked_df.filter(F.size("reasons") > 0)
            .withColumn("reason", F.split(F.col("reasons")[0], ":")[0])
            .withColumn("bronze_batch_id", F.lit(batch_id).cast("long"))
            .select(*QUARANTINE_COLUMNS))


# --- the streaming edge ----------------------------------------------------------------------------

def read_kafka_stream(spark: SparkSession, cfg: Config) -> DataFrame:
    """The Kafka source as a stream, with offsets, batch bound and data-loss policy from config."""
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.kafka.bootstrap_servers)
        .option("subscribe", cfg.kafka.topic)
        .option("startingOffsets", cfg.streaming.starting_offsets)
        .option("failOnDataLoss", str(cfg.streaming.fail_on_data_loss).lower())
        .option("maxOffsetsPerTrigger", cfg.streaming.max_offsets_per_trigger)
        .load()
    )


def _write(df: DataFrame, path: Path, app_id: str, batch_id: int, partition_by: str | None = None) -> None:
    writer = (df.write.format("delta").mode("append").option("txnAppId", app_id)
              .option("txnVersion", batch_id).option("mergeSchema", "true"))
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.save(str(path))


def _table_exists(path: Path) -> bool:
    return (path / "_delta_log").is_dir()


class BronzeBatchWriter:
    """foreachBatch function: one micro-batch → quarantine, Bronze, metrics, each committed once."""

    def __init__(self, spark: SparkSession, cfg: Config, paths: Paths, checkpoint: Path):
        self.spark, self.cfg, self.paths, self.checkpoint = spark, cfg, paths, checkpoint
        self.delay_s = cfg.streaming.watermark_delay.seconds
        self._query_id: str | None = None
        self._max_ts: dict[tuple[str, int], datetime] | None = None
        self.last_kafka_lag: int | None = None
        self.last_counts: dict[int, dict] = {}

    @property
    def query_id(self) -> str:
        # The id Spark keeps in the checkpoint: a new checkpoint gets a new id, so its batch numbers
        # (starting at 0 again) never collide with an older run's idempotent-write versions.
        if self._query_id is None:
            self._query_id = json.loads((self.checkpoint / "metadata").read_text())["id"]
        return self._query_id

    def _watermark(self, batch_id: int) -> datetime | None:
        if self._max_ts is None:
            self._max_ts = {}
            if _table_exists(self.paths.bronze_metrics):
                for row in (self.spark.read.format("delta").load(str(self.paths.bronze_metrics))
                            .select("query_id", "batch_id", "max_event_ts").collect()):
                    if row.max_event_ts is not None:
                        self._max_ts[(row.query_id, row.batch_id)] = row.max_event_ts
        earlier = [ts for (qid, bid), ts in self._max_ts.items() if qid != self.query_id or bid < batch_id]
        if not earlier:
            return None
        return max(earlier) - timedelta(seconds=self.delay_s)

    def _prior_rows(self, min_ts: datetime | None, max_ts: datetime | None, batch_id: int) -> DataFrame | None:
        """Earlier Bronze rows a sale of this batch could duplicate: same days, event time within the
        delay, and not written by this very batch (a batch replayed after a crash may find its own
        rows already committed)."""
        if min_ts is None or not _table_exists(self.paths.bronze):
            return None
        delay = timedelta(seconds=self.delay_s)
        bronze = self.spark.read.format("delta").load(str(self.paths.bronze))
        own_later = (F.col("bronze_query_id") == self.query_id) & (F.col("bronze_batch_id") >= batch_id)
        return bronze.filter(
            F.col("jour").between(F.lit((min_ts - delay).date()), F.lit((max_ts + delay).date()))
            & F.col("event_ts").between(F.lit(min_ts - delay), F.lit(max_ts + delay))
            & ~own_later)

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        checked = batch_df.transform(lambda df: with_contract_check(df, self.cfg.streaming.max_event_bytes))
        checked = checked.persist()
        try:
            self._process(checked, batch_id, started)
        finally:
            checked.unpersist()

    def _process(self, checked: DataFrame, batch_id: int, started: float) -> None:
        is_valid = F.size("reasons") == 0
        first = checked.agg(
            F.count(F.lit(1)).alias("input_rows"),
            F.sum(F.when(~is_valid, 1).otherwise(0)).alias("quarantined"),
            F.min(F.when(is_valid, F.col("event_ts"))).alias("min_ts"),
            F.max(F.when(is_valid, F.col("event_ts"))).alias("max_ts"),
            F.percentile_approx(F.unix_millis("kafka_timestamp"), 0.5).alias("kafka_p50_ms"),
            F.min(F.unix_millis("kafka_timestamp")).alias("kafka_min_ms"),
        ).first()
        app = self.query_id
        if first.quarantined:
            _write(to_quarantine_rows(checked, batch_id), self.paths.quarantine, f"{app}:quarantine", batch_id)
        watermark = self._watermark(batch_id)
        duplicates = late = bronze_rows = 0
        if first.input_rows - (first.quarantined or 0) > 0:
            prior = self._prior_rows(first.min_ts, first.max_ts, batch_id)
            flagged = with_duplicate_and_late_flags(checked.filter(is_valid), prior, self.query_id,
                                                    batch_id, self.delay_s, watermark).persist()
            try:
                counts = flagged.agg(F.sum(F.col("is_duplicate").cast("int")).alias("dup"),
                                     F.sum((F.col("is_late") & ~F.col("is_duplicate")).cast("int")).alias("late"),
                                     F.count(F.lit(1)).alias("n")).first()
                duplicates, late = counts.dup or 0, counts.late or 0
                bronze_rows = counts.n - duplicates
                _write(to_bronze_rows(flagged), self.paths.bronze, f"{app}:bronze", batch_id, "jour")
            finally:
                flagged.unpersist()
        committed_ms = int(time.time() * 1000)
        duration_ms = int((time.monotonic() - started) * 1000)
        row = {
            "query_id": self.query_id, "batch_id": batch_id,
            "committed_at": datetime.fromtimestamp(committed_ms / 1000),
            "input_rows": first.input_rows, "bronze_rows": bronze_rows,
            "quarantined_rows": first.quarantined or 0, "duplicate_rows": duplicates, "late_rows": late,
            "max_event_ts": first.max_ts, "watermark": watermark, "duration_ms": duration_ms,
            "rows_per_s": first.input_rows / (duration_ms / 1000) if duration_ms else None,
            "latency_p50_ms": committed_ms - first.kafka_p50_ms if first.kafka_p50_ms else None,
            "latency_max_ms": committed_ms - first.kafka_min_ms if first.kafka_min_ms else None,
            "kafka_lag": self.last_kafka_lag,
        }
        _write(self.spark.createDataFrame([row], METRICS_SCHEMA), self.paths.bronze_metrics,
               f"{app}:metrics", batch_id)
        if first.max_ts is not None:
            self._max_ts[(self.query_id, batch_id)] = first.max_ts
        self.last_counts[batch_id] = row


class BronzeProgressLogger(StreamingQueryListener):
    """Logs every Bronze batch: rows, rate, duration, latency, quarantined, duplicates, Kafka lag."""

    def __init__(self, writer: BronzeBatchWriter):
        self.writer = writer

    def onQueryStarted(self, event) -> None:  # noqa: N802 (Spark's API names)
        log.info("Bronze stream started (id %s, run %s)", event.id, event.runId)

    def onQueryProgress(self, event) -> None:  # noqa: N802
        progress = event.progress
        lag = None
        for source in progress.sources:
            metrics = source.metrics or {}
            if "maxOffsetsBehindLatest" in metrics:
                lag = int(float(metrics["maxOffsetsBehindLatest"]))
        self.writer.last_kafka_lag = lag
        counts = self.writer.last_counts.pop(progress.batchId, None)
        if counts is None:
            return
        log.info("📊 Batch %d: %d rows in %d ms (%.0f rows/s) → bronze %d, quarantined %d, duplicates %d, "
                 "late %d; produce-to-commit p50 %s ms; Kafka lag %s", progress.batchId,
                 counts["input_rows"], counts["duration_ms"], counts["rows_per_s"] or 0.0,
                 counts["bronze_rows"], counts["quarantined_rows"], counts["duplicate_rows"],
                 counts["late_rows"], counts["latency_p50_ms"], "unknown" if lag is None else lag)

    def onQueryIdle(self, event) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        if event.exception:
            log.error("Bronze stream failed: %s", event.exception.splitlines()[0])


def start_bronze_stream(spark: SparkSession, cfg: Config, paths: Paths, available_now: bool = False,
                        checkpoint: Path | None = None) -> StreamingQuery:
    """Start the Kafka → Bronze/quarantine/metrics query."""
    checkpoint = checkpoint or paths.bronze_checkpoint
    writer = BronzeBatchWriter(spark, cfg, paths, checkpoint)
    spark.streams.addListener(BronzeProgressLogger(writer))
    stream = (read_kafka_stream(spark, cfg).writeStream.foreachBatch(writer)
              .option("checkpointLocation", str(checkpoint)).queryName("bronze_ventes"))
    stream = (stream.trigger(availableNow=True) if available_now
              else stream.trigger(processingTime=cfg.streaming.trigger_interval.spark()))
    log.info("Streaming %s → %s (quarantine %s, checkpoint %s)", cfg.kafka.topic, paths.bronze,
             paths.quarantine, checkpoint)
    return stream.start()


def stop_after_current_batch(query: StreamingQuery, timeout_s: float = 120.0) -> None:
    """Stop between two batches: wait until no trigger is running, then stop."""
    deadline = time.monotonic() + timeout_s
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()
