"""Real Spark with the Delta and Kafka jars, against the real broker."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

from pyspark.sql import Row
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from lakehouse.bronze import with_parsed_sale
from tests.conftest import produce, sale_json


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


KAFKA_SCHEMA = T.StructType([
    T.StructField("key", T.BinaryType()), T.StructField("value", T.BinaryType()),
    T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()), T.StructField("timestamp", T.TimestampType()),
])


def test_with_parsed_sale_keeps_lineage_and_normalizes(spark) -> None:
    kafka_ts = dt.datetime(2024, 12, 12, 10, 15, 26)
    good = sale_json(vente_id=7, client_id=42, produit_id="P1", timestamp="2024-12-12T10:15:25.123456",
                     quantite=2, montant=150.5, client_nom="Jean Dupont", produit_nom="Souris",
                     categorie="Accessoires", pays="France", segment="Particulier", extra="ignored")
    kafka_df = spark.createDataFrame(
        [(b"42", bytearray(good), "t", 0, 5, kafka_ts), (None, bytearray(b"not json"), "t", 1, 0, kafka_ts)],
        KAFKA_SCHEMA)
    actual_df = kafka_df.transform(with_parsed_sale).drop("ingestion_ts")
    expected_df = spark.createDataFrame([
        Row(vente_id="7", client_id="42", produit_id="P1",
            event_ts=dt.datetime(2024, 12, 12, 10, 15, 25, 123456), quantite=2, montant=Decimal("150.50"),
            client_nom="Jean Dupont", produit_nom="Souris", categorie="Accessoires", pays="France",
            segment="B2C", raw_value=good.decode(), kafka_key="42", kafka_topic="t", kafka_partition=0,
            kafka_offset=5, kafka_timestamp=kafka_ts, jour=dt.date(2024, 12, 12)),
        Row(vente_id=None, client_id=None, produit_id=None, event_ts=None, quantite=None, montant=None,
            client_nom=None, produit_nom=None, categorie=None, pays=None, segment=None,
            raw_value="not json", kafka_key=None, kafka_topic="t", kafka_partition=1, kafka_offset=0,
            kafka_timestamp=kafka_ts, jour=None),
    ], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)
    assert json.loads(good)["extra"] == "ignored"
