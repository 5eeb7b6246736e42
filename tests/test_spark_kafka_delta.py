"""Real Spark with the Delta and Kafka jars, against the real broker."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pyspark.testing import assertDataFrameEqual

from tests.conftest import produce


def test_delta_round_trip(spark, tmp_path: Path) -> None:
    expected_df = spark.createDataFrame([(1, "France", Decimal("10.50")), (2, None, None)],
                                        "id INT, pays STRING, montant DECIMAL(12,2)")
    expected_df.write.format("delta").save(str(tmp_path / "t"))
    actual_df = spark.read.format("delta").load(str(tmp_path / "t"))
    assertDataFrameEqual(actual_df, expected_df)
    history = spark.sql(f"DESCRIBE HISTORY delta.`{tmp_path / 't'}`").collect()
    assert [h.operation for h in history] == ["WRITE"]


def test_message_from_kafka_python_is_read_by_spark_kafka_source(spark, kafka_bootstrap, topic) -> None:
    records = [("C1", b'{"vente_id": 1}'), ("C2", "é€".encode()), (None, b"")]
    produce(kafka_bootstrap, topic, records)
    actual_df = (spark.read.format("kafka").option("kafka.bootstrap.servers", kafka_bootstrap)
                 .option("subscribe", topic).option("startingOffsets", "earliest").load()
                 .selectExpr("CAST(key AS STRING) AS key", "value"))
    expected_df = spark.createDataFrame(
        [(k, bytearray(v)) for k, v in records], "key STRING, value BINARY")
    assertDataFrameEqual(actual_df, expected_df)


