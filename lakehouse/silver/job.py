"""Silver's incremental job: an available-now stream over Bronze, each batch merged into Silver.

Progress is the checkpoint of a Delta stream over Bronze, so each run reads only the Bronze versions it
has not seen; each table write is idempotent (Delta's txnAppId/txnVersion), so a run re-done after a
crash counts nothing twice.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.util import inheritable_thread_target

from lakehouse.platform.delta import checkpoint_has_entries, checkpoint_query_id, delta_table_exists, read_delta
from lakehouse.platform.lake import remove_tree
from lakehouse.platform.paths import Paths
from lakehouse.silver.tables import SILVER_TABLES, silver_tag
from lakehouse.silver.transforms import (PAIRS_COLUMNS, ClientRules, combine_clients, combine_totals,
                                         pair_counts, pairs_from_bronze, touched_pairs)

log = logging.getLogger(__name__)

class SilverInputError(RuntimeError):
    """Silver cannot run: its input is missing."""

BRONZE_INPUT = ["vente_id", "client_id", "produit_id", "event_ts", "jour", "quantite", "montant",
                "client_nom", "pays", "segment"]


def _save(df: DataFrame, path: Path, mode: str, app_id: str, batch_id: int,
          partition_by: str | None = None) -> None:
    # Idempotent: Delta skips a write whose (txnAppId, txnVersion) it has already committed, so a batch
    # re-run after a crash leaves each table as if it had run once.
    # Tagged with the batch: the web dashboard's time travel finds each table's version of a run by it.
    writer = (df.write.format("delta").mode(mode).option("txnAppId", app_id)
              .option("txnVersion", batch_id).option("userMetadata", silver_tag(batch_id)))
    if mode == "overwrite":
        writer = writer.option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.save(str(path))


class SilverBatchWriter:
    """foreachBatch function: new Bronze rows → distinct pairs, then each Silver table rewritten from
    what it held plus the new rows (the tables are small: one row per client, country, segment, day)."""

    def __init__(self, spark: SparkSession, rules: ClientRules, paths: Paths, checkpoint: Path):
        self.spark, self.rules, self.paths, self.checkpoint = spark, rules, paths, checkpoint
        self.rows_merged = 0
        self._query_id: str | None = None

    def _app(self, table: str) -> str:
        if self._query_id is None:  # written by Spark when the query starts
            self._query_id = checkpoint_query_id(self.checkpoint)
        return f"{self._query_id}:{table}"

    def __call__(self, bronze_batch_df: DataFrame, batch_id: int) -> None:
        new = bronze_batch_df.select(*BRONZE_INPUT).persist()
        try:
            self._merge(new, batch_id)
        finally:
            new.unpersist()

    def _merge(self, new: DataFrame, batch_id: int) -> None:
        paths, steps = self.paths, {}
        started = time.monotonic()

        def done(step: str) -> None:
            nonlocal started
            steps[step] = time.monotonic() - started
            started = time.monotonic()

        # One job, materialized before the append below changes the pairs table under it (small: the
        # pairs of the keys the batch touches).
        pairs = touched_pairs(read_delta(self.spark, paths.silver_pairs), pairs_from_bronze(new)).localCheckpoint()
        added = pairs.filter(~F.col("stored")).select(*PAIRS_COLUMNS)
        done("pairs")
        updated_at = F.lit(datetime.now(timezone.utc)).cast("timestamp")

        def rewrite(table: str) -> None:
            existing = read_delta(self.spark, paths.silver(table))
            if table == "clients":
                combined = combine_clients(existing, new, pair_counts(pairs, "client_produits"), self.rules,
                                           updated_at)
            else:
                combined = combine_totals(table, existing, new, pairs)
            # Computed from the version it replaces: Delta reads that snapshot's files, which the overwrite
            # only marks as removed.
            _save(combined, paths.silver(table), "overwrite", self._app(table), batch_id)

        writes = [lambda: _save(added, paths.silver_pairs, "append", self._app("pairs"), batch_id, "dim"),
                  *[partial(rewrite, table) for table in SILVER_TABLES]]
        # The five writes are independent given the batch and its pairs: made at once, their Delta
        # commits and small jobs overlap. Each table stays idempotent on its own (see _save), so a
        # batch re-run after a crash in the middle writes only what is missing.
        run = inheritable_thread_target(self.spark)(lambda write: write())  # the session's job group
        with ThreadPoolExecutor(len(writes)) as pool:
            list(pool.map(run, writes))
        done("writes")
        log.info("Silver batch %d merged: %s", batch_id, ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
        self.rows_merged += new.count()


def check_silver_state(paths: Paths) -> None:
    """Silver's checkpoint says what its tables already hold: one without the other would count sales
    twice or never. ``SilverInputError`` if they disagree."""
    checkpoint = paths.silver_checkpoint
    committed = checkpoint_has_entries(checkpoint, "commits")
    planned = checkpoint_has_entries(checkpoint, "offsets")  # a crashed first run too
    tables = [paths.silver(t) for t in SILVER_TABLES] + [paths.silver_pairs]
    present = [delta_table_exists(t) for t in tables]
    if (committed and not all(present)) or (any(present) and not planned):
        raise SilverInputError(
            f"Silver checkpoint {checkpoint} and the Silver tables under {paths.silver_dir} do not match (one "
            "of them was deleted): run streaming_silver.py --full-refresh to rebuild Silver from Bronze")


def run_silver(spark: SparkSession, rules: ClientRules, paths: Paths, full_refresh: bool = False) -> int:
    """Merge what Bronze committed since the last run into Silver; returns the number of new Bronze rows.

    Progress is the checkpoint of an available-now Delta stream over Bronze, so each run reads only
    the Bronze versions it has not seen. ``full_refresh`` deletes Silver and its checkpoint first.
    """
    if full_refresh:
        for path in (*[paths.silver(t) for t in SILVER_TABLES], paths.silver_pairs, paths.silver_checkpoint):
            remove_tree(path)
        log.info("Full refresh: Silver tables and checkpoint deleted, rebuilding from Bronze")
    else:
        check_silver_state(paths)
    if read_delta(spark, paths.bronze) is None:
        raise SilverInputError(f"Bronze table {paths.bronze} does not exist yet: run spark_streaming_delta.py "
                               "first (it creates it with the first sales)")
    writer = SilverBatchWriter(spark, rules, paths, paths.silver_checkpoint)
    query = (spark.readStream.format("delta")
             # Retention deletes old Bronze days: Silver keeps the sales it has already counted.
             .option("ignoreDeletes", "true")
             .load(str(paths.bronze))
             .writeStream.foreachBatch(writer).trigger(availableNow=True)
             .option("checkpointLocation", str(paths.silver_checkpoint)).queryName("silver_ventes")
             .start())
    query.awaitTermination()
    return writer.rows_merged

