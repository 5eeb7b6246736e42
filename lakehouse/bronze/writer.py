"""The Bronze batch writer: one checked micro-batch → quarantine, duplicates and Bronze, each committed
once; in the steady state (every record valid) that is a single Delta commit per batch.

Duplicate, conflict and late decisions are made on the driver from the batch's keys (``dedup``) and an
in-memory state, so a batch costs one collect, one write per table it touches and no read of Bronze in
the common case. Each commit carries a tag (``commit_tags``): query id, batch id, the watermark's base
and, on the batch's last commit, the batch's figures, which reach the metrics table off the hot path
(``metrics_sink``). A restart reads those tags instead of scanning the tables (``recovery``): it finds
what a replayed batch already committed (nothing is written twice), where the watermark stood, and any
figures the metrics table had not received; only the recent partitions are read to rebuild the duplicate
state.

A batch goes through named steps: collect its keys, decide (duplicates, conflicts, lateness and the
batch's figures, ``batch_figures``), plan its commits, commit them (side by side, ``commit_together``), and
record its figures.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import pyarrow as pa
from pyspark import InheritableThread
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.bronze.batch_figures import BatchFigures, metrics_row
from lakehouse.bronze.columns import (
    BRONZE_COLUMNS,
    BRONZE_TABLE_PROPERTIES,
    CORRECTIONS_COLUMNS,
    CORRECTIONS_TABLE_PROPERTIES,
    DUPLICATES_COLUMNS,
    QUARANTINE_COLUMNS,
)
from lakehouse.bronze.commit_tags import CommitTag
from lakehouse.bronze.contract_check import TimeJudge
from lakehouse.bronze.dedup import Decision, DedupState, Kept, SaleKey, collector_paused, find_duplicates
from lakehouse.bronze.kept_records import CORRECTION_MARK, dedup_key, is_sale, kept_rows, record_content
from lakehouse.bronze.metrics_sink import MetricsSink
from lakehouse.bronze.recovery import Recovery
from lakehouse.ingest.contract import ContractLimits
from lakehouse.ops.metrics import BronzeBatchFigures, BronzeMetrics
from lakehouse.platform.codegen import per_batch_long
from lakehouse.platform.config import Config
from lakehouse.platform.delta import append_delta, batch_timestamp_ms, checkpoint_query_id
from lakehouse.platform.lake import LakePath
from lakehouse.platform.paths import Paths

log = logging.getLogger(__name__)

# Rows per Bronze file a batch aims at: a trickle writes one file per day touched and batch, a drain
# batch still uses every core.
ROWS_PER_FILE = 50_000
DECISIONS_SCHEMA = "kafka_partition INT, kafka_offset LONG, decision STRING, kept_partition INT, kept_offset LONG"


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


def prometheus_figures(figures: BatchFigures, reasons: pa.ChunkedArray, conflicts: int, partitions: list,
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
        input_rows=figures.input_rows, bronze_rows=figures.bronze_rows, correction_rows=figures.correction_rows,
        quarantined_rows=figures.quarantined_rows, duplicate_rows=figures.duplicate_rows,
        conflicting_rows=figures.conflicting_rows, late_rows=figures.late_rows, reasons=per_reason,
        duration_s=max(0, committed_ms - figures.started_ms) / 1000, committed_at=committed_ms / 1000,
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


@dataclass(frozen=True)
class BatchKeys:
    """What the driver collects of a batch: the valid records' keys, and of every record its Kafka partition
    and timestamp."""

    input_rows: int
    valid: list[SaleKey]  # the records that pass the contract, in the batch's order
    partitions: list[int]
    record_ms: list[int | None]  # each record's Kafka timestamp (ms since the epoch)
    reasons: pa.ChunkedArray | None  # each record's reasons, broken ones only (when Prometheus counts them)

    @property
    def broken(self) -> int:
        return self.input_rows - len(self.valid)


@dataclass(frozen=True)
class BatchDecision:
    """What the batch's keys decided against the state: the records not kept, the ones kept, the figures."""

    decisions: list[Decision]  # duplicates and conflicting ids
    kept: dict[str, list[Kept]]  # by key (a correction's key starts with CORRECTION_MARK)
    figures: BatchFigures
    newest: int | None  # latest event time kept once this batch is committed: the tags' watermark base

    @property
    def conflicts(self) -> int:
        return self.figures.conflicting_rows


@dataclass(frozen=True)
class PlannedCommit:
    """One commit of a batch: the table, its rows (made when committed), partition column and properties."""

    path: LakePath
    rows: Callable[[], DataFrame]
    partition_by: str | None = None
    properties: dict[str, str] | None = None


def _append_tagged(commit: PlannedCommit, tag: CommitTag) -> None:
    append_delta(commit.rows(), commit.path, commit.partition_by, user_metadata=tag.to_json(),
                 properties=commit.properties)


def commit_together(commits: Sequence[tuple[LakePath, Callable[[], None]]]) -> list[tuple[str, float]]:
    """Run a batch's commits to different tables side by side; (table name, wall time) of each.

    Each commit is tagged with the batch, so a restart finds which tables hold the batch whatever the order
    they were committed in (``recovery``), and writes only the others; the figures' tag may then be read
    back before the batch's other commits are made, which is why a replayed batch whose figures were recovered
    adds no metrics row of its own. The threads inherit the stream's job group, so stopping the query cancels
    their Spark jobs too. The first error, if any, is raised once every commit has ended.
    """
    times: list[tuple[str, float]] = []
    errors: list[BaseException] = []

    def run(path: LakePath, commit: Callable[[], None]) -> None:
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

    def __init__(self, spark: SparkSession, cfg: Config, paths: Paths, checkpoint: LakePath,
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
        self._recovered: set[int] = set()  # batches whose figures were found in the commits' tags
        self.last_kafka_lag: int | None = None
        self.last_counts: dict[int, dict] = {}  # batch id -> its metrics row, for the progress listener

    @property
    def query_id(self) -> str:
        if self._query_id is None:
            self._query_id = checkpoint_query_id(self.checkpoint)
        return self._query_id

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

    def _process(self, checked: DataFrame, batch_id: int, started_ms: int) -> None:
        """Collect the keys, decide, plan the commits, commit, then record the batch's figures."""
        steps = _Steps()
        keys = self._collect_keys(checked)
        steps.done("collect")
        written: set[LakePath] = set()  # tables that hold this batch already (a batch replayed after a restart)
        state = self._state
        if state is None:
            state, written = self._start_run(batch_id)
            steps.done("restart state")
        decision = self._decide(keys, state, batch_id, started_ms)
        steps.done("decide")
        self._commit(self._plan_commits(checked, decision, batch_id), written, decision, batch_id, steps)
        self._record(keys, decision, state, batch_id)
        steps.done("state")
        log.debug("Batch %d steps: %s", batch_id, steps)

    def _collect_keys(self, checked: DataFrame) -> BatchKeys:
        """The batch's keys on the driver, in one collect."""
        # Through Arrow: a drain batch's 100,000 keys arrive in a third of the time a row collect takes.
        # The broken records' reasons only when Prometheus counts them.
        exported = [F.when(F.size("reasons") > 0, F.col("reasons")).alias("reasons")] if self.metrics else []
        table = checked.select((F.size("reasons") == 0).alias("ok"), dedup_key(), F.unix_micros("event_ts"),
                               record_content(), "kafka_partition", "kafka_offset",
                               F.unix_millis("kafka_timestamp"), *exported).toArrow()
        ok, ids, events, contents, partitions, offsets, kafka_ms = (c.to_pylist() for c in table.columns[:7])
        valid = [SaleKey(*k) for flag, *k in zip(ok, ids, events, contents, partitions, offsets) if flag]
        return BatchKeys(table.num_rows, valid, partitions, kafka_ms,
                         table.column("reasons") if self.metrics else None)

    def _start_run(self, batch_id: int) -> tuple[DedupState, set[LakePath]]:
        """First batch of this run: recover the state, and the figures missing from the metrics table, from
        the commits (``recovery``); the state, and the tables that hold this batch already."""
        found = Recovery(self.spark, self.paths, self.query_id, self.delay_us).recover(batch_id)
        self._state = found.state
        for row in found.rows:
            self.sink.add(row)
        self._recovered |= found.batches
        return found.state, found.written

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
        for key, event_us, content, partition, offset in kept_rows(self.spark, self.paths, self.query_id,
                                                                   batch_id, where):
            state.remember(key, Kept(event_us, content, partition, offset))

    def _decide(self, keys: BatchKeys, state: DedupState, batch_id: int, started_ms: int) -> BatchDecision:
        """Duplicates, conflicting ids and late records, from the keys and the state (which it does not
        change but for the look-ups of pruned ids), and the batch's figures."""
        to_look_up = [k for k in keys.valid if state.needs_lookup(k)]
        if to_look_up:
            self._look_up(state, to_look_up, batch_id)
        watermark_us = state.watermark_us
        decisions, kept = find_duplicates(keys.valid, state.seen, self.delay_us)
        duplicates = sum(d.kind == "duplicate" for d in decisions)
        conflicts = len(decisions) - duplicates
        kept_times = [s.event_us for sales in kept.values() for s in sales]
        kept_corrections = sum(len(sales) for key, sales in kept.items() if key.startswith(CORRECTION_MARK))
        late = 0 if watermark_us is None else sum(t < watermark_us for t in kept_times)
        kafka_ms = [t for t in keys.record_ms if t is not None]
        batch_max = max(kept_times, default=None)
        figures = BatchFigures(
            started_ms=started_ms, input_rows=keys.input_rows,
            bronze_rows=len(kept_times) - kept_corrections, correction_rows=kept_corrections,
            quarantined_rows=keys.broken + conflicts, duplicate_rows=duplicates, conflicting_rows=conflicts,
            late_rows=late, max_event_us=batch_max, watermark_us=watermark_us,
            kafka_p50_ms=statistics.median_low(kafka_ms) if kafka_ms else None,
            kafka_min_ms=min(kafka_ms) if kafka_ms else None, kafka_lag=self.last_kafka_lag)
        newest = max((t for t in (state.max_event_us, batch_max) if t is not None), default=None)
        return BatchDecision(decisions, kept, figures, newest)

    def _decisions_df(self, decisions: list[Decision]) -> DataFrame | None:
        if not decisions:
            return None
        return self.spark.createDataFrame(
            [(d.key.partition, d.key.offset, d.kind, d.kept.partition, d.kept.offset) for d in decisions],
            DECISIONS_SCHEMA)

    def _plan_commits(self, checked: DataFrame, decision: BatchDecision, batch_id: int) -> list[PlannedCommit]:
        """The batch's commits: quarantine, duplicates, corrections, sales (each only when it has rows); the
        last one listed carries the figures."""
        app, figures = self.query_id, decision.figures
        watermark_us = figures.watermark_us
        decisions_df = self._decisions_df(decision.decisions)
        sales = figures.bronze_rows
        plan = []
        if figures.quarantined_rows:  # broken records or conflicting ids
            plan.append(PlannedCommit(self.paths.quarantine,
                                      lambda: to_quarantine_rows(checked, decisions_df, app, batch_id)))
        if figures.duplicate_rows and decisions_df is not None:  # (a duplicate is one of the decisions)
            plan.append(PlannedCommit(self.paths.duplicates,
                                      lambda: to_duplicate_rows(checked, decisions_df, app, batch_id)))
        if figures.correction_rows:
            plan.append(PlannedCommit(self.paths.corrections, lambda: to_bronze_rows(
                checked, decisions_df, watermark_us, app, batch_id, corrections=True).coalesce(1), "jour",
                CORRECTIONS_TABLE_PROPERTIES))
        if sales:
            files = max(1, min(self.spark.sparkContext.defaultParallelism, math.ceil(sales / ROWS_PER_FILE)))
            plan.append(PlannedCommit(self.paths.bronze, lambda: to_bronze_rows(
                checked, decisions_df, watermark_us, app, batch_id).coalesce(files), "jour",
                BRONZE_TABLE_PROPERTIES))
        return plan

    def _commit(self, plan: list[PlannedCommit], written: set[LakePath], decision: BatchDecision, batch_id: int,
                steps: _Steps) -> None:
        """Append each planned commit, tagged, but to the tables in ``written``: exactly once per batch. The
        commits to different tables run side by side (``commit_together``). The last planned commit's tag
        carries the figures (already committed when that table is in ``written``)."""
        commits = [(commit.path, partial(_append_tagged, commit, CommitTag(
                        self.query_id, batch_id, decision.newest,
                        decision.figures.to_tag() if i == len(plan) - 1 else None)))
                   for i, commit in enumerate(plan) if commit.path not in written]
        steps.add(commit_together(commits))

    def _record(self, keys: BatchKeys, decision: BatchDecision, state: DedupState, batch_id: int) -> None:
        """After the commits: the batch's metrics row (to the sink, unless recovered already), the state, the
        Prometheus figures and the row for the progress listener."""
        committed_ms = int(self.clock() * 1000)
        row = metrics_row(self.query_id, batch_id, decision.figures, committed_ms)
        if batch_id not in self._recovered:
            self.sink.add(row)
        state.add(decision.kept)
        if self.metrics is not None:
            self.metrics.batch(prometheus_figures(decision.figures, keys.reasons, decision.conflicts,
                                                  keys.partitions, keys.record_ms, committed_ms, state))
        self.last_counts[batch_id] = row
