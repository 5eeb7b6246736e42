"""Silver's incremental job: a Delta stream over Bronze, each batch merged into the Silver tables.

Progress is the checkpoint of a Delta stream over Bronze, so each batch reads only the Bronze versions not
seen yet. A batch changes only the rows its sales touch: the touched clients are merged into ``clients``,
and the small tables (one row per country, segment, day) get their touched rows. Each table write is
idempotent (Delta's txnAppId/txnVersion), so a batch re-done after a crash counts nothing twice.

The stream runs either until Bronze has nothing new (``trigger_s=None``: a single run, or each run of
``--interval``) or for ever at a processing-time trigger (``--continuous``).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pyarrow.compute as pc
from delta.tables import DeltaTable
import pyarrow as pa
from deltalake import CommitProperties, Transaction, write_deltalake
from deltalake import DeltaTable as DeltaRsTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.util import inheritable_thread_target

from lakehouse.platform.delta import (checkpoint_has_entries, checkpoint_query_id, delta_table_exists,
                                     is_commit_conflict, read_delta)
from lakehouse.platform.lake import ObjectPath, remove_tree
from lakehouse.platform.paths import Paths
from lakehouse.silver.tables import SILVER_TABLES, silver_tag, tagged_batch
from lakehouse.silver.small_batch import client_rows_after, gained, totals_after
from lakehouse.silver.transforms import (TOTALS, ClientRules, clients_from_bronze, combine_clients, combine_totals,
                                         new_members)

log = logging.getLogger(__name__)


class SilverInputError(RuntimeError):
    """Silver cannot run: its input is missing, or its state does not match its tables."""


class SilverStopping(RuntimeError):
    """Raised by a batch that starts after a stop was asked for: it writes nothing, and runs again at the
    next start."""


BRONZE_INPUT = ["vente_id", "client_id", "produit_id", "event_ts", "jour", "quantite", "montant",
                "client_nom", "pays", "segment"]
QUERY_NAME = "silver_ventes"
# Delta's session settings that make a MERGE idempotent and tag its commit (a MERGE takes no write options).
TXN_APP_ID, TXN_VERSION = "spark.databricks.delta.write.txnAppId", "spark.databricks.delta.write.txnVersion"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
# A batch of at most this many sales is merged in the driver (lakehouse.silver.small_batch); a larger one
# (the first batch over a long history, a catch-up after Silver was stopped) by Spark's transforms.
DRIVER_BATCH_ROWS = 50_000
# A table write that meets a concurrent commit it cannot pass (make upkeep compacting the same table) is
# computed again from the new version, this many times at most.
CONFLICT_RETRIES = 5


@dataclass
class BatchReport:
    """What one Silver batch did."""

    batch_id: int
    rows: int
    newest_sale: datetime | None
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)


def _save(df: DataFrame, path: Path, mode: str, app_id: str, batch_id: int) -> None:
    # Idempotent: Delta skips a write whose (txnAppId, txnVersion) it has already committed, so a batch
    # re-run after a crash leaves each table as if it had run once.
    # Tagged with the batch: the web dashboard's time travel finds each table's version of a batch by it.
    writer = (df.write.format("delta").mode(mode).option("txnAppId", app_id)
              .option("txnVersion", batch_id).option("userMetadata", silver_tag(batch_id)))
    if mode == "overwrite":
        writer = writer.option("overwriteSchema", "true")
    writer.save(str(path))


def _is_write_conflict(error: Exception) -> bool:
    # Delta's concurrent-modification exceptions (io.delta.exceptions.Concurrent*, as py4j surfaces them), and
    # delta-rs's failed commit (a concurrent transaction changed what this one read).
    return is_commit_conflict(error) or type(error).__name__ == "CommitFailedError"


def open_delta_rs(path: Path, version: int | None = None) -> DeltaRsTable:
    """The table at ``path`` through delta-rs (no JVM): a small read or write costs milliseconds, where Spark
    plans several jobs for each."""
    return DeltaRsTable(str(path), version=version, storage_options=storage_options(path))


def storage_options(path: Path) -> dict[str, str] | None:
    """delta-rs's settings for a table on object storage (None on a local disk)."""
    if not isinstance(path, ObjectPath):
        return None
    # Silver alone writes its tables, one write at a time (its lock, and its own upkeep between batches):
    # delta-rs needs no lock service on object storage for that.
    return {**path.settings.delta_rs_options(), "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}


def read_rows(path: Path, version: int | None = None, where: pc.Expression | None = None) -> list[dict]:
    """The rows of a table (as of ``version``, those matching ``where``), as dicts."""
    dataset = open_delta_rs(path, version).to_pyarrow_dataset()
    return dataset.to_table(filter=where).to_pylist()


def _commit(table: DeltaRsTable, app_id: str, batch_id: int) -> CommitProperties | None:
    """The commit's properties (the batch's tag, its idempotency token), or None when this batch's write is
    already in the table (a batch re-run after a crash)."""
    done = table.transaction_version(app_id)
    if done is not None and done >= batch_id:
        return None
    return CommitProperties(custom_metadata={"userMetadata": silver_tag(batch_id)},
                            app_transactions=[Transaction(app_id, batch_id)])


def _arrow(table: DeltaRsTable, rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=pa.schema(table.schema().to_arrow()))


def write_rows(path: Path, rows: list[dict], app_id: str, batch_id: int) -> None:
    """Replace the table at ``path`` by ``rows``, once per (``app_id``, ``batch_id``) as Spark's
    txnAppId/txnVersion would (the same token, in the same log)."""
    table = open_delta_rs(path)
    commit = _commit(table, app_id, batch_id)
    if commit is not None:
        write_deltalake(table, _arrow(table, rows), mode="overwrite", commit_properties=commit)


def merge_rows(path: Path, rows: list[dict], key: str, app_id: str, batch_id: int) -> None:
    """Upsert ``rows`` into the table at ``path`` on ``key``, once per (``app_id``, ``batch_id``)."""
    table = open_delta_rs(path)
    commit = _commit(table, app_id, batch_id)
    if commit is not None:
        (table.merge(_arrow(table, rows), f"t.{key} = s.{key}", source_alias="s", target_alias="t",
                     commit_properties=commit)
         .when_matched_update_all().when_not_matched_insert_all().execute())


class SilverBatchWriter:
    """foreachBatch function: new Bronze rows → the touched clients' new rows (from the rows they had) →
    the clients gained by each country, segment and day → the four tables written at once."""

    def __init__(self, spark: SparkSession, rules: ClientRules, paths: Paths, checkpoint: Path,
                 on_batch: Callable[[BatchReport], None] | None = None):
        self.spark, self.rules, self.paths, self.checkpoint = spark, rules, paths, checkpoint
        self.on_batch = on_batch
        self.rows_merged = 0
        self.batches = 0
        self._query_id: str | None = None
        # The first batch after a start, or after a failed one, may be a batch that a crash interrupted
        # after some of its tables were written (see _clients_version).
        self._may_replay = True
        # Held while a batch runs: a stop, or the upkeep of Silver's tables, waits for the batch to end.
        self.batch_lock = threading.Lock()
        self.stopping = False

    def _app(self, table: str) -> str:
        if self._query_id is None:  # written by Spark when the query starts
            self._query_id = checkpoint_query_id(self.checkpoint)
        return f"{self._query_id}:{table}"

    def __call__(self, bronze_batch_df: DataFrame, batch_id: int) -> None:
        with self.batch_lock:
            if self.stopping:
                raise SilverStopping("Silver is stopping: this batch runs again at the next start")
            started = time.monotonic()
            new = bronze_batch_df.select(*BRONZE_INPUT).persist()
            try:
                rows, newest, steps = self._merge(new, batch_id)
            except BaseException:
                self._may_replay = True
                raise
            finally:
                new.unpersist()
            self._may_replay = False
            self.rows_merged += rows
            self.batches += 1
            report = BatchReport(batch_id, rows, newest, time.monotonic() - started, steps)
            log.info("Silver batch %d: %d Bronze rows merged in %.2f s (%s)", batch_id, report.rows,
                     report.seconds, ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
            if self.on_batch is not None:
                self.on_batch(report)

    def _clients_version(self, batch_id: int) -> int | None:
        """The version of ``clients`` this batch starts from (None: no table yet). Normally the latest; but
        when a crash interrupted this batch after its clients were written, the version before that commit,
        so that the other tables' new clients are counted against what the clients had before the batch."""
        path = self.paths.silver("clients")
        if not delta_table_exists(path):
            return None
        latest = open_delta_rs(path)
        if self._may_replay:
            for commit in latest.history(50):
                if tagged_batch(commit.get("userMetadata")) == batch_id:
                    log.info("Silver batch %d runs again: its clients were written (version %d); counting from "
                             "the version before", batch_id, commit["version"])
                    return commit["version"] - 1 if commit["version"] > 0 else None
        return latest.version()

    def _read_clients(self, version: int) -> DataFrame:
        return self.spark.read.format("delta").option("versionAsOf", version).load(str(self.paths.silver("clients")))

    def _merge(self, new: DataFrame, batch_id: int) -> tuple[int, datetime | None, dict[str, float]]:
        """Merge one batch; (its rows, its newest sale's event time, seconds per step)."""
        steps: dict[str, float] = {}
        started = time.monotonic()

        def done(step: str) -> None:
            nonlocal started
            steps[step] = time.monotonic() - started
            started = time.monotonic()

        version = self._clients_version(batch_id)
        sales = new.limit(DRIVER_BATCH_ROWS + 1).toArrow().to_pylist()
        done("read")
        if not sales:  # a Bronze commit without sales (retention's delete): nothing to count
            return 0, None, steps
        if len(sales) <= DRIVER_BATCH_ROWS:
            self._create_missing_tables(new)
            self._merge_in_driver(version, sales, batch_id, done, steps)
            return len(sales), max((s["event_ts"] for s in sales), default=None), steps
        clients = None if version is None else self._read_clients(version)
        self._merge_in_spark(new, clients, batch_id, done, steps)
        summary = new.agg(F.count(F.lit(1)).alias("rows"), F.max("event_ts").alias("newest")).first()
        return summary["rows"], summary["newest"], steps

    def _create_missing_tables(self, new: DataFrame) -> None:
        """Create, empty, the Silver tables that do not exist yet (before the first batch), with the schemas of
        Spark's transforms (the full recompute's), through delta-rs."""
        empty = new.limit(0)
        for table in SILVER_TABLES:
            path = self.paths.silver(table)
            if not delta_table_exists(path):
                df = clients_from_bronze(empty, self.rules) if table == "clients" else TOTALS[table][3](empty)
                schema = to_arrow_schema(df.schema, timezone="UTC")
                write_deltalake(str(path), schema.empty_table(), mode="append",
                                storage_options=storage_options(path))

    def _merge_in_driver(self, version: int | None, sales: list[dict], batch_id: int,
                         done: Callable[[str], None], steps: dict[str, float]) -> None:
        """A small batch, without a Spark job: the touched rows read through delta-rs, computed in the driver
        (``small_batch``), written through delta-rs."""
        clients = self.paths.silver("clients")
        named = pc.field("client_id").cast(pa.string()).isin(list({s["client_id"] for s in sales}))
        before = {} if version is None else {row["client_id"]: row for row in read_rows(clients, version, named)}
        after = client_rows_after(before, sales, self.rules, datetime.now(timezone.utc))
        done("clients read")

        def totals(table: str) -> None:
            key, field_name = TOTALS[table][0], TOTALS[table][1]
            path = self.paths.silver(table)
            existing = {row[key]: row for row in read_rows(path)}
            touched = totals_after(table, existing, sales, gained(before, after, field_name))
            keys = {row[key] for row in touched}
            write_rows(path, [row for k, row in existing.items() if k not in keys] + touched, self._app(table),
                       batch_id)

        self._write_all({"clients": partial_write(merge_rows, clients, after, "client_id", self._app("clients"),
                                                  batch_id),
                         **{table: partial_write(totals, table) for table in SILVER_TABLES if table != "clients"}},
                        steps)
        done("writes")

    def _write_all(self, writes: dict[str, Callable[[], None]], steps: dict[str, float]) -> None:
        """Run the four writes at once, each one's seconds into ``steps``."""
        # The four writes are independent given the batch and its touched clients: made at once, their
        # Delta commits and small jobs overlap. Each table stays idempotent on its own (see _save).
        def timed(item: tuple[str, Callable[[], None]]) -> None:
            started = time.monotonic()
            item[1]()
            steps[f"{item[0]} write"] = time.monotonic() - started
        run = inheritable_thread_target(self.spark)(timed)  # the session's job group
        with ThreadPoolExecutor(len(writes)) as pool:
            list(pool.map(run, writes.items()))

    def _merge_in_spark(self, new: DataFrame, clients: DataFrame | None, batch_id: int,
                        done: Callable[[str], None], steps: dict[str, float]) -> None:
        """A large batch (or the first): Spark's transforms (``transforms``)."""
        paths = self.paths
        # The touched clients before and after the batch, each materialized once (one row per client the
        # batch names), before any write changes the table under them.
        before = None if clients is None else \
            clients.join(F.broadcast(new.select("client_id").distinct()), "client_id", "left_semi").localCheckpoint()
        after = combine_clients(before, new, self.rules,
                                F.lit(datetime.now(timezone.utc)).cast("timestamp")).localCheckpoint()
        done("clients read")

        def totals(table: str) -> None:
            key, field_name = TOTALS[table][0], TOTALS[table][1]
            path = paths.silver(table)
            existing = read_delta(self.spark, path)
            touched = combine_totals(table, existing, new, new_members(before, after, field_name))
            # The small tables (one row per country, segment or day) are rewritten whole: one file, cheaper
            # than a MERGE's two passes, whatever the number of clients.
            rows = touched if existing is None else \
                existing.join(touched.select(key), key, "left_anti").unionByName(touched)
            _save(rows.coalesce(1), path, "overwrite", self._app(table), batch_id)

        self._write_all({"clients": partial_write(self._write_clients, after, batch_id),
                         **{table: partial_write(totals, table) for table in SILVER_TABLES if table != "clients"}},
                        steps)
        done("writes")

    def _write_clients(self, after: DataFrame, batch_id: int) -> None:
        """MERGE the touched clients' rows into ``clients`` (created by the first batch)."""
        path = self.paths.silver("clients")
        if not delta_table_exists(path):
            _save(after, path, "append", self._app("clients"), batch_id)
            return
        conf = self.spark.conf
        settings = {TXN_APP_ID: self._app("clients"), TXN_VERSION: str(batch_id),
                    USER_METADATA: silver_tag(batch_id)}
        # Session settings: the other tables' writes, made meanwhile, carry their own as write options,
        # which Delta takes over the session's.
        for key, value in settings.items():
            conf.set(key, value)
        try:
            (DeltaTable.forPath(self.spark, str(path)).alias("t")
             .merge(after.alias("s"), "t.client_id = s.client_id")
             .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
        finally:
            for key in settings:
                conf.unset(key)


def partial_write(write: Callable[..., None], *args: object) -> Callable[[], None]:
    """``write(*args)``, computed again from the table's new version when a concurrent commit (make
    upkeep compacting the table) refuses it."""
    def attempt() -> None:
        for tries in range(1, CONFLICT_RETRIES + 1):
            try:
                write(*args)
                return
            except Exception as e:  # py4j wraps Delta's exceptions; only its conflicts are retried
                if tries == CONFLICT_RETRIES or not _is_write_conflict(e):
                    raise
                log.info("A Silver write met a concurrent commit (%s); computing it again", type(e).__name__)
    return attempt


def check_silver_state(paths: Paths) -> None:
    """Silver's checkpoint says what its tables already hold: one without the other would count sales
    twice or never. ``SilverInputError`` if they disagree."""
    checkpoint = paths.silver_checkpoint
    committed = checkpoint_has_entries(checkpoint, "commits")
    planned = checkpoint_has_entries(checkpoint, "offsets")  # a crashed first run too
    present = [delta_table_exists(paths.silver(t)) for t in SILVER_TABLES]
    if (committed and not all(present)) or (any(present) and not planned):
        raise SilverInputError(
            f"Silver checkpoint {checkpoint} and the Silver tables under {paths.silver_dir} do not match (one "
            "of them was deleted): run streaming_silver.py --full-refresh to rebuild Silver from Bronze")
    if delta_table_exists(paths.silver_pairs):
        raise SilverInputError(
            f"The Silver tables under {paths.silver_dir} were built by an earlier version (they keep their "
            "distinct counts in _pairs): run streaming_silver.py --full-refresh once to rebuild them from Bronze")


def prepare_silver(spark: SparkSession, paths: Paths, full_refresh: bool = False) -> None:
    """Check (or, with ``full_refresh``, delete) Silver's state, and that Bronze exists; ``SilverInputError``
    says what is wrong."""
    if full_refresh:
        for path in (*[paths.silver(t) for t in SILVER_TABLES], paths.silver_pairs, paths.silver_checkpoint):
            remove_tree(path)
        log.info("Full refresh: Silver tables and checkpoint deleted, rebuilding from Bronze")
    else:
        check_silver_state(paths)
    if read_delta(spark, paths.bronze) is None:
        raise SilverInputError(f"Bronze table {paths.bronze} does not exist yet: run spark_streaming_delta.py "
                               "first (it creates it with the first sales)")


def start_silver_query(spark: SparkSession, writer: SilverBatchWriter, paths: Paths,
                       trigger_s: float | None) -> StreamingQuery:
    """The Silver stream over Bronze: until Bronze has nothing new (``trigger_s`` None), or for ever with a
    batch every ``trigger_s`` seconds (the next batch starts at once when one takes longer)."""
    # A batch's jobs are small: adaptive execution's re-planning costs more than it finds (a MERGE of a few
    # rows ran 11 jobs with it, 6 without).
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    # A MERGE's source is the batch's touched clients, computed once (a local relation, or checkpointed):
    # Delta need not materialize it again.
    spark.conf.set("spark.databricks.delta.merge.materializeSource", "none")
    stream = (spark.readStream.format("delta")
              # Retention deletes old Bronze days: Silver keeps the sales it has already counted.
              .option("ignoreDeletes", "true")
              .load(str(paths.bronze))
              .writeStream.foreachBatch(writer)
              .option("checkpointLocation", str(paths.silver_checkpoint)).queryName(QUERY_NAME))
    stream = stream.trigger(availableNow=True) if trigger_s is None else \
        stream.trigger(processingTime=f"{trigger_s:g} seconds")
    return stream.start()


def run_silver(spark: SparkSession, rules: ClientRules, paths: Paths, full_refresh: bool = False,
               on_batch: Callable[[BatchReport], None] | None = None) -> int:
    """Merge what Bronze committed since the last run into Silver; returns the number of new Bronze rows.

    ``full_refresh`` deletes Silver and its checkpoint first.
    """
    prepare_silver(spark, paths, full_refresh)
    writer = SilverBatchWriter(spark, rules, paths, paths.silver_checkpoint, on_batch)
    start_silver_query(spark, writer, paths, None).awaitTermination()
    return writer.rows_merged
