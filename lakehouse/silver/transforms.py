"""Silver: clients, countries, segments and days computed from Bronze sales, exactly to the cent.

Pure DataFrame → DataFrame transforms over Bronze rows (duplicates are already out of Bronze; late
sales are in it and count like any other sale). Money stays DECIMAL all the way: sums never drift.
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
    "dernier_vente_id", "est_client_fidele", "segment_depense", "updated_at",
]
PAYS_COLUMNS = ["pays", "nb_ventes", "chiffre_affaires", "panier_moyen", "quantite_vendue", "nb_clients"]
SEGMENTS_COLUMNS = ["segment", "nb_ventes", "chiffre_affaires", "panier_moyen", "nb_clients", "nb_pays"]
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


def _client_aggregates(bronze_df: DataFrame, *extra: Column) -> DataFrame:
    """Per-client sums, extremes and latest sale (``last``: name, country, segment), plus ``extra``."""
    latest = F.struct("event_ts", "vente_id")
    return bronze_df.groupBy("client_id").agg(
        F.max_by(F.struct("client_nom", "pays", "segment"), latest).alias("last"),
        F.count(F.lit(1)).alias("nb_achats"),
        F.sum("quantite").cast("long").alias("total_quantite"),
        F.sum("montant").cast("decimal(24,2)").alias("total_depense"),
        F.min("montant").alias("achat_min"), F.max("montant").alias("achat_max"),
        F.min("event_ts").alias("premier_achat"), F.max("event_ts").alias("dernier_achat"),
        F.max_by("vente_id", latest).alias("dernier_vente_id"),
        *extra,
    )


def clients_from_bronze(bronze_df: DataFrame, rules: ClientRules, updated_at: Column | None = None
                        ) -> DataFrame:
    """One row per client over its whole history; name, country and segment are those of its latest
    sale (by event time, then vente_id)."""
    df = _client_aggregates(bronze_df, F.count_distinct("produit_id").alias("nb_produits_distincts"))
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
    return _totals_from_bronze(bronze_df, "segment", ("nb_ventes", "chiffre_affaires"),
                               {"nb_clients": "client_id", "nb_pays": "pays"}, SEGMENTS_COLUMNS)


def ventes_jour_from_bronze(bronze_df: DataFrame) -> DataFrame:
    """Sales, revenue and buying clients per event day."""
    return _totals_from_bronze(bronze_df, "jour", ("nb_ventes", "chiffre_affaires"),
                               {"nb_clients": "client_id"}, VENTES_JOUR_COLUMNS)


# --- incremental: combine what Silver holds with the aggregates of new Bronze rows ---------------------

# Distinct counts cannot be added up, so the distinct pairs behind them are kept in one table:
# dim → (key column, member column). A count is then the number of pairs of a key.
PAIRS = {
    "client_produits": ("client_id", "produit_id"),
    "pays_clients": ("pays", "client_id"),
    "segment_clients": ("segment", "client_id"),
    "segment_pays": ("segment", "pays"),
    "jour_clients": ("jour", "client_id"),
}
PAIRS_COLUMNS = ["dim", "key", "member"]


def pairs_from_bronze(bronze_df: DataFrame) -> DataFrame:
    """The distinct (dim, key, member) pairs of these sales, all as strings."""
    parts = [bronze_df.select(F.lit(dim).alias("dim"), F.col(key).cast("string").alias("key"),
                              F.col(member).cast("string").alias("member"))
             for dim, (key, member) in PAIRS.items()]
    df = parts[0]
    for part in parts[1:]:
        df = df.unionByName(part)
    return df.distinct()


def pair_counts(pairs_df: DataFrame, dim: str, key_type: str = "string") -> DataFrame:
    """Number of distinct members per key of one dim, as (key column, n), the key cast back to its
    type. Only the keys present in ``pairs_df`` get a count."""
    key_col = PAIRS[dim][0]
    return (pairs_df.filter(F.col("dim") == dim).groupBy("key").agg(F.count(F.lit(1)).alias("n"))
            .select(F.col("key").cast(key_type).alias(key_col), "n"))


def touched_pairs(existing_pairs_df: DataFrame | None, batch_pairs_df: DataFrame) -> DataFrame:
    """Every pair of the (dim, key)s that new sales touch, stored or new, with ``stored`` telling which:
    enough to recount those keys, and small whatever the history (a broadcast semi-join: one scan of the
    pairs table). ``batch_pairs_df`` holds distinct pairs (``pairs_from_bronze``)."""
    new = batch_pairs_df.select(*PAIRS_COLUMNS, F.lit(False).alias("stored"))
    if existing_pairs_df is None:
        return new
    keys = F.broadcast(batch_pairs_df.select("dim", "key").distinct())
    stored = (existing_pairs_df.select(*PAIRS_COLUMNS).join(keys, ["dim", "key"], "left_semi")
              .withColumn("stored", F.lit(True)))
    return stored.unionByName(new).groupBy(*PAIRS_COLUMNS).agg(F.max("stored").alias("stored"))


def _added(name: str) -> Column:
    return F.coalesce(F.col(f"e.{name}"), F.lit(0)) + F.coalesce(F.col(f"i.{name}"), F.lit(0))


def combine_clients(existing_df: DataFrame | None, new_bronze_df: DataFrame, product_counts_df: DataFrame,
                    rules: ClientRules, updated_at: Column) -> DataFrame:
    """The clients table after new sales: sums added, extremes kept, latest attributes from the newer
    sale, distinct products from ``product_counts_df`` (client_id, n)."""
    inc = _client_aggregates(new_bronze_df).alias("i")
    if existing_df is None:  # first run: an empty table of the right shape
        existing_df = clients_from_bronze(new_bronze_df.limit(0), rules, updated_at)
    e = existing_df.alias("e")
    joined = e.join(inc, F.col("e.client_id") == F.col("i.client_id"), "full_outer") \
        .join(product_counts_df.alias("c"), F.coalesce(F.col("e.client_id"), F.col("i.client_id"))
              == F.col("c.client_id"), "left")
    new_is_latest = F.col("i.client_id").isNotNull() & (
        F.col("e.client_id").isNull()
        | (F.struct(F.col("i.dernier_achat"), F.col("i.dernier_vente_id"))
           > F.struct(F.col("e.dernier_achat"), F.col("e.dernier_vente_id"))))

    def latest(col_e: str, col_i: str) -> Column:
        return F.when(new_is_latest, F.col(col_i)).otherwise(F.col(col_e))

    total = _added("total_depense").cast("decimal(24,2)")
    count = _added("nb_achats")
    return (joined.select(
        F.coalesce(F.col("e.client_id"), F.col("i.client_id")).alias("client_id"),
        latest("e.client_nom", "i.last.client_nom").alias("client_nom"),
        latest("e.pays", "i.last.pays").alias("pays"),
        latest("e.segment", "i.last.segment").alias("segment"),
        count.alias("nb_achats"), _added("total_quantite").cast("long").alias("total_quantite"),
        total.alias("total_depense"), average(total, count).alias("panier_moyen"),
        F.least(F.col("e.achat_min"), F.col("i.achat_min")).alias("achat_min"),
        F.greatest(F.col("e.achat_max"), F.col("i.achat_max")).alias("achat_max"),
        F.coalesce(F.col("c.n"), F.col("e.nb_produits_distincts")).alias("nb_produits_distincts"),
        F.least(F.col("e.premier_achat"), F.col("i.premier_achat")).alias("premier_achat"),
        F.greatest(F.col("e.dernier_achat"), F.col("i.dernier_achat")).alias("dernier_achat"),
        latest("e.dernier_vente_id", "i.dernier_vente_id").alias("dernier_vente_id"),
        F.when(F.col("i.client_id").isNotNull(), updated_at).otherwise(F.col("e.updated_at"))
        .alias("updated_at"))
        .transform(lambda d: with_client_flags(d, rules))
        .select(*CLIENTS_COLUMNS))


# table → (key column, additive measures, distinct counts from PAIRS, full-recompute function)
TOTALS = {
    "pays": ("pays", ("nb_ventes", "chiffre_affaires", "quantite_vendue"), {"nb_clients": "pays_clients"},
             pays_from_bronze),
    "segments": ("segment", ("nb_ventes", "chiffre_affaires"),
                 {"nb_clients": "segment_clients", "nb_pays": "segment_pays"}, segments_from_bronze),
    "ventes_jour": ("jour", ("nb_ventes", "chiffre_affaires"), {"nb_clients": "jour_clients"},
                    ventes_jour_from_bronze),
}


def combine_totals(table: str, existing_df: DataFrame | None, new_bronze_df: DataFrame,
                   pairs_df: DataFrame) -> DataFrame:
    """The ``pays``, ``segments`` or ``ventes_jour`` table after new sales: measures added, distinct
    counts of the keys in ``pairs_df`` (at least every pair, old and new, of the keys the new sales
    touch) recounted from it, other keys' counts kept."""
    key, measures, counted, from_bronze = TOTALS[table]
    empty = from_bronze(new_bronze_df.limit(0))
    columns, key_type = empty.columns, empty.schema[key].dataType.simpleString()
    existing_df = empty if existing_df is None else existing_df
    inc = new_bronze_df.groupBy(key).agg(*[_measure(m).alias(m) for m in measures])
    df = existing_df.alias("e").join(inc.alias("i"), F.col(f"e.{key}") == F.col(f"i.{key}"), "full_outer") \
        .select(F.coalesce(F.col(f"e.{key}"), F.col(f"i.{key}")).alias(key),
                *[_added(m).cast(empty.schema[m].dataType).alias(m) for m in measures],
                *[F.col(f"e.{c}").alias(f"_e_{c}") for c in counted])
    for column, dim in counted.items():
        # Keys the new sales touched get their recount; the others keep the count they had.
        counts = pair_counts(pairs_df, dim, key_type).withColumnRenamed("n", f"_n_{column}")
        df = df.join(counts, key, "left").withColumn(
            column, F.coalesce(f"_n_{column}", f"_e_{column}", F.lit(0)).cast("long"))
    if "panier_moyen" in columns:
        df = df.withColumn("panier_moyen", average(F.col("chiffre_affaires"), F.col("nb_ventes")))
    return df.select(*columns)
