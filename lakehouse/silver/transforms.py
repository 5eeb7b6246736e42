"""Silver: clients, countries, segments and days computed from Bronze sales, exactly to the cent.

Pure DataFrame → DataFrame transforms over Bronze rows (duplicates are already out of Bronze; late
sales are in it and count like any other sale). Money stays DECIMAL all the way: sums never drift.

Distinct counts cannot be added up from batch to batch, so each client row carries ``historique``: the
sorted sets of products, countries, segments and days of its sales. A batch then knows which (country,
client), (segment, client) and (day, client) pairs are new by looking only at the clients it touches, and
each segment row carries ``liste_pays``, the countries sold to in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.platform.config import Config


CLIENTS_COLUMNS = [
    "client_id", "client_nom", "pays", "segment", "nb_achats", "total_quantite", "total_depense",
    "panier_moyen", "achat_min", "achat_max", "nb_produits_distincts", "premier_achat", "dernier_achat",
    "dernier_vente_id", "est_client_fidele", "segment_depense", "updated_at", "historique",
]
PAYS_COLUMNS = ["pays", "nb_ventes", "chiffre_affaires", "panier_moyen", "quantite_vendue", "nb_clients"]
SEGMENTS_COLUMNS = ["segment", "nb_ventes", "chiffre_affaires", "panier_moyen", "nb_clients", "nb_pays",
                    "liste_pays"]
VENTES_JOUR_COLUMNS = ["jour", "nb_ventes", "chiffre_affaires", "nb_clients"]


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
    """A money average rounded half-up to the cent, still a DECIMAL."""
    return F.round(total / count, 2).cast("decimal(24,2)")


def with_client_flags(clients_df: DataFrame, rules: ClientRules) -> DataFrame:
    """Add ``est_client_fidele`` (nb_achats ≥ loyalty threshold) and ``segment_depense`` (Premium,
    Standard or Economy on lifetime total_depense)."""
    total = F.col("total_depense")
    return (clients_df
            .withColumn("est_client_fidele", F.col("nb_achats") >= F.lit(rules.loyalty_threshold))
            .withColumn("segment_depense",
                        F.when(total >= F.lit(rules.premium_threshold), F.lit("Premium"))
                        .when(total >= F.lit(rules.standard_threshold), F.lit("Standard"))
                        .otherwise(F.lit("Economy"))))


def _measure(name: str) -> Column:
    """The aggregate behind a sales measure shared by several tables."""
    return {"nb_ventes": lambda: F.count(F.lit(1)),
            "chiffre_affaires": lambda: F.sum("montant").cast("decimal(24,2)"),
            "quantite_vendue": lambda: F.sum("quantite").cast("long")}[name]()


# historique field → the Bronze column whose distinct values it holds.
HISTORIQUE = {"produits": "produit_id", "pays": "pays", "segments": "segment", "jours": "jour"}


def _client_aggregates(bronze_df: DataFrame) -> DataFrame:
    """Per-client sums, extremes, latest sale (``last``: name, country, segment) and ``historique``."""
    latest = F.struct("event_ts", "vente_id")
    return bronze_df.groupBy("client_id").agg(
        F.max_by(F.struct("client_nom", "pays", "segment"), latest).alias("last"),
        F.count(F.lit(1)).alias("nb_achats"),
        F.sum("quantite").cast("long").alias("total_quantite"),
        F.sum("montant").cast("decimal(24,2)").alias("total_depense"),
        F.min("montant").alias("achat_min"), F.max("montant").alias("achat_max"),
        F.min("event_ts").alias("premier_achat"), F.max("event_ts").alias("dernier_achat"),
        F.max_by("vente_id", latest).alias("dernier_vente_id"),
        F.struct(*[F.array_sort(F.collect_set(column)).alias(name) for name, column in HISTORIQUE.items()])
        .alias("historique"),
    )


def clients_from_bronze(bronze_df: DataFrame, rules: ClientRules, updated_at: Column | None = None
                        ) -> DataFrame:
    """One row per client over its whole history; name, country and segment are those of its latest
    sale (by event time, then vente_id)."""
    df = _client_aggregates(bronze_df).withColumn("nb_produits_distincts",
                                                  F.size("historique.produits").cast("long"))
    return (df.select("*", "last.client_nom", "last.pays", "last.segment").drop("last")
            .withColumn("panier_moyen", average(F.col("total_depense"), F.col("nb_achats")))
            .transform(lambda d: with_client_flags(d, rules))
            .withColumn("updated_at", updated_at if updated_at is not None else F.current_timestamp())
            .select(*CLIENTS_COLUMNS))


def _totals_from_bronze(bronze_df: DataFrame, key: str, measures: tuple[str, ...],
                        distinct: dict[str, str], columns: list[str]) -> DataFrame:
    df = bronze_df.groupBy(key).agg(*[_measure(m).alias(m) for m in measures],
                                    *[F.count_distinct(c).alias(name) for name, c in distinct.items()])
    if "panier_moyen" in columns:
        df = df.withColumn("panier_moyen", average(F.col("chiffre_affaires"), F.col("nb_ventes")))
    return df.select(*columns)


def pays_from_bronze(bronze_df: DataFrame) -> DataFrame:
    """Revenue, basket and clients by country (the country written on each sale)."""
    return _totals_from_bronze(bronze_df, "pays", ("nb_ventes", "chiffre_affaires", "quantite_vendue"),
                               {"nb_clients": "client_id"}, PAYS_COLUMNS)


def segments_from_bronze(bronze_df: DataFrame) -> DataFrame:
    """Revenue, basket, clients and countries for B2B and B2C."""
    return (bronze_df.groupBy("segment")
            .agg(*[_measure(m).alias(m) for m in ("nb_ventes", "chiffre_affaires")],
                 F.count_distinct("client_id").alias("nb_clients"),
                 F.array_sort(F.collect_set("pays")).alias("liste_pays"))
            .withColumn("nb_pays", F.size("liste_pays").cast("long"))
            .withColumn("panier_moyen", average(F.col("chiffre_affaires"), F.col("nb_ventes")))
            .select(*SEGMENTS_COLUMNS))


def ventes_jour_from_bronze(bronze_df: DataFrame) -> DataFrame:
    """Sales, revenue and buying clients per event day."""
    return _totals_from_bronze(bronze_df, "jour", ("nb_ventes", "chiffre_affaires"),
                               {"nb_clients": "client_id"}, VENTES_JOUR_COLUMNS)


# --- incremental: the rows a batch of new Bronze sales changes ------------------------------------------

def _added(name: str) -> Column:
    return F.coalesce(F.col(f"e.{name}"), F.lit(0)) + F.coalesce(F.col(f"i.{name}"), F.lit(0))


def _union_sorted(column: str) -> Column:
    return F.array_sort(F.array_union(F.coalesce(F.col(f"e.{column}"), F.array()),
                                      F.coalesce(F.col(f"i.{column}"), F.array())))


def combine_clients(before_df: DataFrame | None, new_bronze_df: DataFrame, rules: ClientRules,
                    updated_at: Column) -> DataFrame:
    """The rows of the clients that new sales touch, after those sales: sums added, extremes kept, latest
    attributes from the newer sale, ``historique`` sets united. ``before_df`` holds the rows those clients
    had (at least; others are left out), or None before the first batch."""
    inc = _client_aggregates(new_bronze_df).alias("i")
    if before_df is None:  # first batch: an empty table of the right shape
        before_df = clients_from_bronze(new_bronze_df.limit(0), rules, updated_at)
    joined = before_df.alias("e").join(inc, F.col("e.client_id") == F.col("i.client_id"), "right_outer")
    new_is_latest = F.col("e.client_id").isNull() | (
        F.struct(F.col("i.dernier_achat"), F.col("i.dernier_vente_id"))
        > F.struct(F.col("e.dernier_achat"), F.col("e.dernier_vente_id")))

    def latest(col_e: str, col_i: str) -> Column:
        return F.when(new_is_latest, F.col(col_i)).otherwise(F.col(col_e))

    total = _added("total_depense").cast("decimal(24,2)")
    count = _added("nb_achats")
    historique = F.struct(*[_union_sorted(f"historique.{name}").alias(name) for name in HISTORIQUE])
    return (joined.select(
        F.col("i.client_id").alias("client_id"),
        latest("e.client_nom", "i.last.client_nom").alias("client_nom"),
        latest("e.pays", "i.last.pays").alias("pays"),
        latest("e.segment", "i.last.segment").alias("segment"),
        count.alias("nb_achats"), _added("total_quantite").cast("long").alias("total_quantite"),
        total.alias("total_depense"), average(total, count).alias("panier_moyen"),
        F.least(F.col("e.achat_min"), F.col("i.achat_min")).alias("achat_min"),
        F.greatest(F.col("e.achat_max"), F.col("i.achat_max")).alias("achat_max"),
        F.least(F.col("e.premier_achat"), F.col("i.premier_achat")).alias("premier_achat"),
        F.greatest(F.col("e.dernier_achat"), F.col("i.dernier_achat")).alias("dernier_achat"),
        latest("e.dernier_vente_id", "i.dernier_vente_id").alias("dernier_vente_id"),
        updated_at.alias("updated_at"), historique.alias("historique"))
        .withColumn("nb_produits_distincts", F.size("historique.produits").cast("long"))
        .transform(lambda d: with_client_flags(d, rules))
        .select(*CLIENTS_COLUMNS))


def new_members(before_df: DataFrame | None, after_df: DataFrame, field: str) -> DataFrame:
    """(value, n): for each value of ``historique.<field>`` (a country, segment or day), how many of the
    touched clients have it in ``after_df`` and did not in ``before_df``: the clients it gains."""
    def exploded(df: DataFrame) -> DataFrame:
        return df.select("client_id", F.explode(f"historique.{field}").alias("value"))
    gained = exploded(after_df)
    if before_df is not None:
        gained = gained.join(exploded(before_df), ["client_id", "value"], "left_anti")
    return gained.groupBy("value").agg(F.count(F.lit(1)).alias("n"))


# table → (key column, historique field of its client count, additive measures, full-recompute function)
TOTALS = {
    "pays": ("pays", "pays", ("nb_ventes", "chiffre_affaires", "quantite_vendue"), pays_from_bronze),
    "segments": ("segment", "segments", ("nb_ventes", "chiffre_affaires"), segments_from_bronze),
    "ventes_jour": ("jour", "jours", ("nb_ventes", "chiffre_affaires"), ventes_jour_from_bronze),
}


def combine_totals(table: str, existing_df: DataFrame | None, new_bronze_df: DataFrame,
                   gained_df: DataFrame) -> DataFrame:
    """The rows of ``pays``, ``segments`` or ``ventes_jour`` that new sales touch, after those sales:
    measures added, client counts raised by ``gained_df`` (``new_members`` of the table's field), a
    segment's countries united with the batch's."""
    key, _, measures, from_bronze = TOTALS[table]
    empty = from_bronze(new_bronze_df.limit(0))
    existing_df = empty if existing_df is None else existing_df
    extra = [F.array_sort(F.collect_set("pays")).alias("liste_pays")] if table == "segments" else []
    inc = new_bronze_df.groupBy(key).agg(*[_measure(m).alias(m) for m in measures], *extra) \
        .join(gained_df.withColumnRenamed("value", key).withColumnRenamed("n", "nb_clients"), key, "left")
    df = existing_df.alias("e").join(inc.alias("i"), F.col(f"e.{key}") == F.col(f"i.{key}"), "right_outer") \
        .select(F.col(f"i.{key}").alias(key),
                *[_added(m).cast(empty.schema[m].dataType).alias(m) for m in (*measures, "nb_clients")],
                *([_union_sorted("liste_pays").alias("liste_pays")] if extra else []))
    if extra:
        df = df.withColumn("nb_pays", F.size("liste_pays").cast("long"))
    return df.withColumn("panier_moyen", average(F.col("chiffre_affaires"), F.col("nb_ventes"))) \
        .select(*empty.columns)
