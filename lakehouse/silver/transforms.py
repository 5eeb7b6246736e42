"""Silver: clients, countries, segments, days and products computed from Bronze, exactly to the cent.

Pure DataFrame → DataFrame transforms (duplicates are already out of Bronze; late sales are in it and
count like any other sale). Money stays DECIMAL all the way: sums never drift.

Every measure is a sum of bookings (``lakehouse.silver.corrections``): a sale books what was sold on its
day; an applied return or cancellation books what it took back on its own day. ``sale_bookings`` gives a
sales DataFrame's bookings; the corrections' come from the driver (they are few, and applied in order).
The attributes (latest name, first and last purchase, the sets in ``historique``) come from the sales.

Distinct counts cannot be added up from batch to batch, so each client row carries ``historique``: the
sorted sets of products, countries, segments and days of its sales. A batch then knows which (country,
client), (segment, client) and (day, client) pairs are new by looking only at the clients it touches, and
each segment row carries ``liste_pays``, the countries sold to in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, NamedTuple

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.platform.config import Config
from lakehouse.silver.corrections import AMOUNTS, COUNTS, DIMENSIONS, MEASURES

MONEY_SUM = T.DecimalType(24, 2)
CLIENTS_COLUMNS = [
    "client_id", "client_nom", "pays", "segment", "nb_achats", "total_quantite", "total_depense",
    "panier_moyen", "achat_min", "achat_max", "nb_produits_distincts", "premier_achat", "dernier_achat",
    "dernier_vente_id", "est_client_fidele", "segment_depense", "updated_at", "historique",
    "total_brut", "total_rembourse", "total_annule", "quantite_retournee", "nb_retours", "nb_annulations",
]
# Every table of totals shows the net revenue, and beside it the gross sales, refunds, what cancellations
# voided and the units returned.
_CORRECTED = ["nb_retours", "nb_annulations", "quantite_retournee", "quantite_annulee", "chiffre_affaires_brut",
              "remboursements", "montant_annule"]
PAYS_COLUMNS = ["pays", "nb_ventes", "chiffre_affaires", "panier_moyen", "quantite_vendue", "nb_clients",
                *_CORRECTED, "taux_retour"]
SEGMENTS_COLUMNS = ["segment", "nb_ventes", "chiffre_affaires", "panier_moyen", "nb_clients", "nb_pays",
                    "liste_pays", "quantite_vendue", *_CORRECTED, "taux_retour"]
VENTES_JOUR_COLUMNS = ["jour", "nb_ventes", "chiffre_affaires", "nb_clients", "quantite_vendue", *_CORRECTED]
PRODUITS_COLUMNS = ["produit_id", "categorie", "produit_nom", "nb_ventes", "chiffre_affaires", "panier_moyen",
                    "quantite_vendue", *_CORRECTED, "taux_retour", "derniere_vente", "derniere_vente_id"]

# Client columns that bookings add to: column -> {booking measure: sign} (both paths).
CLIENT_SUMS = {
    "nb_achats": {"nb_ventes": 1, "nb_annulations": -1},
    "total_quantite": {"quantite_vendue": 1, "quantite_retournee": -1, "quantite_annulee": -1},
    "total_depense": {"chiffre_affaires_brut": 1, "remboursements": -1, "montant_annule": -1},
    "total_brut": {"chiffre_affaires_brut": 1},
    "total_rembourse": {"remboursements": 1},
    "total_annule": {"montant_annule": 1},
    "quantite_retournee": {"quantite_retournee": 1},
    "nb_retours": {"nb_retours": 1},
    "nb_annulations": {"nb_annulations": 1},
}
CLIENT_MONEY = ("total_depense", "total_brut", "total_rembourse", "total_annule")

BOOKING_SCHEMA = T.StructType(
    [T.StructField("jour", T.DateType()), *[T.StructField(d, T.StringType()) for d in DIMENSIONS],
     *[T.StructField(m, T.LongType()) for m in COUNTS], *[T.StructField(m, MONEY_SUM) for m in AMOUNTS]])


@dataclass(frozen=True)
class ClientRules:
    """Loyalty and spending-tier thresholds (boundaries inclusive)."""

    loyalty_threshold: int
    premium_threshold: Decimal
    standard_threshold: Decimal

    @classmethod
    def from_config(cls, cfg: Config) -> "ClientRules":
        # Through str: 500.0 must become Decimal("500.0"), not a binary float's expansion.
        return cls(cfg.analytics.loyalty_threshold, Decimal(str(cfg.analytics.premium_threshold)),
                   Decimal(str(cfg.analytics.standard_threshold)))


def average(total: Column, count: Column) -> Column:
    """A money average rounded half-up to the cent, still a DECIMAL; null when ``count`` is 0 (every sale
    cancelled)."""
    return F.when(count > 0, F.round(total / count, 2)).cast("decimal(24,2)")


def with_client_flags(clients_df: DataFrame, rules: ClientRules) -> DataFrame:
    """Add ``est_client_fidele`` (nb_achats, net of cancellations, ≥ loyalty threshold) and
    ``segment_depense`` (Premium, Standard or Economy on the net lifetime total_depense)."""
    total = F.col("total_depense")
    return (clients_df
            .withColumn("est_client_fidele", F.col("nb_achats") >= F.lit(rules.loyalty_threshold))
            .withColumn("segment_depense",
                        F.when(total >= F.lit(rules.premium_threshold), F.lit("Premium"))
                        .when(total >= F.lit(rules.standard_threshold), F.lit("Standard"))
                        .otherwise(F.lit("Economy"))))


# historique field → the Bronze column whose distinct values it holds.
HISTORIQUE = {"produits": "produit_id", "pays": "pays", "segments": "segment", "jours": "jour"}


def sale_bookings(sales_df: DataFrame) -> DataFrame:
    """Each sale's booking: what it sold, on its day, with its client, country, segment and product."""
    zero, cents = F.lit(0).cast("long"), F.lit(Decimal("0.00")).cast(MONEY_SUM)
    values = {"nb_ventes": F.lit(1).cast("long"), "quantite_vendue": F.col("quantite").cast("long"),
              "chiffre_affaires_brut": F.col("montant").cast(MONEY_SUM)}
    return sales_df.select("jour", *DIMENSIONS,
                           *[values.get(m, zero).alias(m) for m in COUNTS],
                           *[values.get(m, cents).alias(m) for m in AMOUNTS])


def _sum(measure: str) -> Column:
    return F.sum(measure).cast(MONEY_SUM if measure in AMOUNTS else "long")


def _client_sums(bookings_df: DataFrame) -> DataFrame:
    sums = bookings_df.groupBy("client_id").agg(*[_sum(m).alias(m) for m in MEASURES])
    return sums.select("client_id", *[
        sum((F.col(m) * sign for m, sign in terms.items()), F.lit(0))
        .cast(MONEY_SUM if c in CLIENT_MONEY else "long").alias(c)
        for c, terms in CLIENT_SUMS.items()])


def _client_attributes(sales_df: DataFrame) -> DataFrame:
    """Per-client extremes, first and last sale, latest attributes (``last``) and ``historique``, from sales."""
    latest = F.struct("event_ts", "vente_id")
    return sales_df.groupBy("client_id").agg(
        F.max_by(F.struct("client_nom", "pays", "segment"), latest).alias("last"),
        F.min("montant").alias("achat_min"), F.max("montant").alias("achat_max"),
        F.min("event_ts").alias("premier_achat"), F.max("event_ts").alias("dernier_achat"),
        F.max_by("vente_id", latest).alias("dernier_vente_id"),
        F.struct(*[F.array_sort(F.collect_set(column)).alias(name) for name, column in HISTORIQUE.items()])
        .alias("historique"),
    )


def _client_rows(df: DataFrame, rules: ClientRules, updated_at: Column) -> DataFrame:
    return (df.withColumn("nb_produits_distincts", F.size("historique.produits").cast("long"))
            .withColumn("panier_moyen", average(F.col("total_depense"), F.col("nb_achats")))
            .transform(lambda d: with_client_flags(d, rules))
            .withColumn("updated_at", updated_at)
            .select(*CLIENTS_COLUMNS))


def clients_from_bronze(bronze_df: DataFrame, rules: ClientRules, updated_at: Column | None = None,
                        bookings_df: DataFrame | None = None) -> DataFrame:
    """One row per client over its whole history; name, country and segment are those of its latest sale
    (by event time, then vente_id). ``bookings_df``: the sales' bookings and the corrections' (default: the
    sales' alone)."""
    bookings_df = sale_bookings(bronze_df) if bookings_df is None else bookings_df
    attributes = _client_attributes(bronze_df)
    df = attributes.join(_client_sums(bookings_df), "client_id", "left")
    df = df.select("*", "last.client_nom", "last.pays", "last.segment").drop("last")
    return _client_rows(df, rules, updated_at if updated_at is not None else F.current_timestamp())


def _totals_extras(table: str, sales_df: DataFrame) -> DataFrame:
    """What a table of totals takes from the sales themselves: distinct clients, a segment's countries, a
    product's latest name."""
    key = _keys(table)
    if table == "produits":
        latest = F.struct("event_ts", "vente_id")
        return sales_df.groupBy(*key).agg(F.max_by("produit_nom", latest).alias("produit_nom"),
                                          F.max("event_ts").alias("derniere_vente"),
                                          F.max_by("vente_id", latest).alias("derniere_vente_id"))
    extra = [F.array_sort(F.collect_set("pays")).alias("liste_pays")] if table == "segments" else []
    return sales_df.groupBy(*key).agg(F.count_distinct("client_id").alias("nb_clients"), *extra)


def _with_totals_derived(df: DataFrame, table: str) -> DataFrame:
    net = F.col("chiffre_affaires_brut") - F.col("remboursements") - F.col("montant_annule")
    df = df.withColumn("chiffre_affaires", net.cast(MONEY_SUM)) \
        .withColumn("panier_moyen", average(F.col("chiffre_affaires"), F.col("nb_ventes") - F.col("nb_annulations"))) \
        .withColumn("taux_retour", F.when(F.col("quantite_vendue") > 0,
                                          F.col("quantite_retournee").cast("double") / F.col("quantite_vendue")))
    if table == "segments":
        df = df.withColumn("nb_pays", F.size("liste_pays").cast("long"))
    return df.select(*TOTALS[table].columns)


def _keys(table: str) -> list[str]:
    key = TOTALS[table].key
    return list(key) if isinstance(key, tuple) else [key]


def _totals_from(table: str, sales_df: DataFrame, bookings_df: DataFrame) -> DataFrame:
    key = _keys(table)
    sums = bookings_df.groupBy(*key).agg(*[_sum(m).alias(m) for m in MEASURES])
    df = sums.join(_totals_extras(table, sales_df), key, "left")
    if "nb_clients" in df.columns:  # a day with refunds and no sale has no client
        df = df.withColumn("nb_clients", F.coalesce("nb_clients", F.lit(0).cast("long")))
    if table == "segments":
        df = df.withColumn("liste_pays", F.coalesce("liste_pays", F.array().cast("array<string>")))
    return _with_totals_derived(df, table)


def pays_from_bronze(bronze_df: DataFrame, bookings_df: DataFrame | None = None) -> DataFrame:
    """Net revenue, basket, returns and clients by country (the country written on each sale)."""
    return _totals_from("pays", bronze_df, sale_bookings(bronze_df) if bookings_df is None else bookings_df)


def segments_from_bronze(bronze_df: DataFrame, bookings_df: DataFrame | None = None) -> DataFrame:
    """Net revenue, basket, returns, clients and countries for B2B and B2C."""
    return _totals_from("segments", bronze_df, sale_bookings(bronze_df) if bookings_df is None else bookings_df)


def ventes_jour_from_bronze(bronze_df: DataFrame, bookings_df: DataFrame | None = None) -> DataFrame:
    """Per day: the sales made that day, and the refunds and cancellations booked that day."""
    return _totals_from("ventes_jour", bronze_df, sale_bookings(bronze_df) if bookings_df is None else bookings_df)


def produits_from_bronze(bronze_df: DataFrame, bookings_df: DataFrame | None = None) -> DataFrame:
    """Per product and category: units sold and returned, gross, refunds, net revenue, return rate."""
    return _totals_from("produits", bronze_df, sale_bookings(bronze_df) if bookings_df is None else bookings_df)


# --- incremental: the rows a batch changes ------------------------------------------------------------

def _added(name: str) -> Column:
    return F.coalesce(F.col(f"e.{name}"), F.lit(0)) + F.coalesce(F.col(f"i.{name}"), F.lit(0))


def _union_sorted(column: str) -> Column:
    return F.array_sort(F.array_union(F.coalesce(F.col(f"e.{column}"), F.array()),
                                      F.coalesce(F.col(f"i.{column}"), F.array())))


def combine_clients(before_df: DataFrame | None, new_sales_df: DataFrame, new_bookings_df: DataFrame,
                    rules: ClientRules, updated_at: Column) -> DataFrame:
    """The rows of the clients that a batch's sales and bookings touch, after them: sums added, extremes
    kept, latest attributes from the newer sale, ``historique`` sets united. ``before_df`` holds the rows
    those clients had (at least; others are left out), or None before the first batch."""
    empty = clients_from_bronze(new_sales_df.limit(0), rules, updated_at)
    attributes = _client_attributes(new_sales_df)
    inc = (new_bookings_df.select("client_id").distinct()
           .join(attributes, "client_id", "full_outer").join(_client_sums(new_bookings_df), "client_id", "left")
           .alias("i"))
    before_df = empty if before_df is None else before_df
    joined = before_df.alias("e").join(inc, F.col("e.client_id") == F.col("i.client_id"), "right_outer")
    has_sale = F.col("i.dernier_achat").isNotNull()
    new_is_latest = has_sale & (F.col("e.client_id").isNull() | (
        F.struct(F.col("i.dernier_achat"), F.col("i.dernier_vente_id"))
        > F.struct(F.col("e.dernier_achat"), F.col("e.dernier_vente_id"))))

    def latest(col_e: str, col_i: str) -> Column:
        return F.when(new_is_latest, F.col(col_i)).otherwise(F.col(col_e))

    historique = F.struct(*[_union_sorted(f"historique.{name}").alias(name) for name in HISTORIQUE])
    sums = [_added(c).cast(empty.schema[c].dataType).alias(c) for c in CLIENT_SUMS]
    df = joined.select(
        F.col("i.client_id").alias("client_id"),
        latest("e.client_nom", "i.last.client_nom").alias("client_nom"),
        latest("e.pays", "i.last.pays").alias("pays"),
        latest("e.segment", "i.last.segment").alias("segment"),
        *sums,
        F.least(F.col("e.achat_min"), F.col("i.achat_min")).alias("achat_min"),
        F.greatest(F.col("e.achat_max"), F.col("i.achat_max")).alias("achat_max"),
        F.least(F.col("e.premier_achat"), F.col("i.premier_achat")).alias("premier_achat"),
        F.greatest(F.col("e.dernier_achat"), F.col("i.dernier_achat")).alias("dernier_achat"),
        latest("e.dernier_vente_id", "i.dernier_vente_id").alias("dernier_vente_id"),
        historique.alias("historique"))
    return _client_rows(df, rules, updated_at)


def new_members(before_df: DataFrame | None, after_df: DataFrame, field: str) -> DataFrame:
    """(value, n): for each value of ``historique.<field>`` (a country, segment or day), how many of the
    touched clients have it in ``after_df`` and did not in ``before_df``: the clients it gains."""
    def exploded(df: DataFrame) -> DataFrame:
        return df.select("client_id", F.explode(f"historique.{field}").alias("value"))
    gained = exploded(after_df)
    if before_df is not None:
        gained = gained.join(exploded(before_df), ["client_id", "value"], "left_anti")
    return gained.groupBy("value").agg(F.count(F.lit(1)).alias("n"))


class TotalsTable(NamedTuple):
    """A table of totals: its key column(s), the ``historique`` field of its client count (None: no count),
    its additive measures, its full recompute from Bronze, and its columns."""

    key: str | tuple[str, ...]
    count_field: str | None
    measures: tuple[str, ...]
    from_bronze: Callable[[DataFrame], DataFrame]
    columns: list[str]


TOTALS = {
    "pays": TotalsTable("pays", "pays", MEASURES, pays_from_bronze, PAYS_COLUMNS),
    "segments": TotalsTable("segment", "segments", MEASURES, segments_from_bronze, SEGMENTS_COLUMNS),
    "ventes_jour": TotalsTable("jour", "jours", MEASURES, ventes_jour_from_bronze, VENTES_JOUR_COLUMNS),
    "produits": TotalsTable(("produit_id", "categorie"), None, MEASURES, produits_from_bronze, PRODUITS_COLUMNS),
}


def combine_totals(table: str, existing_df: DataFrame | None, new_sales_df: DataFrame, new_bookings_df: DataFrame,
                   gained_df: DataFrame | None) -> DataFrame:
    """The rows of a table of totals that a batch's bookings touch, after them: measures added, client counts
    raised by ``gained_df`` (``new_members`` of the table's field), a segment's countries united with the
    batch's, a product's latest name kept."""
    key = _keys(table)
    empty = TOTALS[table].from_bronze(new_sales_df.limit(0))
    existing_df = empty if existing_df is None else existing_df
    inc = new_bookings_df.groupBy(*key).agg(*[_sum(m).alias(m) for m in MEASURES])
    if table == "produits":
        inc = inc.join(_totals_extras(table, new_sales_df), key, "left")
    if table == "segments":
        inc = inc.join(new_sales_df.groupBy("segment").agg(F.array_sort(F.collect_set("pays")).alias("liste_pays")),
                       key, "left")
    if gained_df is not None:
        inc = inc.join(gained_df.withColumnRenamed("value", key[0]).withColumnRenamed("n", "nb_clients"), key, "left")
    joined = existing_df.alias("e").join(inc.alias("i"), [F.col(f"e.{k}") == F.col(f"i.{k}") for k in key],
                                         "right_outer")
    columns = [F.col(f"i.{k}").alias(k) for k in key]
    columns += [_added(m).cast(empty.schema[m].dataType).alias(m) for m in MEASURES]
    if gained_df is not None:
        columns.append(_added("nb_clients").cast("long").alias("nb_clients"))
    if table == "segments":
        columns.append(_union_sorted("liste_pays").alias("liste_pays"))
    if table == "produits":
        newer = F.col("i.derniere_vente").isNotNull() & (F.col("e.derniere_vente").isNull() | (
            F.struct(F.col("i.derniere_vente"), F.col("i.derniere_vente_id"))
            > F.struct(F.col("e.derniere_vente"), F.col("e.derniere_vente_id"))))
        columns += [F.when(newer, F.col(f"i.{c}")).otherwise(F.col(f"e.{c}")).alias(c)
                    for c in ("produit_nom", "derniere_vente", "derniere_vente_id")]
    return _with_totals_derived(joined.select(*columns), table)


def ventes_rows(sales_df: DataFrame, updated_at: Column) -> DataFrame:
    """silver/ventes rows of sales no correction has touched yet (``corrections.new_sale_row``)."""
    zero, cents = F.lit(0).cast("long"), F.lit(Decimal("0.00")).cast("decimal(14,2)")
    return sales_df.select(
        "vente_id", "client_id", "produit_id", "produit_nom", "categorie", "pays", "segment", "jour", "event_ts",
        F.col("quantite").cast("long").alias("quantite"), F.col("montant").cast("decimal(14,2)").alias("montant"),
        zero.alias("quantite_retournee"), cents.alias("montant_rembourse"), zero.alias("quantite_annulee"),
        cents.alias("montant_annule"), F.col("quantite").cast("long").alias("quantite_nette"),
        F.col("montant").cast("decimal(14,2)").alias("montant_net"), F.lit("vendue").alias("statut"),
        F.array().cast("array<string>").alias("corrections"),
        F.lit(None).cast("timestamp").alias("derniere_correction"), updated_at.cast("timestamp").alias("updated_at"))
