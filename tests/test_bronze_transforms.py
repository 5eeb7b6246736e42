"""Bronze transforms on small batch DataFrames: contract check, typing, duplicates, late, quarantine."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from pyspark.sql import Row
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from lakehouse.bronze import (BRONZE_COLUMNS, QUARANTINE_COLUMNS, to_bronze_rows, to_quarantine_rows,
                              with_contract_check, with_duplicate_and_late_flags)
from lakehouse.contract import violations
from lakehouse.simulator import SalesSimulator

KAFKA_SCHEMA = T.StructType([
    T.StructField("key", T.BinaryType()), T.StructField("value", T.BinaryType()),
    T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()), T.StructField("timestamp", T.TimestampType()),
])
KAFKA_TS = dt.datetime(2024, 12, 12, 10, 16)


def kafka_rows(spark, values: list[bytes | None]):
    return spark.createDataFrame(
        [(b"k", bytearray(v) if v is not None else None, "t", 0, i, KAFKA_TS) for i, v in enumerate(values)],
        KAFKA_SCHEMA)


def test_spark_contract_check_names_the_same_reasons_as_the_python_contract(spark) -> None:
    sim = SalesSimulator(3, 100, bad_ratio=0.6, duplicate_ratio=0.1, max_event_bytes=2048)
    gen = sim.records()
    values = [next(gen).value for _ in range(300)] + [None, b"[1, 2]", b'"texte"', b"null"]
    actual_df = kafka_rows(spark, values).transform(lambda df: with_contract_check(df, 2048)) \
        .select("kafka_offset", "reasons")
    expected_df = spark.createDataFrame([(i, violations(v, 2048)) for i, v in enumerate(values)],
                                        actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)


def test_valid_shapes_are_typed_and_normalized(spark) -> None:
    legacy = {"vente_id": 7, "client_id": 42, "produit_id": 3, "timestamp": "2024-12-12T10:15:25.123456",
              "quantite": 2, "montant": 150.5, "client_nom": "Jean Dupont", "produit_nom": "Souris",
              "categorie": "Accessoires", "pays": "France", "segment": "Particulier"}
    modern = {"vente_id": "a-b", "client_id": "C1", "produit_id": "P1",
              "timestamp": "2024-12-12T11:15:25.000+01:00", "quantite": 10, "montant": 1799.9,
              "prix_unitaire": 179.99, "client_nom": "ACME SA", "produit_nom": "Écran", "categorie": "IT",
              "pays": "Belgique", "ville": "Liège", "segment": "Entreprise", "canal": "web", "devise": "EUR",
              "contract_version": 1, "code_promo": "NOEL24"}
    values = [json.dumps(legacy).encode(), json.dumps(modern, ensure_ascii=False).encode()]
    actual_df = kafka_rows(spark, values).transform(lambda df: with_contract_check(df, 65536)).select(
        "reasons", "vente_id", "client_id", "produit_id", "event_ts", "jour", "quantite", "montant",
        "prix_unitaire", "segment", "ville", "canal", "contract_version", "raw_text")
    expected_df = spark.createDataFrame([
        Row(reasons=[], vente_id="7", client_id="42", produit_id="3",
            event_ts=dt.datetime(2024, 12, 12, 10, 15, 25, 123456), jour=dt.date(2024, 12, 12), quantite=2,
            montant=Decimal("150.50"), prix_unitaire=None, segment="B2C", ville=None, canal=None,
            contract_version=None, raw_text=values[0].decode()),
        Row(reasons=[], vente_id="a-b", client_id="C1", produit_id="P1",
            event_ts=dt.datetime(2024, 12, 12, 10, 15, 25), jour=dt.date(2024, 12, 12), quantite=10,
            montant=Decimal("1799.90"), prix_unitaire=Decimal("179.99"), segment="B2B", ville="Liège",
            canal="web", contract_version=1, raw_text=values[1].decode()),
    ], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)


def test_quarantine_keeps_raw_bytes_and_every_reason(spark) -> None:
    values = [b"\xff\xfebad", b"", b'{"quantite": 0}']
    checked = kafka_rows(spark, values).transform(lambda df: with_contract_check(df, 65536))
    actual_df = to_quarantine_rows(checked, 4).select("kafka_offset", "reason", "raw_value", "raw_text",
                                                      "bronze_batch_id")
    expected_df = spark.createDataFrame([
        (0, "non_utf8", bytearray(b"\xff\xfebad"), None, 4),
        (1, "empty", bytearray(b""), None, 4),
        (2, "missing_field", bytearray(b'{"quantite": 0}'), '{"quantite": 0}', 4),
    ], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)
    assert to_quarantine_rows(checked, 4).columns == QUARANTINE_COLUMNS
    reasons = {r.kafka_offset: r.reasons for r in to_quarantine_rows(checked, 4).collect()}
    assert reasons[2][-1] == "bad_quantity" and "missing_field:vente_id" in reasons[2]


def test_duplicates_within_batch_and_against_prior_rows_and_late_flags(spark) -> None:
    t0 = dt.datetime(2024, 12, 12, 10, 0)
    schema = "vente_id STRING, event_ts TIMESTAMP, kafka_partition INT, kafka_offset LONG"
    valid_df = spark.createDataFrame([
        ("A", t0, 0, 10),                                   # first A
        ("A", t0, 1, 3),                                    # same A, later partition: duplicate
        ("B", t0, 0, 11),                                   # B seen in a prior batch: duplicate
        ("C", t0 + dt.timedelta(minutes=30), 0, 12),        # C seen before, but 30 min away: kept
        ("D", t0 - dt.timedelta(hours=2), 0, 13),           # late
        ("E", None, 0, 14),                                 # no event time (cannot happen for valid rows)
    ], schema)
    prior_df = spark.createDataFrame([("B", t0 + dt.timedelta(minutes=5), 2, 0), ("C", t0, 2, 1)], schema)
    actual_df = with_duplicate_and_late_flags(valid_df, prior_df, "q1", 7, 600.0,
                                              t0 - dt.timedelta(minutes=10)) \
        .select("vente_id", "kafka_partition", "kafka_offset", "is_duplicate", "is_late",
                "bronze_query_id", "bronze_batch_id")
    expected_df = spark.createDataFrame([
        ("A", 0, 10, False, False, "q1", 7), ("A", 1, 3, True, False, "q1", 7),
        ("B", 0, 11, True, False, "q1", 7), ("C", 0, 12, False, False, "q1", 7),
        ("D", 0, 13, False, True, "q1", 7), ("E", 0, 14, False, None, "q1", 7),
    ], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)


def test_no_watermark_yet_means_nothing_is_late(spark) -> None:
    valid_df = spark.createDataFrame([("A", dt.datetime(2000, 1, 1), 0, 1)],
                                     "vente_id STRING, event_ts TIMESTAMP, kafka_partition INT, kafka_offset LONG")
    flagged = with_duplicate_and_late_flags(valid_df, None, "q", 0, 600.0, None)
    assert [(r.is_duplicate, r.is_late) for r in flagged.collect()] == [(False, False)]


def test_bronze_rows_drop_duplicates_and_keep_columns(spark) -> None:
    checked = kafka_rows(spark, [json.dumps({
        "vente_id": 1, "client_id": 2, "produit_id": 3, "timestamp": "2024-12-12T10:00:00", "quantite": 1,
        "montant": 1, "client_nom": "a", "produit_nom": "b", "categorie": "c", "pays": "d",
        "segment": "B2C"}).encode()] * 2).transform(lambda df: with_contract_check(df, 65536))
    flagged = with_duplicate_and_late_flags(checked, None, "q", 0, 600.0, None)
    bronze = to_bronze_rows(flagged)
    assert bronze.columns == BRONZE_COLUMNS
    assert [(r.vente_id, r.kafka_offset) for r in bronze.collect()] == [("1", 0)]
