"""Kafka → Bronze Delta: contract checks, quarantine, duplicates and late events, exactly once.

Pure transforms (``with_contract_check``, ``to_bronze_rows``, ``to_quarantine_rows``) work on batch
DataFrames and the duplicate check (``find_duplicates``, ``DedupState``) on plain keys; all are unit
tested. ``BronzeBatchWriter`` is the foreachBatch edge: it decides duplicates and lateness from the
batch's keys and appends to the three tables; every row carries the checkpoint's query id and the batch
id, so a batch replayed after a crash finds what it already committed and writes nothing twice.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from lakehouse.config import Config
from lakehouse.contract import FIELDS, SEGMENT_ALIASES
from lakehouse.paths import Paths, delta_table_exists
from lakehouse.status import write_atomic

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
                      "bronze_query_id", "bronze_batch_id"]
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


@dataclass(frozen=True)
class SaleKey:
    """What the duplicate check needs of one valid record: its id, event time and Kafka position."""

    vente_id: str
    event_us: int  # event time, microseconds since the epoch
    partition: int
    offset: int


@dataclass
class DedupState:
    """Event times of the sales kept in Bronze, by vente_id, for the duplicate and late checks.

    ``seen`` holds every kept sale whose event time is at or after ``floor_us`` (all of them while
    ``floor_us`` is None); older ones are pruned from memory and looked up in Bronze when a late sale
    needs them. ``max_event_us`` is the latest event time kept, the base of the watermark.
    """

    delay_us: int
    seen: dict[str, list[int]] = field(default_factory=dict)
    max_event_us: int | None = None
    floor_us: int | None = None

    @property
    def watermark_us(self) -> int | None:
        """Event times before this are late (None until a sale has been kept)."""
        return None if self.max_event_us is None else self.max_event_us - self.delay_us

    def needs_lookup(self, key: SaleKey) -> bool:
        """Whether sales that could match ``key`` may have been pruned from memory."""
        return self.floor_us is not None and key.event_us - self.delay_us < self.floor_us

    def add(self, kept: dict[str, list[int]]) -> None:
        """Record sales kept by a committed batch, then prune what no on-time sale can match."""
        for vente_id, times in kept.items():
            self.seen.setdefault(vente_id, []).extend(times)
            top = max(times)
            if self.max_event_us is None or top > self.max_event_us:
                self.max_event_us = top
        if self.max_event_us is None:
            return
        # An on-time sale (at or after the watermark) can only match sales within the delay of it.
        floor = self.max_event_us - 2 * self.delay_us
        # Pruning walks the whole map: do it when the floor moved by a tenth of the delay or more.
        if self.floor_us is None or floor - self.floor_us >= self.delay_us // 10:
            for vente_id in list(self.seen):
                recent = [t for t in self.seen[vente_id] if t >= floor]
                if recent:
                    self.seen[vente_id] = recent
                else:
                    del self.seen[vente_id]
            self.floor_us = floor


def find_duplicates(keys: list[SaleKey], seen: dict[str, list[int]], delay_us: int
                    ) -> tuple[list[SaleKey], dict[str, list[int]]]:
    """Split a batch's valid sales into duplicates and kept sales.

    A sale is a duplicate when a kept sale that arrived before it (in ``seen``, or earlier in this
    batch by Kafka partition/offset) has the same vente_id and an event time within ``delay_us`` of
    its own. Returns the duplicates and the kept sales' event times by vente_id; ``seen`` is not
    modified, so a batch that fails to commit leaves the state as it was.
    """
    duplicates: list[SaleKey] = []
    kept: dict[str, list[int]] = {}
    for key in sorted(keys, key=lambda k: (k.partition, k.offset)):
        earlier = (*seen.get(key.vente_id, ()), *kept.get(key.vente_id, ()))
        if any(abs(key.event_us - t) <= delay_us for t in earlier):
            duplicates.append(key)
        else:
            kept.setdefault(key.vente_id, []).append(key.event_us)
    return duplicates, kept


def to_bronze_rows(checked_df: DataFrame, duplicates_df: DataFrame | None, watermark_us: int | None,
                   query_id: str, batch_id: int) -> DataFrame:
    """Valid, non-duplicate sales in Bronze's column order, late ones (event time before
    ``watermark_us``, microseconds since the epoch) kept and flagged.

    ``duplicates_df`` holds the (kafka_partition, kafka_offset) of the duplicates to leave out.
    """
    valid = checked_df.filter(F.size("reasons") == 0)
    if duplicates_df is not None:
        valid = valid.join(F.broadcast(duplicates_df), ["kafka_partition", "kafka_offset"], "left_anti")
    late = F.lit(False) if watermark_us is None else F.unix_micros("event_ts") < F.lit(watermark_us)
    return (valid.withColumn("is_late", late).withColumnRenamed("raw_text", "raw_json")
            .withColumn("bronze_query_id", F.lit(query_id))
            .withColumn("bronze_batch_id", F.lit(batch_id).cast("long"))
            .select(*BRONZE_COLUMNS))


def to_quarantine_rows(checked_df: DataFrame, query_id: str, batch_id: int) -> DataFrame:
    """Records that break the contract, with the raw bytes kept losslessly and every reason."""
    return (checked_df.filter(F.size("reasons") > 0)
            .withColumn("reason", F.split(F.col("reasons")[0], ":")[0])
            .withColumn("bronze_query_id", F.lit(query_id))
            .withColumn("bronze_batch_id", F.lit(batch_id).cast("long"))
            .select(*QUARANTINE_COLUMNS))


# --- the streaming edge ----------------------------------------------------------------------------

def read_kafka_stream(spark: SparkSession, cfg: Config) -> DataFrame:
    """The Kafka source as a stream, with offsets, batch bound, data-loss policy and broker timeout
    from config."""
    # Without these, an unreachable broker keeps the driver's offset lookups and the executors' fetches
    # waiting for minutes (60 s per admin call, retried; 120 s per poll) before the query fails.
    timeout_ms = str(int(cfg.streaming.broker_timeout.seconds * 1000))
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.kafka.bootstrap_servers)
        .option("subscribe", cfg.kafka.topic)
        .option("startingOffsets", cfg.streaming.starting_offsets)
        .option("failOnDataLoss", str(cfg.streaming.fail_on_data_loss).lower())
        .option("maxOffsetsPerTrigger", cfg.streaming.max_offsets_per_trigger)
        # Spark's consumers only ask for offsets a batch planned, yet a fetch at the end of a range
        # waits fetch.max.wait.ms (500 ms by default) for data that is not coming: measured as most of
        # a small batch's time.
        .option("kafka.fetch.max.wait.ms", "10")
        .option("kafka.default.api.timeout.ms", timeout_ms)
        .option("kafka.request.timeout.ms", timeout_ms)  # Kafka wants it ≤ default.api.timeout.ms
        .option("kafkaConsumer.pollTimeoutMs", timeout_ms)
        .load()
    )


def _append(df: DataFrame, path: Path, partition_by: str | None = None) -> None:
    writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.save(str(path))


# Commits between two Delta log checkpoints of the tables the stream creates (Delta's default: 10).
LOG_CHECKPOINT_INTERVAL = 100

# Rows per Bronze file a batch aims at: a trickle writes one file per day touched and batch, a drain
# batch still uses every core.
ROWS_PER_FILE = 50_000


def _utc(micros: int | None) -> datetime | None:
    return None if micros is None else datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc)


class BronzeBatchWriter:
    """foreachBatch function: one checked micro-batch → quarantine, Bronze, metrics, each committed once.

    Duplicate and late decisions are made on the driver from the batch's keys and an in-memory
    ``DedupState`` rebuilt from Bronze at start, so a batch costs one collect, one write per table and
    no read of Bronze in the common case.
    """

    def __init__(self, spark: SparkSession, cfg: Config, paths: Paths, checkpoint: Path):
        self.spark, self.cfg, self.paths, self.checkpoint = spark, cfg, paths, checkpoint
        self.delay_us = int(cfg.streaming.watermark_delay.seconds * 1_000_000)
        self._query_id: str | None = None
        self._state: DedupState | None = None
        self._first_batch = True
        self.last_kafka_lag: int | None = None
        self.last_counts: dict[int, dict] = {}

    @property
    def query_id(self) -> str:
        # The id Spark keeps in the checkpoint: a new checkpoint gets a new id, so its batch numbers
        # (starting at 0 again) never collide with an older run's idempotent-write versions.
        if self._query_id is None:
            self._query_id = json.loads((self.checkpoint / "metadata").read_text())["id"]
        return self._query_id

    def _already_written(self, batch_id: int) -> set[Path]:
        """Tables that already hold this batch's rows.

        Spark re-runs a batch only when the job stopped after planning it and before recording it as
        done, and then it is the first batch of the next run: so only that batch is checked, and
        later ones are written without Delta's idempotent-write options (which cost a log state
        reconstruction per commit, measured at about a second each here).
        """
        written = set()
        for path, query_col, batch_col in ((self.paths.quarantine, "bronze_query_id", "bronze_batch_id"),
                                           (self.paths.bronze, "bronze_query_id", "bronze_batch_id"),
                                           (self.paths.bronze_metrics, "query_id", "batch_id")):
            if not delta_table_exists(path):
                continue
            table = self.spark.read.format("delta").load(str(path))
            if query_col in table.columns and not table.filter(
                    (F.col(query_col) == self.query_id) & (F.col(batch_col) == batch_id)).isEmpty():
                written.add(path)
        if written:
            log.info("Batch %d was already committed to %s before a restart; not written again", batch_id,
                     ", ".join(str(p) for p in sorted(written)))
        return written

    def _earlier_bronze(self, batch_id: int) -> DataFrame:
        """Bronze rows of earlier batches: a batch replayed after a crash may find its own rows (and
        later ones) already committed, and must decide as it did the first time."""
        own_later = (F.col("bronze_query_id") == self.query_id) & (F.col("bronze_batch_id") >= batch_id)
        return self.spark.read.format("delta").load(str(self.paths.bronze)).filter(~own_later)

    def _load_state(self, batch_id: int) -> DedupState:
        """Rebuild the duplicate/late state from Bronze: the latest event time, and every sale an
        on-time sale could duplicate."""
        state = DedupState(self.delay_us)
        if not delta_table_exists(self.paths.bronze):
            return state
        earlier = self._earlier_bronze(batch_id)
        top = earlier.agg(F.max(F.unix_micros("event_ts"))).first()[0]
        if top is None:
            return state
        floor = top - 2 * self.delay_us
        recent = earlier.filter((F.col("jour") >= F.to_date(F.timestamp_micros(F.lit(floor))))
                                & (F.unix_micros("event_ts") >= floor))
        for vente_id, event_us in recent.select("vente_id", F.unix_micros("event_ts")).collect():
            state.seen.setdefault(vente_id, []).append(event_us)
        state.max_event_us, state.floor_us = top, floor
        log.info("Duplicate check state: %d recent sales from Bronze, watermark %s", len(state.seen),
                 _utc(state.watermark_us))
        return state

    def _look_up(self, state: DedupState, vente_ids: set[str], batch_id: int) -> None:
        """Bring older kept sales with these ids into memory (late sales can match pruned ones)."""
        rows = (self._earlier_bronze(batch_id).filter(F.col("vente_id").isin(*sorted(vente_ids)))
                .select("vente_id", F.unix_micros("event_ts")).collect())
        for vente_id, event_us in rows:
            times = state.seen.setdefault(vente_id, [])
            if event_us not in times:
                times.append(event_us)

    def __call__(self, checked_df: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        # Cached once: the keys are collected from it, then each table is written from it.
        checked = checked_df.persist()
        try:
            self._process(checked, batch_id, started)
        finally:
            checked.unpersist()

    def _process(self, checked: DataFrame, batch_id: int, started: float) -> None:
        rows = checked.select(F.size("reasons") == 0, "vente_id", F.unix_micros("event_ts"),
                              "kafka_partition", "kafka_offset", F.unix_millis("kafka_timestamp")).collect()
        if self._state is None:
            self._state = self._load_state(batch_id)
        state = self._state
        valid = [SaleKey(r[1], r[2], r[3], r[4]) for r in rows if r[0]]
        quarantined = len(rows) - len(valid)
        to_look_up = {k.vente_id for k in valid if state.needs_lookup(k)}
        if to_look_up:
            self._look_up(state, to_look_up, batch_id)
        watermark_us = state.watermark_us
        duplicates, kept = find_duplicates(valid, state.seen, self.delay_us)
        kept_times = [t for times in kept.values() for t in times]
        late = 0 if watermark_us is None else sum(t < watermark_us for t in kept_times)

        app = self.query_id
        written: set[Path] = set()
        if self._first_batch:
            written = self._already_written(batch_id)
            self._first_batch = False
        if quarantined and self.paths.quarantine not in written:
            _append(to_quarantine_rows(checked, app, batch_id), self.paths.quarantine)
        if kept_times and self.paths.bronze not in written:
            duplicates_df = None
            if duplicates:
                duplicates_df = self.spark.createDataFrame(
                    [(d.partition, d.offset) for d in duplicates], "kafka_partition INT, kafka_offset LONG")
            files = max(1, min(self.spark.sparkContext.defaultParallelism,
                               math.ceil(len(kept_times) / ROWS_PER_FILE)))
            bronze_df = to_bronze_rows(checked, duplicates_df, watermark_us, app, batch_id).coalesce(files)
            _append(bronze_df, self.paths.bronze, "jour")

        committed = datetime.now(timezone.utc)
        committed_ms = int(committed.timestamp() * 1000)
        duration_ms = int((time.monotonic() - started) * 1000)
        kafka_ms = [r[5] for r in rows if r[5] is not None]
        row = {
            "query_id": app, "batch_id": batch_id, "committed_at": committed,
            "input_rows": len(rows), "bronze_rows": len(kept_times), "quarantined_rows": quarantined,
            "duplicate_rows": len(duplicates), "late_rows": late,
            "max_event_ts": _utc(max(kept_times, default=None)), "watermark": _utc(watermark_us),
            "duration_ms": duration_ms,
            "rows_per_s": len(rows) / (duration_ms / 1000) if duration_ms else None,
            "latency_p50_ms": committed_ms - statistics.median_low(kafka_ms) if kafka_ms else None,
            "latency_max_ms": committed_ms - min(kafka_ms) if kafka_ms else None,
            "kafka_lag": self.last_kafka_lag,
        }
        if self.paths.bronze_metrics not in written:
            _append(self.spark.createDataFrame([row], METRICS_SCHEMA), self.paths.bronze_metrics)
        state.add(kept)
        self.last_counts[batch_id] = row


class BronzeProgressLogger(StreamingQueryListener):
    """Logs every Bronze batch: rows, rate, duration, latency, quarantined, duplicates, Kafka lag."""

    def __init__(self, writer: BronzeBatchWriter, status_file: Path | None = None):
        self.writer, self.status_file = writer, status_file
        self.terminated = threading.Event()  # events arrive in order: after this one, none is pending
        self.status: dict = {"started_at": time.time(), "batches": 0, "input_rows_total": 0,
                             "bronze_rows_total": 0, "quarantined_rows_total": 0, "duplicate_rows_total": 0,
                             "last_batch": None, "kafka_lag": None}

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
        self._write_status(counts, lag)
        if counts is None:
            return
        log.info("📊 Batch %d: %d rows in %d ms (%.0f rows/s) → bronze %d, quarantined %d, duplicates %d, "
                 "late %d; produce-to-commit p50 %s ms; Kafka lag %s", progress.batchId,
                 counts["input_rows"], counts["duration_ms"], counts["rows_per_s"] or 0.0,
                 counts["bronze_rows"], counts["quarantined_rows"], counts["duplicate_rows"],
                 counts["late_rows"], counts["latency_p50_ms"], "unknown" if lag is None else lag)

    def onQueryIdle(self, event) -> None:  # noqa: N802
        pass

    def _write_status(self, counts: dict | None, lag: int | None) -> None:
        """The stream's health as a small JSON file (for the demo's live view): running totals, the last
        batch, the Kafka lag."""
        if self.status_file is None:
            return
        status = self.status
        status.update(updated_at=time.time(), kafka_lag=lag)
        if counts is not None:
            status["batches"] += 1
            for key in ("input_rows", "bronze_rows", "quarantined_rows", "duplicate_rows"):
                status[f"{key}_total"] += counts[key]
            status["last_batch"] = {k: (v.isoformat() if isinstance(v, datetime) else v)
                                    for k, v in counts.items()}
        write_atomic(self.status_file, json.dumps(status))

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        self.terminated.set()
        if event.exception:
            log.error("Bronze stream failed: %s", event.exception.splitlines()[0])


# Listeners registered by start_bronze_stream, so that an entry point can remove them before it exits.
_progress_loggers: list[BronzeProgressLogger] = []


def remove_progress_loggers(spark: SparkSession, timeout_s: float = 10.0) -> None:
    """Once the queries have stopped, let the listeners log their last events, then unregister them: an
    event delivered after Python has exited makes Spark log a py4j error at every stop."""
    while _progress_loggers:
        listener = _progress_loggers.pop()
        listener.terminated.wait(timeout_s)
        spark.streams.removeListener(listener)


class BronzeStateError(RuntimeError):
    """The checkpoint and the tables do not belong together (one of them was deleted)."""


def _log_entries(checkpoint: Path, log_name: str) -> bool:
    return any(p.name.isdigit() for p in (checkpoint / log_name).glob("*"))


def check_bronze_state(spark: SparkSession, paths: Paths, checkpoint: Path) -> None:
    """Refuse to start when the checkpoint and the tables disagree: resuming would then skip records
    (tables deleted, checkpoint kept) or read the topic again from the start (checkpoint deleted)."""
    tables_exist = delta_table_exists(paths.bronze) or delta_table_exists(paths.bronze_metrics)
    if _log_entries(checkpoint, "commits"):
        gone = not delta_table_exists(paths.bronze_metrics) or (
            not delta_table_exists(paths.bronze)
            and (spark.read.format("delta").load(str(paths.bronze_metrics))
                 .agg(F.sum("bronze_rows")).first()[0] or 0) > 0)
        if gone:
            raise BronzeStateError(
                f"Bronze checkpoint {checkpoint} has committed batches but the Bronze tables under "
                f"{paths.delta_dir / 'bronze'} are gone: resuming would skip the records already read. "
                "Delete the checkpoint too to read the topic again from [streaming] starting_offsets "
                "(make demo ARGS=--fresh deletes both and empties the topic).")
    elif tables_exist and not _log_entries(checkpoint, "offsets"):
        raise BronzeStateError(
            f"Bronze tables exist under {paths.delta_dir} but the checkpoint {checkpoint} does not: starting "
            "would read the topic again from [streaming] starting_offsets. Restore the checkpoint, or delete "
            "the Bronze tables too for a fresh start (make demo ARGS=--fresh).")


def start_bronze_stream(spark: SparkSession, cfg: Config, paths: Paths, available_now: bool = False,
                        checkpoint: Path | None = None) -> StreamingQuery:
    """Start the Kafka → Bronze/quarantine/metrics query (``BronzeStateError`` if the checkpoint and
    the tables do not match)."""
    checkpoint = checkpoint or paths.bronze_checkpoint
    check_bronze_state(spark, paths, checkpoint)
    # Tables this session creates (Bronze, quarantine, metrics) get a log checkpoint every 100 commits
    # instead of 10: writing one costs 2-5 s here, a latency spike every tenth batch otherwise.
    spark.conf.set("spark.databricks.delta.properties.defaults.checkpointInterval",
                   str(LOG_CHECKPOINT_INTERVAL))
    writer = BronzeBatchWriter(spark, cfg, paths, checkpoint)
    listener = BronzeProgressLogger(writer, paths.bronze_status)
    spark.streams.addListener(listener)
    _progress_loggers.append(listener)
    # The contract check is part of the streaming plan, built once, not rebuilt in every batch.
    checked = read_kafka_stream(spark, cfg).transform(
        lambda df: with_contract_check(df, cfg.streaming.max_event_bytes))
    stream = (checked.writeStream.foreachBatch(writer)
              .option("checkpointLocation", str(checkpoint)).queryName("bronze_ventes"))
    stream = (stream.trigger(availableNow=True) if available_now
              else stream.trigger(processingTime=cfg.streaming.trigger_interval.spark()))
    log.info("Streaming %s → %s (quarantine %s, checkpoint %s)", cfg.kafka.topic, paths.bronze,
             paths.quarantine, checkpoint)
    return stream.start()


def stream_failure_message(error: str, servers: str, checkpoint: Path, broker_up: bool) -> str:
    """What a user should read when the Bronze query failed: the likely cause and the fix."""
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


def stop_after_current_batch(query: StreamingQuery, timeout_s: float = 120.0) -> None:
    """Stop between two batches: wait until no trigger is running, then stop."""
    deadline = time.monotonic() + timeout_s
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()
