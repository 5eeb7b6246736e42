"""The Bronze writer's commit tags and restarts, on small batch DataFrames and real Delta tables (no broker).

A restart must decide as an uninterrupted run would, write nothing twice, recover the figures the metrics
table had not received, and read only the newest commits and the recent partitions: old partitions are
made unreadable here to prove that they are never read.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.bronze import commit_tags
from lakehouse.bronze.commit_tags import CommitTag, batch_commits, latest_before, tags_back_to
from lakehouse.bronze.contract_check import TimeJudge, check_contract
from lakehouse.bronze.metrics_sink import MetricsSink
from lakehouse.bronze.writer import BronzeBatchWriter, tables_named, to_bronze_rows
from lakehouse.ingest.contract import ContractLimits
from lakehouse.platform.delta import append_delta
from lakehouse.platform.lake import ObjectPath, S3Settings
from lakehouse.platform.paths import Paths
from tests.conftest import make_config

KAFKA_SCHEMA = T.StructType([
    T.StructField("key", T.BinaryType()), T.StructField("value", T.BinaryType()),
    T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()), T.StructField("timestamp", T.TimestampType()),
])
DAY0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
NOW = DAY0 + dt.timedelta(days=40)


def sale(vente_id: str, at: dt.datetime, montant: int = 10) -> bytes:
    return json.dumps({"vente_id": vente_id, "client_id": "C1", "produit_id": "P1", "timestamp": at.isoformat(),
                       "quantite": 1, "montant": montant, "client_nom": "a", "produit_nom": "b",
                       "categorie": "c", "pays": "France", "segment": "B2C"}).encode()


class Feed:
    """Kafka-like batches with increasing offsets, checked by the contract as the stream does."""

    def __init__(self, spark):
        self.spark, self.offset = spark, 0

    def batch(self, records: list[tuple[bytes, dt.datetime]]):
        rows = []
        for value, kafka_ts in records:
            rows.append((b"k", bytearray(value), "t", 0, self.offset, kafka_ts.replace(tzinfo=None)))
            self.offset += 1
        df = self.spark.createDataFrame(rows, KAFKA_SCHEMA)
        return check_contract(df, ContractLimits())


def sales_at(prefix: str, at: dt.datetime, n: int) -> list[tuple[bytes, dt.datetime]]:
    return [(sale(f"{prefix}{i}", at + dt.timedelta(seconds=i)), at + dt.timedelta(seconds=i)) for i in range(n)]


@pytest.fixture
def lake(spark, tmp_path: Path):
    cfg = make_config(tmp_path / "data")
    paths = Paths.from_config(cfg)
    checkpoint = paths.bronze_checkpoint
    checkpoint.mkdir(parents=True)
    (checkpoint / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}))
    return cfg, paths, checkpoint


def writer(spark, lake, interval_s: float = 3600.0) -> BronzeBatchWriter:
    cfg, paths, checkpoint = lake
    # A long interval: nothing reaches the metrics table unless the sink is closed (a crash loses the buffer).
    return BronzeBatchWriter(spark, cfg, paths, checkpoint, MetricsSink(spark, paths.bronze_metrics, interval_s),
                             clock=NOW.timestamp)


def load(spark, path: Path):
    return spark.read.format("delta").load(str(path))


def spoil_partition(paths: Paths, jour: str) -> None:
    """Make a Bronze day unreadable: any read of it fails with a missing file."""
    files = list((paths.bronze / f"jour={jour}").glob("*.parquet"))
    assert files
    for f in files:
        f.unlink()


def test_tag_round_trip_and_foreign_commits() -> None:
    tag = CommitTag("q", 7, 123, {"input_rows": 3})
    assert CommitTag.from_json(tag.to_json(), 99) == CommitTag("q", 7, 123, {"input_rows": 3}, 99)
    for foreign in (None, "", "not json", "[1]", '{"kind": "other"}', "{\"batch_id\": 1}"):
        assert CommitTag.from_json(foreign) is None
    tags = [CommitTag("q", b, None, None) for b in (9, 8, 8, 6)]
    assert batch_commits(tags, 8) and not batch_commits(tags, 7) and not batch_commits(None, 8)
    assert latest_before(tags, 8).batch_id == 6 and latest_before(tags, 6) is None


def test_history_walk_passes_over_other_commits_and_reads_only_what_it_needs(spark, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(commit_tags, "FIRST_STEP", 2)
    path = tmp_path / "t"
    df = spark.range(1)
    append_delta(df, path)  # an untagged first commit (another writer)
    for batch in range(3):
        append_delta(df, path, user_metadata=CommitTag("q", batch, batch * 10, None).to_json())
        append_delta(df, path)  # upkeep-like commits between the stream's
        append_delta(df, path, user_metadata=CommitTag("other", batch, None, None).to_json())
    tags = tags_back_to(spark, path, "q", 1)  # the history read 2, 4, then 8 commits at a time
    assert [t.batch_id for t in tags] == [2, 1, 0]
    assert all(t.committed_ms is not None for t in tags)
    assert [t.batch_id for t in tags_back_to(spark, path, "q", 2)] == [2, 1]
    assert tags_back_to(spark, path, "nobody", 3) is None  # a table written before tags: read it instead
    assert tags_back_to(spark, tmp_path / "missing", "q", 3) == []


@pytest.mark.integration  # a crash and a restart over a dozen Delta commits
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


def test_late_sales_are_looked_up_in_their_own_days_only(spark, lake) -> None:
    _, paths, _ = lake
    feed = Feed(spark)
    long_ago, last_week, today = DAY0, DAY0 + dt.timedelta(days=23), DAY0 + dt.timedelta(days=30)
    w = writer(spark, lake)
    w(feed.batch(sales_at("a", long_ago, 2)), 0)
    w(feed.batch(sales_at("b", last_week, 2)), 1)
    w(feed.batch(sales_at("c", today, 2)), 2)
    spoil_partition(paths, long_ago.date().isoformat())
    # Late repeats of last week's sales: looked up in last week's partition, not in the spoilt one.
    w(feed.batch([(sale("b0", last_week), today), (sale("b1", last_week + dt.timedelta(seconds=1), 7), today)]), 3)
    w.sink.close()
    metrics = {r.batch_id: r for r in load(spark, paths.bronze_metrics).collect()}
    assert metrics[3].duplicate_rows == 1 and metrics[3].conflicting_rows == 1 and metrics[3].bronze_rows == 0


def test_metrics_every_batch_with_a_zero_interval(spark, lake) -> None:
    _, paths, _ = lake
    w = writer(spark, lake, interval_s=0)
    w(Feed(spark).batch(sales_at("x", DAY0 + dt.timedelta(days=30), 3)), 0)
    assert load(spark, paths.bronze_metrics).count() == 1 and w.sink.pending() == 0


def test_a_table_written_before_tags_is_read_to_find_a_replayed_batch(spark, lake) -> None:
    _, paths, checkpoint = lake
    batch = Feed(spark).batch(sales_at("v", DAY0 + dt.timedelta(days=30), 3))
    query_id = json.loads((checkpoint / "metadata").read_text())["id"]
    # Batch 0 committed by a version of the writer that did not tag its commits, then a crash. Judged over the
    # checked rows themselves, as the writer judges its cached batch: over the contract check's plan, Spark's
    # optimizer takes about 6 s.
    checked = spark.createDataFrame(batch.collect(), batch.schema)
    judged = TimeJudge(ContractLimits(), batch.columns)(checked, int(NOW.timestamp() * 1_000_000))
    append_delta(to_bronze_rows(judged, None, None, query_id, 0), paths.bronze, "jour")
    w = writer(spark, lake)
    w(batch, 0)  # the replay finds the rows in the table itself
    w.sink.close()
    assert load(spark, paths.bronze).count() == 3
    assert load(spark, paths.bronze_metrics).first().bronze_rows == 3


def test_a_batch_is_judged_with_the_time_spark_gave_it(spark, lake) -> None:
    # A batch run again after a crash must decide as it did the first time: its event times are judged
    # against the time in its offset log entry, not the clock of the run that replays it.
    _, paths, checkpoint = lake
    planned = DAY0 + dt.timedelta(days=30)
    (checkpoint / "offsets").mkdir()
    (checkpoint / "offsets" / "0").write_text(
        'v1\n{"batchWatermarkMs":0,"batchTimestampMs":%d}\n{"t":{"0":1}}\n' % (planned.timestamp() * 1000))
    # Sent with a Kafka timestamp a day past the batch's time: the reference is the batch's time, and the
    # sale is a day ahead of it. Judged with the writer's clock (NOW, ten days later), it would pass.
    ahead = planned + dt.timedelta(days=1)
    w = writer(spark, lake)
    w(Feed(spark).batch([(sale("a", ahead), ahead)]), 0)
    w.sink.close()
    assert [r.reason for r in load(spark, paths.quarantine).collect()] == ["future_event"]
    assert not (paths.bronze / "_delta_log").exists()


def test_a_second_writer_on_the_same_checkpoint_adds_no_metrics_row_twice(spark, lake) -> None:
    # Issue #32: a second instance started on the same configuration found in the commits' tags the
    # figures of batches the running one had not flushed yet (a 10 s interval) and appended them; the
    # running one appended them too. Both now insert only the (query id, batch id) the table lacks.
    _, paths, _ = lake
    feed = Feed(spark)
    today = DAY0 + dt.timedelta(days=30)
    running = writer(spark, lake)
    for batch_id in (0, 1, 2):
        running(feed.batch(sales_at(f"r{batch_id}-", today + dt.timedelta(minutes=batch_id), 2)), batch_id)
    second = writer(spark, lake)
    second(feed.batch(sales_at("s", today + dt.timedelta(minutes=5), 2)), 3)  # recovers 0-2 from the tags
    second.sink.close()
    running.sink.close()
    # Rows written again (a retry after a commit that did reach the table) add nothing either.
    again = MetricsSink(spark, paths.bronze_metrics, 3600)
    for row in load(spark, paths.bronze_metrics).collect():
        again.add(row.asDict())
    assert again.flush() == 4
    metrics = load(spark, paths.bronze_metrics)
    assert sorted((r.batch_id, r["count"]) for r in metrics.groupBy("batch_id").count().collect()) == \
        [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert metrics.agg(F.sum("input_rows")).first()[0] == 8


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


def test_a_replay_names_the_tables_it_skips_on_object_storage_too() -> None:
    """The restart's log line lists the tables a replayed batch had written; object-storage locations have no
    order of their own, so they are named in the order of their text."""
    settings = S3Settings(endpoint="http://localhost:9000", region="us-east-1", path_style_access=True,
                          access_key="k", secret_key=None)
    written = {ObjectPath.from_uri(f"s3a://lake/bronze/{name}", settings) for name in ("ventes", "corrections")}
    assert tables_named(written) == "s3a://lake/bronze/corrections, s3a://lake/bronze/ventes"
    assert tables_named({Path("/data/b"), Path("/data/a")}) == "/data/a, /data/b"
