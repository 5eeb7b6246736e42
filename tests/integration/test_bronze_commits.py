"""The Bronze writer's commit tags and restarts, on small batch DataFrames and real Delta tables (no broker).

A restart must decide as an uninterrupted run would, write nothing twice, recover the figures the metrics
table had not received, and read only the newest commits and the recent partitions: old partitions are
made unreadable here to prove that they are never read. The restart over a dozen commits and the metrics
written under a concurrent OPTIMIZE: tests/integration/test_bronze_restart_and_compaction.py.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.bronze import commit_tags
from lakehouse.bronze.commit_tags import CommitTag, batch_commits, latest_before, tags_back_to
from lakehouse.bronze.contract_check import TimeJudge, check_contract
from lakehouse.bronze.metrics_sink import MetricsSink
from lakehouse.bronze.recovery import tables_named
from lakehouse.bronze.writer import BronzeBatchWriter, to_bronze_rows
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
    # metrics_interval = 0: each batch writes its own figures to the metrics table before it ends (no sink
    # closed here, nothing left in its buffer), and they are the batch's.
    _, paths, checkpoint = lake
    query_id = json.loads((checkpoint / "metadata").read_text())["id"]
    feed, today = Feed(spark), DAY0 + dt.timedelta(days=30)
    w = writer(spark, lake, interval_s=0)
    figures = ("query_id", "batch_id", "input_rows", "bronze_rows", "quarantined_rows", "duplicate_rows", "late_rows",
               "conflicting_rows", "correction_rows")

    def written() -> list[tuple]:
        rows = load(spark, paths.bronze_metrics).collect()
        assert all(r.committed_at is not None and r.duration_ms >= 0 for r in rows)
        return sorted(tuple(r[f] for f in figures) for r in rows)

    w(feed.batch(sales_at("x", today, 3)), 0)
    assert w.sink.pending() == 0
    assert written() == [(query_id, 0, 3, 3, 0, 0, 0, 0, 0)]
    # x0 and x1 again (duplicates), a new sale, and a record that is not JSON (quarantined).
    w(feed.batch(sales_at("x", today, 2) + sales_at("y", today + dt.timedelta(minutes=1), 1) + [(b"{", today)]), 1)
    assert w.sink.pending() == 0
    assert written() == [(query_id, 0, 3, 3, 0, 0, 0, 0, 0), (query_id, 1, 4, 1, 1, 2, 0, 0, 0)]


def test_a_table_written_before_tags_is_read_to_find_a_replayed_batch(spark, lake) -> None:
    _, paths, checkpoint = lake
    batch = Feed(spark).batch(sales_at("v", DAY0 + dt.timedelta(days=30), 3))
    query_id = json.loads((checkpoint / "metadata").read_text())["id"]
    # Batch 0 committed by a version of the writer that did not tag its commits, then a crash. Judged over the
    # checked rows themselves, as the writer judges its cached batch: over the contract check's plan, Spark's
    # optimizer takes seconds.
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


def test_a_replay_names_the_tables_it_skips_on_object_storage_too() -> None:
    """The restart's log line lists the tables a replayed batch had written; object-storage locations have no
    order of their own, so they are named in the order of their text."""
    settings = S3Settings(endpoint="http://localhost:9000", region="us-east-1", path_style_access=True,
                          access_key="k", secret_key=None)
    written = {ObjectPath.from_uri(f"s3a://lake/bronze/{name}", settings) for name in ("ventes", "corrections")}
    assert tables_named(written) == "s3a://lake/bronze/corrections, s3a://lake/bronze/ventes"
    assert tables_named({Path("/data/b"), Path("/data/a")}) == "/data/a, /data/b"
