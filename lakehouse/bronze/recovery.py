"""What the Bronze writer needs after a restart, before it writes its first batch, read from the newest
commits' tags (``commit_tags``) instead of scanning the tables:

- the tables that already hold that batch (Spark runs a batch again when the job stopped after planning it
  and before recording it as done): they are not written again;
- where the watermark stood, and the recent kept sales and corrections an on-time record could duplicate;
- the figures of batches whose metrics row had not reached the metrics table (appended from their tags).

Tables written before commits were tagged are read instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.bronze.batch_figures import BatchFigures, metrics_row, utc
from lakehouse.bronze.commit_tags import CommitTag, batch_commits, latest_before, tags_back_to
from lakehouse.bronze.dedup import DedupState, Kept
from lakehouse.bronze.kept_records import earlier_rows, kept_rows
from lakehouse.platform.delta import delta_table_exists, one_row
from lakehouse.platform.lake import LakePath
from lakehouse.platform.paths import Paths

log = logging.getLogger(__name__)


def tables_named(paths: Iterable[LakePath]) -> str:
    """Table locations for a log line, in order (an object-storage location has no order of its own)."""
    return ", ".join(sorted(str(p) for p in paths))


@dataclass
class Recovered:
    """What a restart found before the run's first batch."""

    state: DedupState  # the duplicate and late checks' state, as of the batch
    written: set[LakePath] = field(default_factory=set)  # tables holding the batch already: not written again
    # Metrics rows found in the tags of batches the metrics table lacks, oldest first: to append.
    rows: list[dict[str, Any]] = field(default_factory=list)
    # Batches whose metrics row is in the table already or among ``rows``: not added again.
    batches: set[int] = field(default_factory=set)


class Recovery:
    """Restart recovery of one query (the checkpoint's id) over the lake's Bronze tables."""

    def __init__(self, spark: SparkSession, paths: Paths, query_id: str, delay_us: int):
        self.spark, self.paths, self.query_id, self.delay_us = spark, paths, query_id, delay_us

    def recover(self, batch_id: int) -> Recovered:
        """Read the newest commits' tags once, for the run's first batch ``batch_id``: what a replayed batch
        already wrote, the duplicate state, and figures missing from the metrics table.

        Spark re-runs a batch only when the job stopped after planning it and before recording it as
        done, and then it is the first batch of the next run: so only that batch is checked.
        """
        flushed = self.last_flushed_batch()
        batches = {batch_id} if batch_id <= flushed else set()  # the metrics table has this batch's row already
        tags = {path: tags_back_to(self.spark, path, self.query_id, min(batch_id, flushed + 1))
                for path in (self.paths.quarantine, self.paths.duplicates, self.paths.corrections, self.paths.bronze)}
        written = {path for path, found in tags.items()
                   if batch_commits(found, batch_id) or (found is None and self.rows_of_batch(path, batch_id))}
        if written:
            log.info("Batch %d was already committed to %s before a restart; not written again", batch_id,
                     tables_named(written))
        state = self.load_state(batch_id, tags[self.paths.bronze], tags[self.paths.corrections])
        # (batch, figures, commit time) of the batches newer than the metrics table's, from their last commits'
        # tags (a tag read from the history always has its commit's time).
        missing = sorted(((t.batch_id, t.figures, t.committed_ms) for found in tags.values() for t in found or ()
                          if t.figures is not None and t.committed_ms is not None and t.batch_id > flushed),
                         key=lambda m: m[0])
        rows = [metrics_row(self.query_id, batch, BatchFigures.from_tag(figures), committed_ms)
                for batch, figures, committed_ms in missing]
        batches |= {batch for batch, _, _ in missing}
        if missing:
            log.info("Figures of %d batch(es) not yet in the metrics table were recovered from their commits",
                     len(missing))
        return Recovered(state, written, rows, batches)

    def last_flushed_batch(self) -> int:
        """The newest batch of this query in the metrics table (-1 if none)."""
        if not delta_table_exists(self.paths.bronze_metrics):
            return -1
        top = one_row(self.spark.read.format("delta").load(str(self.paths.bronze_metrics))
                      .filter(F.col("query_id") == self.query_id).agg(F.max("batch_id")))[0]
        return -1 if top is None else top

    def rows_of_batch(self, path: LakePath, batch_id: int) -> bool:
        """Whether a table written before commits were tagged holds rows of this batch (read the table)."""
        table = self.spark.read.format("delta").load(str(path))
        return not table.filter((F.col("bronze_query_id") == self.query_id)
                                & (F.col("bronze_batch_id") == batch_id)).isEmpty()

    def load_state(self, batch_id: int, bronze_tags: list[CommitTag] | None,
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
            earlier = [earlier_rows(self.spark, p, self.query_id, batch_id) for p in tables]
            tops = [one_row(df.agg(F.max(F.unix_micros("event_ts"))))[0] for df in earlier if df is not None]
            top = max((t for t in tops if t is not None), default=None)
        if top is None:
            return state
        floor = top - 2 * self.delay_us
        recent = kept_rows(self.spark, self.paths, self.query_id, batch_id, lambda df, _: df.filter(
            (F.col("jour") >= F.to_date(F.timestamp_micros(F.lit(floor)))) & (F.unix_micros("event_ts") >= floor)))
        for key, event_us, content, partition, offset in recent:
            state.remember(key, Kept(event_us, content, partition, offset))
        state.max_event_us, state.floor_us = top, floor
        log.info("Duplicate check state: %d recent sales from Bronze, watermark %s", len(state.seen),
                 utc(state.watermark_us))
        return state
