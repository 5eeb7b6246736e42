"""Bronze transforms on small batch DataFrames: contract check, typing, duplicates, late, quarantine."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from pyspark.sql import Row
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from lakehouse.bronze import (BRONZE_COLUMNS, QUARANTINE_COLUMNS, DedupState, SaleKey, find_duplicates,
                              to_bronze_rows, to_quarantine_rows, with_contract_check)
from lakehouse.ingest.contract import violations
from lakehouse.ingest.simulator import SalesSimulator

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
    actual_df = to_quarantine_rows(checked, "q", 4).select("kafka_offset", "reason", "raw_value", "raw_text",
                                                           "bronze_query_id", "bronze_batch_id")
    expected_df = spark.createDataFrame([
        (0, "non_utf8", bytearray(b"\xff\xfebad"), None, "q", 4),
        (1, "empty", bytearray(b""), None, "q", 4),
        (2, "missing_field", bytearray(b'{"quantite": 0}'), '{"quantite": 0}', "q", 4),
    ], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)
    assert to_quarantine_rows(checked, "q", 4).columns == QUARANTINE_COLUMNS
    reasons = {r.kafka_offset: r.reasons for r in to_quarantine_rows(checked, "q", 4).collect()}
    assert reasons[2][-1] == "bad_quantity" and "missing_field:vente_id" in reasons[2]


MIN_US = 60_000_000
DELAY_US = 10 * MIN_US


def test_duplicates_within_batch_and_against_earlier_batches() -> None:
    t0 = 1_734_000_000_000_000
    keys = [
        SaleKey("A", t0, 0, 10),                  # first A
        SaleKey("A", t0 + MIN_US, 1, 3),          # same A a minute later, later partition: duplicate
        SaleKey("A", t0, 0, 9),                   # ... but this one came first in partition 0
        SaleKey("B", t0, 0, 11),                  # B kept by an earlier batch 5 minutes away: duplicate
        SaleKey("C", t0 + 30 * MIN_US, 0, 12),    # C kept before, but 30 minutes away: kept
        SaleKey("D", t0 - 120 * MIN_US, 0, 13),   # new, old event time (late): kept
    ]
    seen = {"B": [t0 + 5 * MIN_US], "C": [t0]}
    duplicates, kept = find_duplicates(keys, seen, DELAY_US)
    assert duplicates == [SaleKey("A", t0, 0, 10), SaleKey("B", t0, 0, 11), SaleKey("A", t0 + MIN_US, 1, 3)]
    assert kept == {"A": [t0], "C": [t0 + 30 * MIN_US], "D": [t0 - 120 * MIN_US]}
    assert seen == {"B": [t0 + 5 * MIN_US], "C": [t0]}  # unchanged until the batch commits


def test_state_watermark_pruning_and_lookups() -> None:
    state = DedupState(DELAY_US)
    assert state.watermark_us is None and not state.needs_lookup(SaleKey("X", 0, 0, 0))
    t0 = 1_734_000_000_000_000
    state.add({"A": [t0], "B": [t0 + 5 * MIN_US]})
    assert state.watermark_us == t0 + 5 * MIN_US - DELAY_US
    state.add({"C": [t0 + 40 * MIN_US]})
    # The floor is the latest event time minus twice the delay: A and B can no longer match an on-time sale.
    assert state.floor_us == t0 + 20 * MIN_US and state.seen == {"C": [t0 + 40 * MIN_US]}
    assert state.watermark_us == t0 + 30 * MIN_US
    on_time, late = SaleKey("Y", t0 + 31 * MIN_US, 0, 0), SaleKey("A", t0 + 2 * MIN_US, 0, 1)
    assert not state.needs_lookup(on_time) and state.needs_lookup(late)


def test_bronze_rows_leave_out_duplicates_and_flag_late_sales(spark) -> None:
    def sale(vente_id, timestamp):
        return json.dumps({"vente_id": vente_id, "client_id": 2, "produit_id": 3, "timestamp": timestamp,
                           "quantite": 1, "montant": 1, "client_nom": "a", "produit_nom": "b",
                           "categorie": "c", "pays": "d", "segment": "B2C"}).encode()
    checked = kafka_rows(spark, [sale(1, "2024-12-12T10:00:00"), sale(1, "2024-12-12T10:00:00"),
                                 sale(2, "2024-12-12T08:00:00"), b"{}"]) \
        .transform(lambda df: with_contract_check(df, 65536))
    duplicates_df = spark.createDataFrame([(0, 1)], "kafka_partition INT, kafka_offset LONG")
    watermark_us = int(dt.datetime(2024, 12, 12, 9, 50, tzinfo=dt.timezone.utc).timestamp() * 1_000_000)
    bronze = to_bronze_rows(checked, duplicates_df, watermark_us, "q", 5)
    assert bronze.columns == BRONZE_COLUMNS
    actual_df = bronze.select("vente_id", "kafka_offset", "is_late", "bronze_query_id", "bronze_batch_id")
    expected_df = spark.createDataFrame([("1", 0, False, "q", 5), ("2", 2, True, "q", 5)], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)
    no_watermark = to_bronze_rows(checked, None, None, "q", 5).select("kafka_offset", "is_late")
    assertDataFrameEqual(no_watermark, spark.createDataFrame([(0, False), (1, False), (2, False)],
                                                             no_watermark.schema))
