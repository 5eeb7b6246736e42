"""The Bronze metrics table, written off the stream's hot path.

A batch's figures travel in its own data commit (``commit_tags``); the metrics table gets them in one
append every ``[streaming] metrics_interval`` from a background thread, and once more when the query
stops (an interval of 0 writes each batch's row with the batch, as one more commit). A crash loses no
figure: the next start finds the batches missing from the table in the commits' tags and appends them
first. (A batch with no record at all, only Kafka transaction markers, has no commit to carry its row:
that row is the one thing a crash before the next append can lose.)

The append is idempotent: a MERGE that inserts only the (query id, batch id) the table does not hold. So
a batch's row is in the table once whatever happens: a restart recovering rows the stopped run had
flushed after all, or two processes that both write them (a second instance started by mistake, on a
lake where the job lock cannot see it). Two such MERGEs at once conflict in Delta: the loser keeps its
rows and tries again at the next interval, when they are no longer new.
"""

from __future__ import annotations

import logging
import threading

from pyspark.sql import DataFrame, SparkSession

from lakehouse.bronze.columns import METRICS_SCHEMA
from lakehouse.platform.delta import append_delta, delta_table_exists, is_commit_conflict
from lakehouse.platform.lake import LakePath

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 5  # immediate retries of a MERGE refused for a concurrent commit


def insert_new_metrics(rows_df: DataFrame, path: LakePath) -> None:
    """Add to the metrics table the rows whose (query id, batch id) it does not hold yet (creating it on
    first use)."""
    from delta.tables import DeltaTable

    rows_df = rows_df.dropDuplicates(["query_id", "batch_id"])
    if not delta_table_exists(path):
        append_delta(rows_df, path)
        return
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            (DeltaTable.forPath(rows_df.sparkSession, str(path)).alias("t")
             .merge(rows_df.alias("s"), "t.query_id = s.query_id AND t.batch_id = s.batch_id")
             .whenNotMatchedInsertAll().withSchemaEvolution().execute())
            return
        except Exception as e:
            if attempt == CONFLICT_RETRIES or not is_commit_conflict(e):
                raise
            log.debug("Bronze metrics MERGE met a concurrent commit; reading the table again", exc_info=True)


class MetricsSink:
    """Buffers metrics rows and appends them to the metrics table in one commit per interval."""

    def __init__(self, spark: SparkSession, path: LakePath, interval_s: float):
        self.spark, self.path, self.interval_s = spark, path, interval_s
        self._rows: list[dict] = []
        self._lock = threading.Lock()  # guards _rows
        self._write_lock = threading.Lock()  # one append at a time (thread and final flush)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, row: dict) -> None:
        with self._lock:
            self._rows.append(row)
        if self.interval_s == 0:  # every batch writes its row itself
            try:
                self.flush()
            except Exception as e:
                if not is_commit_conflict(e):
                    raise
                log.warning("Bronze metrics not written yet (a concurrent commit, again and again); kept for "
                            "the next batch")
        elif self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bronze-metrics", daemon=True)
            self._thread.start()

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self) -> int:
        """Append the buffered rows now (rows stay buffered if the append fails); the rows written."""
        with self._write_lock:
            with self._lock:
                rows = list(self._rows)
            if not rows:
                return 0
            insert_new_metrics(self.spark.createDataFrame(rows, METRICS_SCHEMA), self.path)
            with self._lock:
                del self._rows[:len(rows)]
            return len(rows)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.flush()
            except Exception as e:  # noqa: BLE001 - the stream goes on; the rows are kept for the next try
                if self._stop.is_set():
                    return
                log.warning("Bronze metrics not written yet (%s); kept for the next try",
                            str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)

    def close(self) -> None:
        """Stop the thread and write what is left (call once the query has stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        self.flush()
