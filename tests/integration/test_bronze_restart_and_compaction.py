"""The Bronze writer on real Delta tables, at a larger scale than tests/integration/test_bronze_commits.py
(whose helpers these tests use): a crash and a restart over a dozen commits, and two dozen batches each writing
its metrics row while OPTIMIZE compacts the metrics table under them."""

from __future__ import annotations

import datetime as dt
import threading

from pyspark.sql import functions as F

from lakehouse.bronze.metrics_sink import MetricsSink
from tests.integration import test_bronze_commits as small_batches
from tests.integration.test_bronze_commits import DAY0, NOW, Feed, load, sale, sales_at, spoil_partition, writer

lake = small_batches.lake  # the fixture: a data folder with a Bronze checkpoint's metadata


def test_restart_recovers_figures_writes_nothing_twice_and_decides_as_before(spark, lake) -> None:
    cfg, paths, _ = lake
    feed = Feed(spark)
    old_day, today = DAY0, DAY0 + dt.timedelta(days=30)
    batches = [
        feed.batch(sales_at("old", old_day, 5)),
        feed.batch(sales_at("new", today, 5) + [(b"{", today)]),  # one record for the quarantine
        # A repeat of new1 (duplicate), new2 with other content (conflict), a late new sale, a fresh one.
        feed.batch([(sale("new1", today + dt.timedelta(seconds=1)), today),
                    (sale("new2", today + dt.timedelta(seconds=2), montant=99), today),
                    (sale("late", today - dt.timedelta(hours=2)), today),
                    (sale("fresh", today + dt.timedelta(minutes=1)), today)]),
        feed.batch([(sale("new0", today), today), (sale("fresher", today + dt.timedelta(minutes=2)), today)]),
    ]
    first = writer(spark, lake)
    for batch_id in (0, 1, 2):
        first(batches[batch_id], batch_id)
    # Killed after batch 2 committed, before Spark recorded it: the metrics table never received a row.
    # The old day becomes unreadable: a restart that read the whole table would fail.
    spoil_partition(paths, old_day.date().isoformat())
    after_crash = writer(spark, lake)
    after_crash(batches[2], 2)  # Spark replays the last planned batch: already committed, written nowhere again
    after_crash(batches[3], 3)
    after_crash.sink.close()

    bronze = load(spark, paths.bronze).filter(F.col("jour") != old_day.date().isoformat()).collect()
    assert sorted(r.vente_id for r in bronze) == sorted([f"new{i}" for i in range(5)] + ["late", "fresh", "fresher"])
    late = {r.vente_id: r.is_late for r in bronze}
    assert late["late"] and not late["fresh"] and not late["fresher"]
    assert sorted(r.reason for r in load(spark, paths.quarantine).collect()) == ["conflicting_id", "not_json"]
    assert load(spark, paths.duplicates).count() == 2
    metrics = {r.batch_id: r for r in load(spark, paths.bronze_metrics).collect()}
    assert sorted(metrics) == [0, 1, 2, 3]  # 0-2 recovered from their commits' tags, each once
    assert [metrics[b].input_rows for b in range(4)] == [5, 6, 4, 2]
    assert [metrics[b].bronze_rows for b in range(4)] == [5, 5, 2, 1]
    assert metrics[2].duplicate_rows == 1 and metrics[2].conflicting_rows == 1 and metrics[2].late_rows == 1
    assert metrics[3].duplicate_rows == 1 and metrics[1].quarantined_rows == 1 and metrics[1].duration_ms >= 0
    # One commit per batch that kept sales (the replay added none).
    history = spark.sql(f"DESCRIBE HISTORY delta.`{paths.bronze}`").filter("operation = 'WRITE'")
    assert history.count() == 4


def test_metrics_written_with_each_batch_survive_a_concurrent_optimize(spark, lake) -> None:
    """With ``metrics_interval = 0`` each batch MERGEs its metrics row itself, while the stream's own upkeep
    may OPTIMIZE the metrics table: Delta then refuses the MERGE that read a file the compaction replaced. The
    insert-only MERGE is idempotent, so it reads again and commits: no batch fails, every row is there once."""
    _, paths, _ = lake
    sink = MetricsSink(spark, paths.bronze_metrics, 0)
    done, compactions, errors = threading.Event(), [], []

    def compact() -> None:
        while not done.is_set():
            try:
                row = spark.sql(f"OPTIMIZE delta.`{paths.bronze_metrics}`").first()
                compactions.append(row["metrics"].numFilesRemoved)
            except Exception as e:  # noqa: BLE001 - the table may not exist yet; any other error fails below
                if "is not a Delta table" not in str(e):
                    errors.append(e)

    upkeep = threading.Thread(target=compact)
    upkeep.start()
    try:
        for batch_id in range(24):
            sink.add({"query_id": "q", "batch_id": batch_id, "committed_at": NOW.replace(tzinfo=None),
                      "input_rows": 1, "bronze_rows": 1, "quarantined_rows": 0, "duplicate_rows": 0,
                      "late_rows": 0, "conflicting_rows": 0, "duration_ms": 5, "kafka_lag": 0})
    finally:
        done.set()
        upkeep.join()
    assert not errors, errors
    assert sum(compactions) > 0  # the compaction did replace files while the rows were written
    assert sink.pending() == 0
    rows = load(spark, paths.bronze_metrics).groupBy("batch_id").count().collect()
    assert sorted((r.batch_id, r["count"]) for r in rows) == [(b, 1) for b in range(24)]
