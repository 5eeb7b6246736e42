"""Silver transforms on small hand-built Bronze data: exact expected tables."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.silver.transforms import (
    BOOKING_SCHEMA,
    CLIENTS_COLUMNS,
    ClientRules,
    clients_from_bronze,
    combine_clients,
    new_members,
    pays_from_bronze,
    produits_from_bronze,
    sale_bookings,
    segments_from_bronze,
    ventes_jour_from_bronze,
)

RULES = ClientRules(loyalty_threshold=2, premium_threshold=Decimal("500"), standard_threshold=Decimal("100"))
# A sale as Bronze keeps it (the columns Silver reads)...
SALE_SCHEMA = ("vente_id STRING, client_id STRING, produit_id STRING, produit_nom STRING, categorie STRING, "
               "event_ts TIMESTAMP, jour DATE, quantite INT, montant DECIMAL(14,2), client_nom STRING, pays STRING, "
               "segment STRING")
# ... and when and where Bronze received it: Silver applies returns and cancellations in that order.
BRONZE_SCHEMA = f"{SALE_SCHEMA}, ingestion_ts TIMESTAMP, kafka_partition INT, kafka_offset BIGINT"
D1, D2, D3 = dt.date(2024, 12, 12), dt.date(2024, 12, 13), dt.date(2024, 12, 14)
RECEIVED = dt.datetime(2024, 12, 14, 6)
ZERO = Decimal("0.00")


def ts(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour)


def bronze_rows(sales: list[tuple], received: dt.datetime = RECEIVED, first_offset: int = 0) -> list[tuple]:
    """Bronze rows (``BRONZE_SCHEMA``) of ``sales`` (``SALE_SCHEMA`` tuples) received in one Bronze batch, at
    successive offsets of partition 0 from ``first_offset``."""
    return [(*sale, received, 0, first_offset + i) for i, sale in enumerate(sales)]


LAMPE, CHAISE = ("P1", "Lampe", "Maison"), ("P2", "Chaise", "Mobilier")


def bronze(spark):
    rows = [
        # C1: one purchase of 99.99 → Economy, not loyal
        ("v1", "C1", *LAMPE, ts(D1, 9), D1, 1, Decimal("99.99"), "Alice", "France", "B2C"),
        # C2: exactly 100.00 in two purchases → Standard, loyal; renamed and moved on its latest sale
        ("v2", "C2", *LAMPE, ts(D1, 10), D1, 2, Decimal("60.00"), "Bob", "France", "B2C"),
        ("v3", "C2", *CHAISE, ts(D2, 8), D2, 1, Decimal("40.00"), "Bob SARL", "Belgique", "B2B"),
        # C3: 499.99 → Standard; C4: exactly 500.00 → Premium (same product twice, renamed on the latest sale)
        ("v4", "C3", "P3", "Table", "Mobilier", ts(D1, 11), D1, 3, Decimal("499.99"), "Chloé", "Belgique", "B2B"),
        ("v5", "C4", "P3", "Table", "Mobilier", ts(D2, 9), D2, 1, Decimal("250.00"), "Dan", "Suisse", "B2B"),
        ("v6", "C4", "P3", "Table ronde", "Mobilier", ts(D2, 9), D2, 1, Decimal("250.00"), "Dan SA", "Suisse",
         "B2B"),
    ]
    return spark.createDataFrame(bronze_rows(rows), BRONZE_SCHEMA)


def corrected_bookings(spark, bronze_df):
    """The sales' bookings, a return of one unit of v4 (100.00 refunded, on D2) and the cancellation of v1 (on
    D3, a day without sales), as ``lakehouse.silver.corrections`` books them."""
    corrections = spark.createDataFrame([
        # jour, client_id, pays, segment, produit_id, categorie, nb_ventes, nb_retours, nb_annulations,
        # quantite_vendue, quantite_retournee, quantite_annulee, chiffre_affaires_brut, remboursements, montant_annule
        (D2, "C3", "Belgique", "B2B", "P3", "Mobilier", 0, 1, 0, 0, 1, 0, ZERO, Decimal("100.00"), ZERO),
        (D3, "C1", "France", "B2C", "P1", "Maison", 0, 0, 1, 0, 0, 1, ZERO, ZERO, Decimal("99.99")),
    ], BOOKING_SCHEMA)
    return sale_bookings(bronze_df).unionByName(corrections)


def test_clients_loyalty_tiers_latest_attributes(spark) -> None:
    actual_df = clients_from_bronze(bronze(spark), RULES, F.lit(None).cast("timestamp"))
    assert actual_df.columns == CLIENTS_COLUMNS
    # Without returns nor cancellations: net = gross, nothing refunded, cancelled or returned.
    expected_df = spark.createDataFrame([
        ("C1", "Alice", "France", "B2C", 1, 1, Decimal("99.99"), Decimal("99.99"), Decimal("99.99"),
         Decimal("99.99"), 1, ts(D1, 9), ts(D1, 9), "v1", False, "Economy", None,
         (["P1"], ["France"], ["B2C"], [D1]), Decimal("99.99"), ZERO, ZERO, 0, 0, 0),
        ("C2", "Bob SARL", "Belgique", "B2B", 2, 3, Decimal("100.00"), Decimal("50.00"), Decimal("40.00"),
         Decimal("60.00"), 2, ts(D1, 10), ts(D2, 8), "v3", True, "Standard", None,
         (["P1", "P2"], ["Belgique", "France"], ["B2B", "B2C"], [D1, D2]), Decimal("100.00"), ZERO, ZERO, 0, 0, 0),
        ("C3", "Chloé", "Belgique", "B2B", 1, 3, Decimal("499.99"), Decimal("499.99"), Decimal("499.99"),
         Decimal("499.99"), 1, ts(D1, 11), ts(D1, 11), "v4", False, "Standard", None,
         (["P3"], ["Belgique"], ["B2B"], [D1]), Decimal("499.99"), ZERO, ZERO, 0, 0, 0),
        # Same event time twice: the latest is the larger vente_id.
        ("C4", "Dan SA", "Suisse", "B2B", 2, 2, Decimal("500.00"), Decimal("250.00"), Decimal("250.00"),
         Decimal("250.00"), 1, ts(D2, 9), ts(D2, 9), "v6", True, "Premium", None,
         (["P3"], ["Suisse"], ["B2B"], [D2]), Decimal("500.00"), ZERO, ZERO, 0, 0, 0),
    ], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)


def test_loyalty_threshold_one_makes_every_buyer_loyal(spark) -> None:
    rules = ClientRules(1, Decimal("500"), Decimal("100"))
    loyal = clients_from_bronze(bronze(spark), rules).filter("NOT est_client_fidele").count()
    assert loyal == 0


def test_pays_segments_days_products(spark) -> None:
    df = bronze(spark)
    # Without returns nor cancellations: chiffre_affaires (net) = chiffre_affaires_brut, the others 0.
    nothing_back = (0, 0, 0, 0)  # nb_retours, nb_annulations, quantite_retournee, quantite_annulee
    pays = pays_from_bronze(df)
    assertDataFrameEqual(pays, spark.createDataFrame([
        # 159.99 / 2 = 79.995 → 80.00
        ("France", 2, Decimal("159.99"), Decimal("80.00"), 3, 2, *nothing_back, Decimal("159.99"), ZERO, ZERO, 0.0),
        # 269.995 → 270.00
        ("Belgique", 2, Decimal("539.99"), Decimal("270.00"), 4, 2, *nothing_back, Decimal("539.99"), ZERO, ZERO,
         0.0),
        ("Suisse", 2, Decimal("500.00"), Decimal("250.00"), 2, 1, *nothing_back, Decimal("500.00"), ZERO, ZERO, 0.0),
    ], pays.schema))
    segments = segments_from_bronze(df)
    assertDataFrameEqual(segments, spark.createDataFrame([
        ("B2C", 2, Decimal("159.99"), Decimal("80.00"), 2, 1, ["France"], 3, *nothing_back, Decimal("159.99"), ZERO,
         ZERO, 0.0),
        # 259.9975 → 260.00
        ("B2B", 4, Decimal("1039.99"), Decimal("260.00"), 3, 2, ["Belgique", "Suisse"], 6, *nothing_back,
         Decimal("1039.99"), ZERO, ZERO, 0.0),
    ], segments.schema))
    days = ventes_jour_from_bronze(df)
    assertDataFrameEqual(days, spark.createDataFrame([
        (D1, 3, Decimal("659.98"), 3, 6, *nothing_back, Decimal("659.98"), ZERO, ZERO),
        (D2, 3, Decimal("540.00"), 2, 3, *nothing_back, Decimal("540.00"), ZERO, ZERO),
    ], days.schema))
    produits = produits_from_bronze(df)
    assertDataFrameEqual(produits, spark.createDataFrame([
        ("P1", "Maison", "Lampe", 2, Decimal("159.99"), Decimal("80.00"), 3, *nothing_back, Decimal("159.99"), ZERO,
         ZERO, 0.0, ts(D1, 10), "v2"),
        ("P2", "Mobilier", "Chaise", 1, Decimal("40.00"), Decimal("40.00"), 1, *nothing_back, Decimal("40.00"), ZERO,
         ZERO, 0.0, ts(D2, 8), "v3"),
        # The latest name: v6 (same event time as v5, larger vente_id). 999.99 / 3 = 333.33
        ("P3", "Mobilier", "Table ronde", 3, Decimal("999.99"), Decimal("333.33"), 5, *nothing_back,
         Decimal("999.99"), ZERO, ZERO, 0.0, ts(D2, 9), "v6"),
    ], produits.schema))


def test_net_figures_take_off_refunds_and_what_cancellations_voided(spark) -> None:
    df = bronze(spark)
    bookings = corrected_bookings(spark, df)
    # C1's only sale cancelled: no purchase left, no basket, nothing spent; C3 refunded 100.00 of 499.99.
    clients = clients_from_bronze(df, RULES, F.lit(None).cast("timestamp"), bookings) \
        .filter("client_id IN ('C1', 'C3')")
    assertDataFrameEqual(clients, spark.createDataFrame([
        ("C1", "Alice", "France", "B2C", 0, 0, ZERO, None, Decimal("99.99"), Decimal("99.99"), 1, ts(D1, 9), ts(D1, 9),
         "v1", False, "Economy", None, (["P1"], ["France"], ["B2C"], [D1]), Decimal("99.99"), ZERO,
         Decimal("99.99"), 0, 0, 1),
        ("C3", "Chloé", "Belgique", "B2B", 1, 2, Decimal("399.99"), Decimal("399.99"), Decimal("499.99"),
         Decimal("499.99"), 1, ts(D1, 11), ts(D1, 11), "v4", False, "Standard", None,
         (["P3"], ["Belgique"], ["B2B"], [D1]), Decimal("499.99"), Decimal("100.00"), ZERO, 1, 1, 0),
    ], clients.schema))
    pays = pays_from_bronze(df, bookings)
    assertDataFrameEqual(pays, spark.createDataFrame([
        # 159.99 - 99.99 over the one sale left
        ("France", 2, Decimal("60.00"), Decimal("60.00"), 3, 2, 0, 1, 0, 1, Decimal("159.99"), ZERO,
         Decimal("99.99"), 0.0),
        # 439.99 / 2 = 219.995 → 220.00; 1 unit returned of 4
        ("Belgique", 2, Decimal("439.99"), Decimal("220.00"), 4, 2, 1, 0, 1, 0, Decimal("539.99"), Decimal("100.00"),
         ZERO, 0.25),
        ("Suisse", 2, Decimal("500.00"), Decimal("250.00"), 2, 1, 0, 0, 0, 0, Decimal("500.00"), ZERO, ZERO, 0.0),
    ], pays.schema))
    segments = segments_from_bronze(df, bookings)
    assertDataFrameEqual(segments, spark.createDataFrame([
        ("B2C", 2, Decimal("60.00"), Decimal("60.00"), 2, 1, ["France"], 3, 0, 1, 0, 1, Decimal("159.99"), ZERO,
         Decimal("99.99"), 0.0),
        # 939.99 / 4 = 234.9975 → 235.00
        ("B2B", 4, Decimal("939.99"), Decimal("235.00"), 3, 2, ["Belgique", "Suisse"], 6, 1, 0, 1, 0,
         Decimal("1039.99"), Decimal("100.00"), ZERO, 1 / 6),
    ], segments.schema))
    # Refunds and cancellations on the day they were made: D3 has no sale, no client, and a negative net.
    days = ventes_jour_from_bronze(df, bookings)
    assertDataFrameEqual(days, spark.createDataFrame([
        (D1, 3, Decimal("659.98"), 3, 6, 0, 0, 0, 0, Decimal("659.98"), ZERO, ZERO),
        (D2, 3, Decimal("440.00"), 2, 3, 1, 0, 1, 0, Decimal("540.00"), Decimal("100.00"), ZERO),
        (D3, 0, Decimal("-99.99"), 0, 0, 0, 1, 0, 1, ZERO, ZERO, Decimal("99.99")),
    ], days.schema))
    produits = produits_from_bronze(df, bookings)
    assertDataFrameEqual(produits, spark.createDataFrame([
        ("P1", "Maison", "Lampe", 2, Decimal("60.00"), Decimal("60.00"), 3, 0, 1, 0, 1, Decimal("159.99"), ZERO,
         Decimal("99.99"), 0.0, ts(D1, 10), "v2"),
        ("P2", "Mobilier", "Chaise", 1, Decimal("40.00"), Decimal("40.00"), 1, 0, 0, 0, 0, Decimal("40.00"), ZERO,
         ZERO, 0.0, ts(D2, 8), "v3"),
        # 899.99 / 3 = 299.996… → 300.00; 1 unit returned of 5
        ("P3", "Mobilier", "Table ronde", 3, Decimal("899.99"), Decimal("300.00"), 5, 1, 0, 1, 0, Decimal("999.99"),
         Decimal("100.00"), ZERO, 0.2, ts(D2, 9), "v6"),
    ], produits.schema))


def test_money_sums_are_exact(spark) -> None:
    # A thousand sales of 0.10 sum to exactly 100.00 (a float sum would not).
    rows = [(f"v{i}", "C1", *LAMPE, ts(D1, 9), D1, 1, Decimal("0.10"), "A", "France", "B2C") for i in range(1000)]
    clients = clients_from_bronze(spark.createDataFrame(bronze_rows(rows), BRONZE_SCHEMA), RULES).first()
    assert clients.total_depense == Decimal("100.00") and clients.segment_depense == "Standard"


def test_new_members_are_the_values_a_touched_client_did_not_have(spark) -> None:
    df = bronze(spark)
    before = clients_from_bronze(df.filter("vente_id IN ('v1', 'v2', 'v4')"), RULES)
    new = df.filter("vente_id IN ('v3', 'v5', 'v6')").unionByName(spark.createDataFrame(bronze_rows(
        [("v7", "C1", "P9", None, None, ts(D2, 7), D2, 1, Decimal("1.00"), "Alice", "France", None)], first_offset=6),
        BRONZE_SCHEMA))
    after = combine_clients(before, new, sale_bookings(new), RULES, F.lit(None).cast("timestamp"))
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
