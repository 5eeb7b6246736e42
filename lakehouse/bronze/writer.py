"""The Bronze batch writer: one checked micro-batch → quarantine, duplicates, Bronze and metrics, each
committed once.

Duplicate, conflict and late decisions are made on the driver from the batch's keys (``dedup``) and an
in-memory state rebuilt from Bronze at start, so a batch costs one collect, one write per table and no
read of Bronze in the common case. Every row carries the checkpoint's query id and the batch id, so a
batch replayed after a crash finds what it already committed and writes nothing twice.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.bronze.columns import (BRONZE_COLUMNS, DUPLICATES_COLUMNS, METRICS_SCHEMA, QUARANTINE_COLUMNS,
                                      SALE_CONTENT)
from lakehouse.bronze.dedup import Decision, DedupState, Kept, SaleKey, find_duplicates
from lakehouse.platform.config import Config
from lakehouse.platform.delta import append_delta, checkpoint_query_id, delta_table_exists
from lakehouse.platform.paths import Paths

log = logging.getLogger(__name__)

# Rows per Bronze file a batch aims at: a trickle writes one file per day touched and batch, a drain
# batch still uses every core.
ROWS_PER_FILE = 50_000
DECISIONS_SCHEMA = "kafka_partition INT, kafka_offset LONG, decision STRING, kept_partition INT, kept_offset LONG"


def sale_content():
    """The hash that tells two records of one vente_id apart (same expression on a batch and on Bronze)."""
    return F.xxhash64(*SALE_CONTENT)


def _with_batch(df: DataFrame, query_id: str, batch_id: int) -> DataFrame:
    return (df.withColumn("bronze_query_id", F.lit(query_id))
            .withColumn("bronze_batch_id", F.lit(batch_id).cast("long")))


def to_bronze_rows(checked_df: DataFrame, decisions_df: DataFrame | None, watermark_us: int | None,
                   query_id: str, batch_id: int) -> DataFrame:
    """Valid sales that are neither duplicates nor conflicts, in Bronze's column order; late ones (event
    time before ``watermark_us``, microseconds since the epoch) kept and flagged.

    ``decisions_df`` holds the (kafka_partition, kafka_offset) of the records not to keep.
    """
    valid = checked_df.filter(F.size("reasons") == 0)
    if decisions_df is not None:
        valid = valid.join(F.broadcast(decisions_df.select("kafka_partition", "kafka_offset")),
                           ["kafka_partition", "kafka_offset"], "left_anti")
    late = F.lit(False) if watermark_us is None else F.unix_micros("event_ts") < F.lit(watermark_us)
    return (valid.withColumn("is_late", late).withColumnRenamed("raw_text", "raw_json")
            .transform(lambda d: _with_batch(d, query_id, batch_id)).select(*BRONZE_COLUMNS))


def to_quarantine_rows(checked_df: DataFrame, decisions_df: DataFrame | None, query_id: str,
                       batch_id: int) -> DataFrame:
    """Records that break the contract, and valid ones that re-use a kept sale's id with other content
    (``conflicting_id``, with the kept sale's position), raw bytes kept losslessly, every reason."""
    broken = (checked_df.filter(F.size("reasons") > 0)
              .withColumn("kept_partition", F.lit(None).cast("int"))
              .withColumn("kept_offset", F.lit(None).cast("long")))
    if decisions_df is not None:
        conflicts = (checked_df.join(F.broadcast(decisions_df.filter(F.col("decision") == "conflicting_id")),
                                     ["kafka_partition", "kafka_offset"])
                     .withColumn("reasons", F.array(F.lit("conflicting_id"))))
        broken = broken.unionByName(conflicts.drop("decision"))
    return (broken.withColumn("reason", F.split(F.col("reasons")[0], ":")[0])
            .transform(lambda d: _with_batch(d, query_id, batch_id)).select(*QUARANTINE_COLUMNS))


def to_duplicate_rows(checked_df: DataFrame, decisions_df: DataFrame, query_id: str, batch_id: int
                      ) -> DataFrame:
    """Records that repeat a kept sale, with their raw bytes and the kept sale's position."""
    return (checked_df.join(F.broadcast(decisions_df.filter(F.col("decision") == "duplicate")),
                            ["kafka_partition", "kafka_offset"])
            .transform(lambda d: _with_batch(d, query_id, batch_id)).select(*DUPLICATES_COLUMNS))


def _utc(micros: int | None) -> datetime | None:
    """A time for the metrics table; the contract bounds event times, so this never leaves the calendar."""
    return None if micros is None else datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc)


class BronzeBatchWriter:
    """foreachBatch function: decides duplicates, conflicts and lateness from the batch's keys and
    appends to the four tables."""

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
        if self._query_id is None:
            self._query_id = checkpoint_query_id(self.checkpoint)
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
                                           (self.paths.duplicates, "bronze_query_id", "bronze_batch_id"),
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

    @staticmethod
    def _kept_rows(df: DataFrame) -> list:
        return df.select("vente_id", F.unix_micros("event_ts"), sale_content(), "kafka_partition",
                         "kafka_offset").collect()

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
        for vente_id, event_us, content, partition, offset in self._kept_rows(recent):
            state.remember(vente_id, Kept(event_us, content, partition, offset))
        state.max_event_us, state.floor_us = top, floor
        log.info("Duplicate check state: %d recent sales from Bronze, watermark %s", len(state.seen),
                 _utc(state.watermark_us))
        return state

    def _look_up(self, state: DedupState, vente_ids: set[str], batch_id: int) -> None:
        """Bring older kept sales with these ids into memory (late sales can match pruned ones)."""
        rows = self._kept_rows(self._earlier_bronze(batch_id).filter(F.col("vente_id").isin(*sorted(vente_ids))))
        for vente_id, event_us, content, partition, offset in rows:
            state.remember(vente_id, Kept(event_us, content, partition, offset))

    def __call__(self, checked_df: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        # Cached once: the keys are collected from it, then each table is written from it.
        checked = checked_df.persist()
        try:
            self._process(checked, batch_id, started)
        finally:
            checked.unpersist()

    def _decisions_df(self, decisions: list[Decision]) -> DataFrame | None:
        if not decisions:
            return None
        return self.spark.createDataFrame(
            [(d.key.partition, d.key.offset, d.kind, d.kept.partition, d.kept.offset) for d in decisions],
            DECISIONS_SCHEMA)

    def _process(self, checked: DataFrame, batch_id: int, started: float) -> None:
        rows = checked.select(F.size("reasons") == 0, "vente_id", F.unix_micros("event_ts"), sale_content(),
                              "kafka_partition", "kafka_offset", F.unix_millis("kafka_timestamp")).collect()
        if self._state is None:
            self._state = self._load_state(batch_id)
        state = self._state
        valid = [SaleKey(r[1], r[2], r[3], r[4], r[5]) for r in rows if r[0]]
        broken = len(rows) - len(valid)
        to_look_up = {k.vente_id for k in valid if state.needs_lookup(k)}
        if to_look_up:
            self._look_up(state, to_look_up, batch_id)
        watermark_us = state.watermark_us
        decisions, kept = find_duplicates(valid, state.seen, self.delay_us)
        duplicates = sum(d.kind == "duplicate" for d in decisions)
        conflicts = len(decisions) - duplicates
        kept_times = [s.event_us for sales in kept.values() for s in sales]
        late = 0 if watermark_us is None else sum(t < watermark_us for t in kept_times)

        app = self.query_id
        written: set[Path] = set()
        if self._first_batch:
            written = self._already_written(batch_id)
            self._first_batch = False
        decisions_df = self._decisions_df(decisions)
        if (broken or conflicts) and self.paths.quarantine not in written:
            append_delta(to_quarantine_rows(checked, decisions_df, app, batch_id), self.paths.quarantine)
        if duplicates and self.paths.duplicates not in written:
            append_delta(to_duplicate_rows(checked, decisions_df, app, batch_id), self.paths.duplicates)
        if kept_times and self.paths.bronze not in written:
            files = max(1, min(self.spark.sparkContext.defaultParallelism,
                               math.ceil(len(kept_times) / ROWS_PER_FILE)))
            bronze_df = to_bronze_rows(checked, decisions_df, watermark_us, app, batch_id).coalesce(files)
            append_delta(bronze_df, self.paths.bronze, "jour")

        committed = datetime.now(timezone.utc)
        committed_ms = int(committed.timestamp() * 1000)
        duration_ms = int((time.monotonic() - started) * 1000)
        kafka_ms = [r[6] for r in rows if r[6] is not None]
        row = {
            "query_id": app, "batch_id": batch_id, "committed_at": committed,
            "input_rows": len(rows), "bronze_rows": len(kept_times), "quarantined_rows": broken + conflicts,
            "duplicate_rows": duplicates, "conflicting_rows": conflicts, "late_rows": late,
            "max_event_ts": _utc(max(kept_times, default=None)), "watermark": _utc(watermark_us),
            "duration_ms": duration_ms,
            "rows_per_s": len(rows) / (duration_ms / 1000) if duration_ms else None,
            "latency_p50_ms": committed_ms - statistics.median_low(kafka_ms) if kafka_ms else None,
            "latency_max_ms": committed_ms - min(kafka_ms) if kafka_ms else None,
            "kafka_lag": self.last_kafka_lag,
        }
        if self.paths.bronze_metrics not in written:
            append_delta(self.spark.createDataFrame([row], METRICS_SCHEMA), self.paths.bronze_metrics)
        state.add(kept)
        self.last_counts[batch_id] = row
