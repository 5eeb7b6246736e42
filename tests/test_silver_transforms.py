"""Silver transforms on small hand-built Bronze data: exact expected tables."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.silver.transforms import (CLIENTS_COLUMNS, ClientRules, clients_from_bronze, combine_clients,
                                         new_members, pays_from_bronze, segments_from_bronze,
                                         ventes_jour_from_bronze)

RULES = ClientRules(loyalty_threshold=2, premium_threshold=Decimal("500"), standard_threshold=Decimal("100"))
BRONZE_SCHEMA = ("vente_id STRING, client_id STRING, produit_id STRING, event_ts TIMESTAMP, jour DATE, "
                 "quantite INT, montant DECIMAL(14,2), client_nom STRING, pays STRING, segment STRING")
D1, D2 = dt.date(2024, 12, 12), dt.date(2024, 12, 13)


def ts(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour)


def bronze(spark):
    rows = [
        # C1: one purchase of 99.99 → Economy, not loyal
        ("v1", "C1", "P1", ts(D1, 9), D1, 1, Decimal("99.99"), "Alice", "France", "B2C"),
        # C2: exactly 100.00 in two purchases → Standard, loyal; renamed and moved on its latest sale
        ("v2", "C2", "P1", ts(D1, 10), D1, 2, Decimal("60.00"), "Bob", "France", "B2C"),
        ("v3", "C2", "P2", ts(D2, 8), D2, 1, Decimal("40.00"), "Bob SARL", "Belgique", "B2B"),
        # C3: 499.99 → Standard; C4: exactly 500.00 → Premium (same product twice)
        ("v4", "C3", "P3", ts(D1, 11), D1, 3, Decimal("499.99"), "Chloé", "Belgique", "B2B"),
        ("v5", "C4", "P3", ts(D2, 9), D2, 1, Decimal("250.00"), "Dan", "Suisse", "B2B"),
        ("v6", "C4", "P3", ts(D2, 9), D2, 1, Decimal("250.00"), "Dan SA", "Suisse", "B2B"),
    ]
    return spark.createDataFrame(rows, BRONZE_SCHEMA)


def test_clients_loyalty_tiers_latest_attributes(spark) -> None:
    actual_df = clients_from_bronze(bronze(spark), RULES, F.lit(None).cast("timestamp"))
    assert actual_df.columns == CLIENTS_COLUMNS
    expected_df = spark.createDataFrame([
        ("C1", "Alice", "France", "B2C", 1, 1, Decimal("99.99"), Decimal("99.99"), Decimal("99.99"),
         Decimal("99.99"), 1, ts(D1, 9), ts(D1, 9), "v1", False, "Economy", None,
         (["P1"], ["France"], ["B2C"], [D1])),
        ("C2", "Bob SARL", "Belgique", "B2B", 2, 3, Decimal("100.00"), Decimal("50.00"), Decimal("40.00"),
         Decimal("60.00"), 2, ts(D1, 10), ts(D2, 8), "v3", True, "Standard", None,
         (["P1", "P2"], ["Belgique", "France"], ["B2B", "B2C"], [D1, D2])),
        ("C3", "Chloé", "Belgique", "B2B", 1, 3, Decimal("499.99"), Decimal("499.99"), Decimal("499.99"),
         Decimal("499.99"), 1, ts(D1, 11), ts(D1, 11), "v4", False, "Standard", None,
         (["P3"], ["Belgique"], ["B2B"], [D1])),
        # Same event time twice: the latest is the larger vente_id.
        ("C4", "Dan SA", "Suisse", "B2B", 2, 2, Decimal("500.00"), Decimal("250.00"), Decimal("250.00"),
         Decimal("250.00"), 1, ts(D2, 9), ts(D2, 9), "v6", True, "Premium", None,
         (["P3"], ["Suisse"], ["B2B"], [D2])),
    ], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)


def test_loyalty_threshold_one_makes_every_buyer_loyal(spark) -> None:
    rules = ClientRules(1, Decimal("500"), Decimal("100"))
    loyal = clients_from_bronze(bronze(spark), rules).filter("NOT est_client_fidele").count()
    assert loyal == 0


def test_pays_segments_days(spark) -> None:
    df = bronze(spark)
    pays = pays_from_bronze(df)
    assertDataFrameEqual(pays, spark.createDataFrame([
        ("France", 2, Decimal("159.99"), Decimal("80.00"), 3, 2),      # 159.99 / 2 = 79.995 → 80.00
        ("Belgique", 2, Decimal("539.99"), Decimal("270.00"), 4, 2),   # 269.995 → 270.00
        ("Suisse", 2, Decimal("500.00"), Decimal("250.00"), 2, 1),
    ], pays.schema))
    segments = segments_from_bronze(df)
    assertDataFrameEqual(segments, spark.createDataFrame([
        ("B2C", 2, Decimal("159.99"), Decimal("80.00"), 2, 1, ["France"]),
        ("B2B", 4, Decimal("1039.99"), Decimal("260.00"), 3, 2, ["Belgique", "Suisse"]),  # 259.9975 → 260.00
    ], segments.schema))
    days = ventes_jour_from_bronze(df)
    assertDataFrameEqual(days, spark.createDataFrame([
        (D1, 3, Decimal("659.98"), 3),
        (D2, 3, Decimal("540.00"), 2),
    ], days.schema))


def test_money_sums_are_exact(spark) -> None:
    # A thousand sales of 0.10 sum to exactly 100.00 (a float sum would not).
    rows = [(f"v{i}", "C1", "P1", ts(D1, 9), D1, 1, Decimal("0.10"), "A", "France", "B2C") for i in range(1000)]
    clients = clients_from_bronze(spark.createDataFrame(rows, BRONZE_SCHEMA), RULES).first()
    assert clients.total_depense == Decimal("100.00") and clients.segment_depense == "Standard"


def test_new_members_are_the_values_a_touched_client_did_not_have(spark) -> None:
    df = bronze(spark)
    before = clients_from_bronze(df.filter("vente_id IN ('v1', 'v2', 'v4')"), RULES)
    new = df.filter("vente_id IN ('v3', 'v5', 'v6')").unionByName(spark.createDataFrame(
        [("v7", "C1", "P9", ts(D2, 7), D2, 1, Decimal("1.00"), "Alice", "France", None)], BRONZE_SCHEMA))
    after = combine_clients(before, new, RULES, F.lit(None).cast("timestamp"))
    # C2 gains Belgique and B2B and D2; C4 is new; C1 gains D2 and a null segment (kept out of the sets).
    assertDataFrameEqual(new_members(before, after, "pays"),
                         spark.createDataFrame([("Belgique", 1), ("Suisse", 1)], "value STRING, n BIGINT"))
    assertDataFrameEqual(new_members(before, after, "segments"),
                         spark.createDataFrame([("B2B", 2)], "value STRING, n BIGINT"))
    assertDataFrameEqual(new_members(before, after, "jours"),
                         spark.createDataFrame([(D2, 3)], "value DATE, n BIGINT"))
    # Before the first batch every value of every touched client is new.
    assertDataFrameEqual(new_members(None, after, "segments"),
                         spark.createDataFrame([("B2B", 2), ("B2C", 2)], "value STRING, n BIGINT"))
