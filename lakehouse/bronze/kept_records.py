"""The key and content the duplicate check keeps a record under, as Spark expressions (the same on a batch and
on Bronze's tables), and the records earlier batches kept, read back from those tables: by a restart, to
rebuild the duplicate state, and by the writer, to look up ids pruned from memory."""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.bronze.columns import CORRECTION_CONTENT, SALE_CONTENT
from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.lake import LakePath
from lakehouse.platform.paths import Paths

# A correction is kept in the duplicate check under its retour_id with this mark in front: ids hold no control
# character (the contract), so a correction's key never equals a sale's.
CORRECTION_MARK = "\x01"


def sale_content() -> Column:
    """The hash that tells two records of one vente_id apart (same expression on a batch and on Bronze)."""
    return F.xxhash64(*SALE_CONTENT)


def correction_content() -> Column:
    """The hash that tells two corrections of one retour_id apart."""
    return F.xxhash64(*CORRECTION_CONTENT)


def is_sale() -> Column:
    return F.col("type_evenement") == "vente"


def dedup_key() -> Column:
    """The id a record is kept under: a sale's vente_id, a correction's marked retour_id."""
    return F.when(is_sale(), F.col("vente_id")).otherwise(F.concat(F.lit(CORRECTION_MARK), F.col("retour_id")))


def record_content() -> Column:
    return F.when(is_sale(), sale_content()).otherwise(correction_content())


def earlier_rows(spark: SparkSession, path: LakePath, query_id: str, batch_id: int) -> DataFrame | None:
    """Rows of earlier batches in Bronze's sales or corrections table (None: no such table yet): a batch
    replayed after a crash may find its own rows (and later ones) already committed, and must decide as it
    did the first time."""
    if not delta_table_exists(path):
        return None
    own_later = (F.col("bronze_query_id") == query_id) & (F.col("bronze_batch_id") >= batch_id)
    return spark.read.format("delta").load(str(path)).filter(~own_later)


def kept_rows(spark: SparkSession, paths: Paths, query_id: str, batch_id: int,
              where: Callable[[DataFrame, bool], DataFrame]) -> list:
    """(key, event time, content, partition, offset) of the kept sales and corrections of earlier batches
    that ``where(table, is_corrections)`` selects."""
    rows = []
    for path, corrections in ((paths.bronze, False), (paths.corrections, True)):
        earlier = earlier_rows(spark, path, query_id, batch_id)
        if earlier is None:
            continue
        key = F.concat(F.lit(CORRECTION_MARK), F.col("retour_id")) if corrections else F.col("vente_id")
        content = correction_content() if corrections else sale_content()
        rows += where(earlier, corrections).select(key, F.unix_micros("event_ts"), content, "kafka_partition",
                                                   "kafka_offset").collect()
    return rows
