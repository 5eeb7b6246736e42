"""The Bronze batch writer: one checked micro-batch → quarantine, duplicates and Bronze, each committed
once; in the steady state (every record valid) that is a single Delta commit per batch.

Duplicate, conflict and late decisions are made on the driver from the batch's keys (``dedup``) and an
in-memory state, so a batch costs one collect, one write per table it touches and no read of Bronze in
the common case. Each commit carries a tag (``commit_tags``): query id, batch id, the watermark's base
and, on the batch's last commit, the batch's figures, which reach the metrics table off the hot path
(``metrics_sink``). A restart reads those tags instead of scanning the tables: it finds what a replayed
batch already committed (nothing is written twice), where the watermark stood, and any figures the
metrics table had not received; only the recent partitions are read to rebuild the duplicate state.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import pyarrow as pa
from pyspark import InheritableThread
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.bronze.columns import (BRONZE_COLUMNS, BRONZE_TABLE_PROPERTIES, CORRECTION_CONTENT,
                                      CORRECTIONS_COLUMNS, CORRECTIONS_TABLE_PROPERTIES, DUPLICATES_COLUMNS,
                                      QUARANTINE_COLUMNS, SALE_CONTENT)
from lakehouse.bronze.commit_tags import CommitTag, batch_commits, latest_before, tags_back_to
from lakehouse.bronze.contract_check import TimeJudge
from lakehouse.bronze.dedup import Decision, DedupState, Kept, SaleKey, collector_paused, find_duplicates
from lakehouse.bronze.metrics_sink import MetricsSink
from lakehouse.ingest.contract import ContractLimits
from lakehouse.ops.metrics import BronzeBatchFigures, BronzeMetrics
from lakehouse.platform.codegen import per_batch_long
from lakehouse.platform.config import Config
from lakehouse.platform.delta import append_delta, batch_timestamp_ms, checkpoint_query_id, delta_table_exists
from lakehouse.platform.paths import Paths

log = logging.getLogger(__name__)

# Rows per Bronze file a batch aims at: a trickle writes one file per day touched and batch, a drain
# batch still uses every core.
ROWS_PER_FILE = 50_000
DECISIONS_SCHEMA = "kafka_partition INT, kafka_offset LONG, decision STRING, kept_partition INT, kept_offset LONG"


# A correction is kept in the duplicate check under its retour_id with this mark in front: ids hold no control
# character (the contract), so a correction's key never equals a sale's.
CORRECTION_MARK = "\x01"


def sale_content():
    """The hash that tells two records of one vente_id apart (same expression on a batch and on Bronze)."""
    return F.xxhash64(*SALE_CONTENT)


def correction_content():
    """The hash that tells two corrections of one retour_id apart."""
    return F.xxhash64(*CORRECTION_CONTENT)


def is_sale() -> Column:
    return F.col("type_evenement") == "vente"


def dedup_key() -> Column:
    """The id a record is kept under: a sale's vente_id, a correction's marked retour_id."""
    return F.when(is_sale(), F.col("vente_id")).otherwise(F.concat(F.lit(CORRECTION_MARK), F.col("retour_id")))


def record_content() -> Column:
    return F.when(is_sale(), sale_content()).otherwise(correction_content())


def _with_batch(df: DataFrame, query_id: str, batch_id: int) -> DataFrame:
    return (df.withColumn("bronze_query_id", F.lit(query_id))
            .withColumn("bronze_batch_id", per_batch_long(batch_id, F.col("kafka_offset"))))


def to_bronze_rows(checked_df: DataFrame, decisions_df: DataFrame | None, watermark_us: int | None,
                   query_id: str, batch_id: int, corrections: bool = False) -> DataFrame:
    """Valid sales (with ``corrections``: valid returns and cancellations) that are neither duplicates nor
    conflicts, in their table's column order; late ones (event time before ``watermark_us``, microseconds since
    the epoch) kept and flagged.

    ``decisions_df`` holds the (kafka_partition, kafka_offset) of the records not to keep.
    """
    valid = checked_df.filter((F.size("reasons") == 0) & (~is_sale() if corrections else is_sale()))
    if decisions_df is not None:
        valid = valid.join(F.broadcast(decisions_df.select("kafka_partition", "kafka_offset")),
                           ["kafka_partition", "kafka_offset"], "left_anti")
    late = F.lit(False) if watermark_us is None else \
        F.unix_micros("event_ts") < per_batch_long(watermark_us, F.col("kafka_offset"))
    return (valid.withColumn("is_late", late).withColumnRenamed("raw_text", "raw_json")
            .transform(lambda d: _with_batch(d, query_id, batch_id))
            .select(*(CORRECTIONS_COLUMNS if corrections else BRONZE_COLUMNS)))


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
    """Records that repeat a kept sale or correction, with their raw bytes and the kept record's position."""
    return (checked_df.join(F.broadcast(decisions_df.filter(F.col("decision") == "duplicate")),
                            ["kafka_partition", "kafka_offset"])
            .withColumn("retour_id", F.when(~is_sale(), F.col("retour_id")))
            .transform(lambda d: _with_batch(d, query_id, batch_id)).select(*DUPLICATES_COLUMNS))


def _utc(micros: int | None) -> datetime | None:
    """A time for the metrics table; the contract bounds event times, so this never leaves the calendar."""
    return None if micros is None else datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc)


def metrics_row(query_id: str, batch_id: int, figures: dict, committed_ms: int) -> dict:
    """The metrics table's row of a batch, from its figures and the time its last commit was made."""
    duration_ms = max(0, committed_ms - figures["started_ms"])
    p50, oldest = figures["kafka_p50_ms"], figures["kafka_min_ms"]
    return {
        "query_id": query_id, "batch_id": batch_id, "committed_at": _utc(committed_ms * 1000),
        "input_rows": figures["input_rows"], "bronze_rows": figures["bronze_rows"],
        "quarantined_rows": figures["quarantined_rows"], "duplicate_rows": figures["duplicate_rows"],
        "conflicting_rows": figures["conflicting_rows"], "late_rows": figures["late_rows"],
        "max_event_ts": _utc(figures["max_event_us"]), "watermark": _utc(figures["watermark_us"]),
        "duration_ms": duration_ms,
        "rows_per_s": figures["input_rows"] / (duration_ms / 1000) if duration_ms else None,
        "latency_p50_ms": None if p50 is None else committed_ms - p50,
        "latency_max_ms": None if oldest is None else committed_ms - oldest,
        "kafka_lag": figures["kafka_lag"], "correction_rows": figures.get("correction_rows", 0),
    }


def prometheus_figures(figures: dict, reasons: pa.ChunkedArray, conflicts: int, partitions: list,
                       record_ms: list, committed_ms: int, state: DedupState) -> BronzeBatchFigures:
    """A batch's contribution to the Prometheus metrics: its figures, each quarantine reason's records (from
    the broken records' reasons, plus the conflicting ids), each record's produce→commit time, and the
    newest Kafka timestamp read per partition."""
    per_reason: Counter = Counter()
    for record_reasons in reasons.drop_null().to_pylist():  # the broken records only
        # A reason names its field ("missing_field:pays"): the label is the contract's reason alone.
        per_reason.update({reason.split(":", 1)[0] for reason in record_reasons})
    if conflicts:
        per_reason["conflicting_id"] += conflicts
    newest_read: dict[int, int] = {}
    for partition, ms in zip(partitions, record_ms):
        if ms is not None and ms > newest_read.get(partition, -1):
            newest_read[partition] = ms
    return BronzeBatchFigures(
        input_rows=figures["input_rows"], bronze_rows=figures["bronze_rows"],
        correction_rows=figures.get("correction_rows", 0),
        quarantined_rows=figures["quarantined_rows"], duplicate_rows=figures["duplicate_rows"],
        conflicting_rows=figures["conflicting_rows"], late_rows=figures["late_rows"], reasons=per_reason,
        duration_s=max(0, committed_ms - figures["started_ms"]) / 1000, committed_at=committed_ms / 1000,
        latencies_s=[(committed_ms - ms) / 1000 for ms in record_ms if ms is not None],
        newest_sale=None if state.max_event_us is None else state.max_event_us / 1e6,
        watermark=None if state.watermark_us is None else state.watermark_us / 1e6,
        dedup_entries=len(state.seen), newest_read_ms=newest_read)


class _Steps:
    """Wall time of a batch's steps, for the DEBUG log (where a slow batch spends its time)."""

    def __init__(self):
        self.last, self.times = time.monotonic(), []

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.times.append((name, now - self.last))
        self.last = now

    def add(self, times: list[tuple[str, float]]) -> None:
        """Steps that ran side by side (their own wall times), ending now."""
        self.times += times
        self.last = time.monotonic()

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in self.times)


def tables_named(paths: set) -> str:
    """Table locations for a log line, in order (an object-storage location has no order of its own)."""
    return ", ".join(sorted(str(p) for p in paths))


def _append_tagged(make_rows: Callable[[], DataFrame], path: Path, partition_by: str | None,
                   properties: dict[str, str] | None, tag: CommitTag) -> None:
    append_delta(make_rows(), path, partition_by, user_metadata=tag.to_json(), properties=properties)


def commit_together(commits: list[tuple[Path, Callable[[], None]]]) -> list[tuple[str, float]]:
    """Run a batch's commits to different tables side by side; (table name, wall time) of each.

    Each commit is tagged with the batch, so a restart finds which tables hold the batch whatever the order
    they were committed in (``_start_run``), and writes only the others; the figures' tag may then be read
    back before the batch's other commits are made, which is why a replayed batch whose figures were recovered
    adds no metrics row of its own. The threads inherit the stream's job group, so stopping the query cancels
    their Spark jobs too. The first error, if any, is raised once every commit has ended.
    """
    times: list[tuple[str, float]] = []
    errors: list[BaseException] = []

    def run(path: Path, commit: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            commit()
        except BaseException as e:  # noqa: BLE001 - raised again below, in the batch's own thread
            errors.append(e)
        times.append((path.name, time.monotonic() - started))

    if len(commits) == 1:
        run(*commits[0])
    else:
        threads = [InheritableThread(target=run, args=commit) for commit in commits]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return times


class BronzeBatchWriter:
    """foreachBatch function: decides duplicates, conflicts and lateness from the batch's keys and
    appends to the tables; the figures go to ``sink``."""

    def __init__(self, spark: SparkSession, cfg: Config, paths: Paths, checkpoint: Path,
                 sink: MetricsSink | None = None, clock: Callable[[], float] = time.time,
                 metrics: BronzeMetrics | None = None):
        """``clock`` (seconds since the epoch) times the batches; a batch's own time, which its event times
        are judged against and which is its ``ingestion_ts``, is the one Spark gave it when planning it
        (the same when the batch runs again after a crash), or the clock's without a checkpoint entry."""
        self.spark, self.cfg, self.paths, self.checkpoint, self.clock = spark, cfg, paths, checkpoint, clock
        self.sink = sink or MetricsSink(spark, paths.bronze_metrics, cfg.streaming.metrics_interval.seconds)
        self.metrics = metrics  # Prometheus' figures (lakehouse.ops.metrics), when the job exports them
        self.delay_us = int(cfg.streaming.watermark_delay.seconds * 1_000_000)
        self.limits = ContractLimits.from_config(cfg)
        self._judge: TimeJudge | None = None
        self._query_id: str | None = None
        self._state: DedupState | None = None
        self._written_before: set[Path] = set()  # tables holding the run's first batch already
        self._recovered: set[int] = set()  # batches whose figures were found in the commits' tags
        self.last_kafka_lag: int | None = None
        self.last_counts: dict[int, dict] = {}

    @property
    def query_id(self) -> str:
        if self._query_id is None:
            self._query_id = checkpoint_query_id(self.checkpoint)
        return self._query_id

    def _last_flushed_batch(self) -> int:
        """The newest batch of this query in the metrics table (-1 if none)."""
        if not delta_table_exists(self.paths.bronze_metrics):
            return -1
        top = (self.spark.read.format("delta").load(str(self.paths.bronze_metrics))
               .filter(F.col("query_id") == self.query_id).agg(F.max("batch_id")).first()[0])
        return -1 if top is None else top

    def _start_run(self, batch_id: int) -> None:
        """First batch of this run: read the newest commits' tags once for what a replayed batch already
        wrote, the watermark, and figures missing from the metrics table.

        Spark re-runs a batch only when the job stopped after planning it and before recording it as
        done, and then it is the first batch of the next run: so only that batch is checked.
        """
        flushed = self._last_flushed_batch()
        if batch_id <= flushed:  # the metrics table has this batch's row already
            self._recovered.add(batch_id)
        tags = {path: tags_back_to(self.spark, path, self.query_id, min(batch_id, flushed + 1))
                for path in (self.paths.quarantine, self.paths.duplicates, self.paths.corrections, self.paths.bronze)}
        self._written_before = {path for path, found in tags.items()
                                if batch_commits(found, batch_id)
                                or (found is None and self._rows_of_batch(path, batch_id))}
        if self._written_before:
            log.info("Batch %d was already committed to %s before a restart; not written again", batch_id,
                     tables_named(self._written_before))
        self._state = self._load_state(batch_id, tags[self.paths.bronze], tags[self.paths.corrections])
        missing = sorted((t for found in tags.values() for t in found or ()
                          if t.figures is not None and t.batch_id > flushed), key=lambda t: t.batch_id)
        for tag in missing:
            self.sink.add(metrics_row(self.query_id, tag.batch_id, tag.figures, tag.committed_ms))
            self._recovered.add(tag.batch_id)
        if missing:
            log.info("Figures of %d batch(es) not yet in the metrics table were recovered from their commits",
                     len(missing))

    def _rows_of_batch(self, path: Path, batch_id: int) -> bool:
        """Whether a table written before commits were tagged holds rows of this batch (read the table)."""
        table = self.spark.read.format("delta").load(str(path))
        return not table.filter((F.col("bronze_query_id") == self.query_id)
                                & (F.col("bronze_batch_id") == batch_id)).isEmpty()

    def _earlier_rows(self, path: Path, batch_id: int) -> DataFrame | None:
        """Rows of earlier batches in Bronze's sales or corrections table (None: no such table yet): a batch
        replayed after a crash may find its own rows (and later ones) already committed, and must decide as it
        did the first time."""
        if not delta_table_exists(path):
            return None
        own_later = (F.col("bronze_query_id") == self.query_id) & (F.col("bronze_batch_id") >= batch_id)
        return self.spark.read.format("delta").load(str(path)).filter(~own_later)

    def _kept_rows(self, batch_id: int, where: Callable[[DataFrame, bool], DataFrame]) -> list:
        """(key, event time, content, partition, offset) of the kept sales and corrections of earlier batches
        that ``where(table, is_corrections)`` selects."""
        rows = []
        for path, corrections in ((self.paths.bronze, False), (self.paths.corrections, True)):
            earlier = self._earlier_rows(path, batch_id)
            if earlier is None:
                continue
            key = F.concat(F.lit(CORRECTION_MARK), F.col("retour_id")) if corrections else F.col("vente_id")
            content = correction_content() if corrections else sale_content()
            rows += where(earlier, corrections).select(key, F.unix_micros("event_ts"), content, "kafka_partition",
                                                       "kafka_offset").collect()
        return rows

    def _load_state(self, batch_id: int, bronze_tags: list[CommitTag] | None,
                    correction_tags: list[CommitTag] | None) -> DedupState:
        """Rebuild the duplicate/late state: the latest event time kept before this batch (from the
        newest tagged commit of the sales or corrections table), then every sale and correction an on-time
        record could duplicate (recent partitions only, so the cost does not grow with the table's history)."""
        state = DedupState(self.delay_us)
        tables = [p for p in (self.paths.bronze, self.paths.corrections) if delta_table_exists(p)]
        if not tables:
            return state
        before = [t for t in (latest_before(bronze_tags, batch_id), latest_before(correction_tags, batch_id))
                  if t is not None]
        if before:
            top = max(before, key=lambda t: t.batch_id).max_event_us
        else:  # young tables, or ones written before commits were tagged: read them
            tops = [self._earlier_rows(p, batch_id).agg(F.max(F.unix_micros("event_ts"))).first()[0] for p in tables]
            top = max((t for t in tops if t is not None), default=None)
        if top is None:
            return state
        floor = top - 2 * self.delay_us
        recent = self._kept_rows(batch_id, lambda df, _: df.filter(
            (F.col("jour") >= F.to_date(F.timestamp_micros(F.lit(floor)))) & (F.unix_micros("event_ts") >= floor)))
        for key, event_us, content, partition, offset in recent:
            state.remember(key, Kept(event_us, content, partition, offset))
        state.max_event_us, state.floor_us = top, floor
        log.info("Duplicate check state: %d recent sales from Bronze, watermark %s", len(state.seen),
                 _utc(state.watermark_us))
        return state

    def _look_up(self, state: DedupState, keys: list[SaleKey], batch_id: int) -> None:
        """Bring older kept sales with these keys' ids into memory (late sales can match pruned ones).
        A match lies within the watermark delay of the key's event time, so only the days around the keys
        are read."""
        low = min(k.event_us for k in keys) - self.delay_us
        high = max(k.event_us for k in keys) + self.delay_us

        def day(micros: int):
            return F.to_date(F.timestamp_micros(F.lit(micros)))

        sale_ids = sorted({k.vente_id for k in keys if not k.vente_id.startswith(CORRECTION_MARK)})
        retour_ids = sorted({k.vente_id[1:] for k in keys if k.vente_id.startswith(CORRECTION_MARK)})

        def where(df: DataFrame, corrections: bool) -> DataFrame:
            ids = F.col("retour_id").isin(*retour_ids) if corrections else F.col("vente_id").isin(*sale_ids)
            return df.filter(F.col("jour").between(day(low), day(high)) & ids)
        for key, event_us, content, partition, offset in self._kept_rows(batch_id, where):
            state.remember(key, Kept(event_us, content, partition, offset))

    def __call__(self, checked_df: DataFrame, batch_id: int) -> None:
        """``checked_df``: the batch's records through ``check_contract``."""
        started_ms = int(self.clock() * 1000)
        # Cached once: the keys are collected from it, then each table is written from it.
        cached = checked_df.persist()
        if self._judge is None:
            self._judge = TimeJudge(self.limits, checked_df.columns)
        try:
            batch_ms = batch_timestamp_ms(self.checkpoint, batch_id) or started_ms
            with collector_paused():
                self._process(self._judge(cached, batch_ms * 1000), batch_id, started_ms)
        finally:
            cached.unpersist()

    def _decisions_df(self, decisions: list[Decision]) -> DataFrame | None:
        if not decisions:
            return None
        return self.spark.createDataFrame(
            [(d.key.partition, d.key.offset, d.kind, d.kept.partition, d.kept.offset) for d in decisions],
            DECISIONS_SCHEMA)

    def _process(self, checked: DataFrame, batch_id: int, started_ms: int) -> None:
        steps = _Steps()
        # Through Arrow: a drain batch's 100,000 keys arrive in a third of the time a row collect takes.
        # The broken records' reasons only when Prometheus counts them.
        exported = [F.when(F.size("reasons") > 0, F.col("reasons")).alias("reasons")] if self.metrics else []
        table = checked.select((F.size("reasons") == 0).alias("ok"), dedup_key(), F.unix_micros("event_ts"),
                               record_content(), "kafka_partition", "kafka_offset",
                               F.unix_millis("kafka_timestamp"), *exported).toArrow()
        ok, ids, events, contents, partitions, offsets, kafka_ms = (c.to_pylist() for c in table.columns[:7])
        steps.done("collect")
        written: set[Path] = set()
        if self._state is None:
            self._start_run(batch_id)
            written = self._written_before
            steps.done("restart state")
        state = self._state
        valid = [SaleKey(*k) for flag, *k in zip(ok, ids, events, contents, partitions, offsets) if flag]
        broken = table.num_rows - len(valid)
        to_look_up = [k for k in valid if state.needs_lookup(k)]
        if to_look_up:
            self._look_up(state, to_look_up, batch_id)
        watermark_us = state.watermark_us
        decisions, kept = find_duplicates(valid, state.seen, self.delay_us)
        duplicates = sum(d.kind == "duplicate" for d in decisions)
        conflicts = len(decisions) - duplicates
        kept_times = [s.event_us for sales in kept.values() for s in sales]
        kept_corrections = sum(len(sales) for key, sales in kept.items() if key.startswith(CORRECTION_MARK))
        late = 0 if watermark_us is None else sum(t < watermark_us for t in kept_times)
        record_ms = kafka_ms
        kafka_ms = [t for t in kafka_ms if t is not None]
        batch_max = max(kept_times, default=None)
        figures = {
            "started_ms": started_ms, "input_rows": table.num_rows,
            "bronze_rows": len(kept_times) - kept_corrections, "correction_rows": kept_corrections,
            "quarantined_rows": broken + conflicts, "duplicate_rows": duplicates, "conflicting_rows": conflicts,
            "late_rows": late, "max_event_us": batch_max, "watermark_us": watermark_us,
            "kafka_p50_ms": statistics.median_low(kafka_ms) if kafka_ms else None,
            "kafka_min_ms": min(kafka_ms) if kafka_ms else None, "kafka_lag": self.last_kafka_lag,
        }
        newest = max((t for t in (state.max_event_us, batch_max) if t is not None), default=None)

        steps.done("decide")
        app = self.query_id
        decisions_df = self._decisions_df(decisions)
        # (table, rows, partition column, table properties); the last one's commit carries the figures.
        writes = []
        if broken or conflicts:
            writes.append((self.paths.quarantine, lambda: to_quarantine_rows(checked, decisions_df, app, batch_id),
                           None, None))
        if duplicates:
            writes.append((self.paths.duplicates, lambda: to_duplicate_rows(checked, decisions_df, app, batch_id),
                           None, None))
        if kept_corrections:
            writes.append((self.paths.corrections, lambda: to_bronze_rows(
                checked, decisions_df, watermark_us, app, batch_id, corrections=True).coalesce(1), "jour",
                CORRECTIONS_TABLE_PROPERTIES))
        if kept_times and kept_corrections < len(kept_times):
            files = max(1, min(self.spark.sparkContext.defaultParallelism,
                               math.ceil((len(kept_times) - kept_corrections) / ROWS_PER_FILE)))
            writes.append((self.paths.bronze, lambda: to_bronze_rows(
                checked, decisions_df, watermark_us, app, batch_id).coalesce(files), "jour", BRONZE_TABLE_PROPERTIES))
        commits = [(path, partial(_append_tagged, make_rows, path, partition_by, properties,
                                  CommitTag(app, batch_id, newest, figures if i == len(writes) - 1 else None)))
                   for i, (path, make_rows, partition_by, properties) in enumerate(writes) if path not in written]
        steps.add(commit_together(commits))

        committed_ms = int(self.clock() * 1000)
        row = metrics_row(app, batch_id, figures, committed_ms)
        if batch_id not in self._recovered:
            self.sink.add(row)
        state.add(kept)
        if self.metrics is not None:
            self.metrics.batch(prometheus_figures(figures, table.column("reasons"), conflicts, partitions, record_ms,
                                                  committed_ms, state))
        self.last_counts[batch_id] = row
        steps.done("state")
        log.debug("Batch %d steps: %s", batch_id, steps)
