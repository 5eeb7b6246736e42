"""Real Spark with the Delta and Kafka jars: a Delta round trip, and a stream's checkpoint on a local disk. Against
the real broker: tests/integration/test_kafka_source.py."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pyspark.testing import assertDataFrameEqual

from lakehouse.platform.spark import FILE_SYSTEM_CHECKPOINT_FILES, local_checkpoint_settings
from tests.support.delta_rs import write_range


def test_delta_round_trip(spark, tmp_path: Path) -> None:
    expected_df = spark.createDataFrame([(1, "France", Decimal("10.50")), (2, None, None)],
                                        "id INT, pays STRING, montant DECIMAL(12,2)")
    expected_df.write.format("delta").save(str(tmp_path / "t"))
    actual_df = spark.read.format("delta").load(str(tmp_path / "t"))
    assertDataFrameEqual(actual_df, expected_df)
    history = spark.sql(f"DESCRIBE HISTORY delta.`{tmp_path / 't'}`").collect()
    assert [h.operation for h in history] == ["WRITE"]


def test_a_stream_on_a_local_disk_writes_its_checkpoint_through_the_file_system_api(spark, tmp_path: Path) -> None:
    """Streams whose checkpoint is on this machine write it through Hadoop's FileSystem API (Spark's default,
    FileContext, runs readlink in child processes for every file); on object storage Spark's default stays.
    A run writes each batch's offsets and commit, renamed into place (no temporary file left), and the next
    run takes up after them."""
    assert spark.conf.get("spark.sql.streaming.checkpointFileManagerClass") == FILE_SYSTEM_CHECKPOINT_FILES
    assert local_checkpoint_settings(object_storage=True) == {}
    source, checkpoint, seen = tmp_path / "source", tmp_path / "checkpoint", []

    def run() -> None:
        (spark.readStream.format("delta").load(str(source)).writeStream
         .foreachBatch(lambda df, batch: seen.append((batch, sorted(r.id for r in df.collect()))))
         .option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start().awaitTermination(120))

    # The source's two versions (spark.range's rows) through delta-rs: the stream's checkpoint is what is tested.
    write_range(source, 3)
    run()
    write_range(source, 3, 5)
    run()
    assert seen == [(0, [0, 1, 2]), (1, [3, 4])]
    for log in ("offsets", "commits"):
        assert {p.name for p in (checkpoint / log).iterdir()} == {"0", "1", ".0.crc", ".1.crc"}, log
