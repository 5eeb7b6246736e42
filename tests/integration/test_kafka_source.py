"""Real Spark with the Kafka jars against the real broker: what kafka-python sends, Spark's Kafka source reads
back byte for byte."""

from __future__ import annotations

from pyspark.testing import assertDataFrameEqual

from tests.conftest import produce


def test_message_from_kafka_python_is_read_by_spark_kafka_source(spark, kafka_bootstrap, topic) -> None:
    records = [("C1", b'{"vente_id": 1}'), ("C2", "é€".encode()), (None, b"")]
    produce(kafka_bootstrap, topic, records)
    actual_df = (spark.read.format("kafka").option("kafka.bootstrap.servers", kafka_bootstrap)
                 .option("subscribe", topic).option("startingOffsets", "earliest").load()
                 .selectExpr("CAST(key AS STRING) AS key", "value"))
    expected_df = spark.createDataFrame(
        [(k, bytearray(v)) for k, v in records], "key STRING, value BINARY")
    assertDataFrameEqual(actual_df, expected_df)
