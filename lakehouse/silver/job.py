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
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Collection

import pyarrow as pa
import pyarrow.compute as pc
from delta.tables import DeltaTable
from deltalake import CommitProperties, Transaction, write_deltalake
from deltalake import DeltaTable as DeltaRsTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.window import Window
from pyspark.util import inheritable_thread_target

from lakehouse.bronze.tables import ensure_corrections_table
from lakehouse.platform.delta import (
    checkpoint_has_entries,
    checkpoint_query_id,
    delta_table_exists,
    is_commit_conflict,
    one_row,
    read_delta,
)
from lakehouse.platform.lake import LakePath, ObjectPath, remove_tree
from lakehouse.platform.paths import Paths
from lakehouse.silver.corrections import (
    REJETS_COLUMNS,
    SALE,
    VENTE_ID_REUSED,
    WAITING_COLUMNS,
    CorrectionFigures,
    apply_batch,
    arrival_key,
)
from lakehouse.silver.sale_index import SaleIndex
from lakehouse.silver.small_batch import client_rows_after, gained, table_key, totals_after
from lakehouse.silver.tables import FIGURE_TABLES, SILVER_TABLES, silver_tag, tagged_batch
from lakehouse.silver.transforms import (
    BOOKING_SCHEMA,
    TOTALS,
    ClientRules,
    clients_from_bronze,
    combine_clients,
    combine_totals,
    new_members,
    sale_bookings,
    ventes_rows,
)

log = logging.getLogger(__name__)


class SilverInputError(RuntimeError):
    """Silver cannot run: its input is missing, or its state does not match its tables."""


class SilverStopping(RuntimeError):
    """Raised by a batch that starts after a stop was asked for: it writes nothing, and runs again at the
    next start."""


# The columns of a Silver batch: Bronze's sales and corrections in one shape (a sale has no retour_id nor motif,
# a correction no product, name, country or segment), with when Bronze received each and its Kafka position.
EVENT_COLUMNS = ["type_evenement", "vente_id", "retour_id", "client_id", "produit_id", "produit_nom", "categorie",
                 "event_ts", "jour", "quantite", "montant", "client_nom", "pays", "segment", "motif", "recu_le",
                 "kafka_partition", "kafka_offset"]
QUERY_NAME = "silver_ventes"
# Delta's session settings that make a MERGE idempotent and tag its commit (a MERGE takes no write options).
TXN_APP_ID, TXN_VERSION = "spark.databricks.delta.write.txnAppId", "spark.databricks.delta.write.txnVersion"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
# A batch of at most this many events is merged in the driver (lakehouse.silver.small_batch); a larger one by
# Spark's transforms, which run many more jobs and are much slower per batch on a small machine.
DRIVER_BATCH_ROWS = 50_000
# Each Bronze table gives a Silver batch about this many bytes of new Parquet files at most (Delta's soft
# maxBytesPerTrigger: a larger single file still comes whole). A Bronze sale row takes about 160 bytes, a
# correction about 240: a backlog (Silver started after Bronze, or stopped a while) comes as several batches the
# driver merges, not one batch for Spark's path, which would fall further behind while it runs.
SOURCE_BYTES_PER_BATCH = "4m"
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
    corrections: CorrectionFigures | None = None


def _save(df: DataFrame, path: LakePath, mode: str, app_id: str, batch_id: int) -> None:
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


def open_delta_rs(path: LakePath, version: int | None = None) -> DeltaRsTable:
    """The table at ``path`` through delta-rs (no JVM): a small read or write costs milliseconds, where Spark
    plans several jobs for each."""
    return DeltaRsTable(str(path), version=version, storage_options=storage_options(path))


def _loaded(path: LakePath, version: int | None, table: DeltaRsTable | None) -> DeltaRsTable:
    """``table`` when the caller already has it open (at ``version``), else the table opened now."""
    return open_delta_rs(path, version) if table is None else table


def storage_options(path: LakePath) -> dict[str, str] | None:
    """delta-rs's settings for a table on object storage (None on a local disk)."""
    if not isinstance(path, ObjectPath):
        return None
    # Silver alone writes its tables, one write at a time (its lock, and its own upkeep between batches):
    # delta-rs needs no lock service on object storage for that.
    return {**path.settings.delta_rs_options(), "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}


def read_rows(path: LakePath, version: int | None = None, where: pc.Expression | None = None,
              table: DeltaRsTable | None = None) -> list[dict]:
    """The rows of a table (as of ``version``, those matching ``where``), as dicts. ``table``: the table
    already open at that version (each read below takes one likewise)."""
    dataset = _loaded(path, version, table).to_pyarrow_dataset()
    return dataset.to_table(filter=where).to_pylist()


def read_rows_column(path: LakePath, version: int | None, column: str, table: DeltaRsTable | None = None) -> list:
    """One column of a table (as of ``version``)."""
    dataset = _loaded(path, version, table).to_pyarrow_dataset()
    return dataset.to_table(columns=[column]).column(column).to_pylist()


def read_named(path: LakePath, version: int | None, column: str, values: set,
               table: DeltaRsTable | None = None) -> list[dict]:
    """The rows of a table (as of ``version``) whose ``column`` is one of ``values``, as dicts. One column is
    scanned to find the files that hold them, and only those files are read whole: ids drawn at random
    (uuids) defeat the files' min/max statistics, and a full read of a large table would cost seconds."""
    if not values:
        return []
    dataset = _loaded(path, version, table).to_pyarrow_dataset()
    where = pc.field(column).cast(pa.string()).isin(sorted(values))
    files = set(dataset.to_table(columns=[column, "__filename"], filter=where).column("__filename").to_pylist())
    rows: list[dict] = []
    for fragment in dataset.get_fragments():
        if fragment.path in files or Path(fragment.path).name in files:
            rows += fragment.to_table(schema=dataset.schema, filter=where).to_pylist()
    return rows


def read_recent_first(path: LakePath, version: int | None, column: str, values: set,
                      table: DeltaRsTable | None = None) -> list[dict]:
    """Like ``read_named`` for a table with one row per value (silver/ventes): the files with the latest
    ``event_ts`` are looked in first, and the search stops once every value is found. The sales that
    corrections name are mostly recent ones, so a batch reads a few recent files, not the whole history."""
    if not values:
        return []
    table = _loaded(path, version, table)
    dataset = table.to_pyarrow_dataset()
    actions = pa.table(table.get_add_actions(flatten=True))
    # Files without statistics (none written here, but another writer may) come last.
    maxima = actions.column("max.event_ts").to_pylist() if "max.event_ts" in actions.schema.names else \
        [None] * actions.num_rows
    newest = {Path(p).name: (ts is None, -(ts.timestamp() if ts else 0))
              for p, ts in zip(actions.column("path").to_pylist(), maxima)}
    fragments = sorted(dataset.get_fragments(), key=lambda f: newest.get(Path(f.path).name, (True, 0)))
    where = pc.field(column).cast(pa.string()).isin(sorted(values))
    missing, rows = set(values), []
    for fragment in fragments:
        found = fragment.to_table(schema=dataset.schema, columns=[column], filter=where).column(column).to_pylist()
        if found:
            rows += fragment.to_table(schema=dataset.schema, filter=where).to_pylist()
            missing -= set(found)
            if not missing:
                break
    return rows


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


def write_rows(path: LakePath, rows: list[dict], app_id: str, batch_id: int, table: DeltaRsTable | None = None) -> None:
    """Replace the table at ``path`` (``table``, when it is already open) by ``rows``, once per (``app_id``,
    ``batch_id``) as Spark's txnAppId/txnVersion would (the same token, in the same log)."""
    table = _loaded(path, None, table)
    commit = _commit(table, app_id, batch_id)
    if commit is not None:
        write_deltalake(table, _arrow(table, rows), mode="overwrite", commit_properties=commit)


def merge_rows(path: LakePath, rows: list[dict], key: str, app_id: str, batch_id: int,
               within: str = "") -> dict | None:
    """Upsert ``rows`` into the table at ``path`` on ``key``, once per (``app_id``, ``batch_id``). ``within``,
    a condition on the target's columns that every row to update meets, lets the MERGE skip the files whose
    statistics rule it out. Returns the MERGE's metrics (None: already written)."""
    table = open_delta_rs(path)
    commit = _commit(table, app_id, batch_id)
    if commit is None:
        return None
    return (table.merge(_arrow(table, rows), f"t.{key} = s.{key}{within}", source_alias="s", target_alias="t",
                        commit_properties=commit)
            .when_matched_update_all().when_not_matched_insert_all().execute())


def write_sales(path: LakePath, rows: list[dict], stored: Collection[str], app_id: str, batch_id: int) -> dict | None:
    """Write a batch's silver/ventes rows: new sales and sales changed by corrections, ``stored`` the ids of
    those the table holds already. New sales only: an append. Otherwise a MERGE limited to the files whose
    sales are no older than the oldest stored sale it changes (sale times grow with arrival, roughly, so a
    correction of a recent sale rewrites a recent file and reads no other)."""
    changed = [row for row in rows if row["vente_id"] in stored]
    if not changed:
        append_rows(path, rows, app_id, batch_id)
        return None
    times = [row["event_ts"] for row in changed]
    within = "" if any(t is None for t in times) else f" AND t.event_ts >= '{_utc_literal(min(times))}'"
    return merge_rows(path, rows, "vente_id", app_id, batch_id, within)


def _utc_literal(moment: datetime) -> str:
    """A timestamp as a SQL literal in UTC (the tables' time zone), to the microsecond."""
    utc = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%f")


def append_rows(path: LakePath, rows: list[dict], app_id: str, batch_id: int) -> None:
    """Append ``rows`` to the table at ``path``, once per (``app_id``, ``batch_id``)."""
    table = open_delta_rs(path)
    commit = _commit(table, app_id, batch_id)
    if commit is not None:
        write_deltalake(table, _arrow(table, rows), mode="append", commit_properties=commit)


class SilverBatchWriter:
    """foreachBatch function: new Bronze sales and corrections → the sales they name, in their new state, with
    the bookings of what was sold and taken back → the touched clients' new rows (from the rows they had) and
    the touched rows of each table of totals → every table written at once."""

    def __init__(self, spark: SparkSession, rules: ClientRules, paths: Paths, checkpoint: LakePath,
                 on_batch: Callable[[BatchReport], None] | None = None):
        self.spark, self.rules, self.paths, self.checkpoint = spark, rules, paths, checkpoint
        self.on_batch = on_batch
        self.rows_merged = 0
        self.batches = 0
        self._query_id: str | None = None
        # The first batch after a start, or after a failed one, may be a batch that a crash interrupted
        # after some of its tables were written (see _versions_before).
        self._may_replay = True
        # Held while a batch runs: a stop, or the upkeep of Silver's tables, waits for the batch to end.
        self.batch_lock = threading.Lock()
        self._merge_lock = threading.Lock()  # Spark MERGEs take their idempotency token from the session
        self._figures: CorrectionFigures | None = None  # the last batch's, for the job's metrics
        # The vente_ids silver/ventes holds (or may: never fewer), built at the first batch that needs it;
        # None after a batch of Spark's path, whose sales it does not see.
        self._sales: SaleIndex | None = None
        self._opened: dict[str, DeltaRsTable] = {}  # tables the batch under way opened, at their latest version
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
            self._figures = None
            try:
                rows, newest, steps = self._merge(bronze_batch_df.select(*EVENT_COLUMNS), batch_id)
            except BaseException:
                self._may_replay = True
                raise
            self._may_replay = False
            self.rows_merged += rows
            self.batches += 1
            report = BatchReport(batch_id, rows, newest, time.monotonic() - started, steps, self._figures)
            log.info("Silver batch %d: %d Bronze rows merged in %.2f s (%s)", batch_id, report.rows,
                     report.seconds, ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
            if self.on_batch is not None:
                self.on_batch(report)

    def _version_before(self, table: str, batch_id: int) -> int | None:
        """The version of a table this batch reads (None: no table yet). Normally the latest; but when a crash
        interrupted this batch after that table was written, the version before that commit, so that the batch
        computes what it computed the first time."""
        path = self.paths.silver(table)
        if not delta_table_exists(path):
            return None
        latest = open_delta_rs(path)
        self._opened[table] = latest
        if self._may_replay:
            for commit in latest.history(50):
                if tagged_batch(commit.get("userMetadata")) == batch_id:
                    log.info("Silver batch %d runs again: its %s were written (version %d); reading the version "
                             "before", batch_id, table, commit["version"])
                    return commit["version"] - 1 if commit["version"] > 0 else None
        return latest.version()

    def _merge(self, new: DataFrame, batch_id: int) -> tuple[int, datetime | None, dict[str, float]]:
        """Merge one batch; (its rows, its newest sale's or correction's event time, seconds per step)."""
        steps: dict[str, float] = {}
        started = time.monotonic()

        def done(step: str) -> None:
            nonlocal started
            steps[step] = time.monotonic() - started
            started = time.monotonic()

        self._opened = {}
        versions = {t: self._version_before(t, batch_id) for t in ("clients", "ventes", "corrections_en_attente")}
        events = new.limit(DRIVER_BATCH_ROWS + 1).toArrow().to_pylist()
        done("read")
        if not events:  # a Bronze commit without rows (retention's delete): nothing to count
            return 0, None, steps
        self._create_missing_tables(new)
        if len(events) <= DRIVER_BATCH_ROWS:
            self._merge_in_driver(versions, events, batch_id, done, steps)
            return len(events), max((e["event_ts"] for e in events), default=None), steps
        # Spark's path reads the batch several times: once from Bronze's files, then from memory. (The driver
        # path reads it once: caching it first would cost a small batch more than the read itself.)
        new = new.persist()
        try:
            self._merge_in_spark(versions, new, batch_id, done, steps)
            summary = one_row(new.agg(F.count(F.lit(1)).alias("rows"), F.max("event_ts").alias("newest")))
        finally:
            new.unpersist()
        return summary["rows"], summary["newest"], steps

    def _create_missing_tables(self, new: DataFrame) -> None:
        """Create, empty, the Silver tables that do not exist yet (before the first batch), with the schemas of
        Spark's transforms (the full recompute's), through delta-rs."""
        sales = new.limit(0)
        for table in SILVER_TABLES:
            path = self.paths.silver(table)
            if delta_table_exists(path):
                continue
            if table == "clients":
                df = clients_from_bronze(sales, self.rules)
            elif table == "ventes":
                df = ventes_rows(sales, F.current_timestamp())
            elif table == "corrections_en_attente":
                df = sales.select(*WAITING_COLUMNS)
            elif table == "rejets":
                df = sales.withColumn("raison", F.lit(None).cast("string")).select(*REJETS_COLUMNS)
            else:
                df = TOTALS[table].from_bronze(sales)
            schema = to_arrow_schema(df.schema, timezone="UTC")
            write_deltalake(str(path), schema.empty_table(), mode="append", storage_options=storage_options(path))

    def _read_known(self, version: int | None, ids: set[str]) -> dict[str, dict]:
        """The rows silver/ventes holds for these vente_ids (as of ``version``): only those the index says it
        may hold are looked for, most recent files first."""
        if version is None:
            return {}
        path = self.paths.silver("ventes")
        if self._sales is None:
            self._sales = SaleIndex(read_rows_column(path, version, "vente_id", self._snapshot("ventes", version)))
        return {row["vente_id"]: row for row in read_recent_first(path, version, "vente_id", self._sales.may_hold(ids),
                                                                   self._snapshot("ventes", version))}

    def _snapshot(self, table: str, version: int) -> DeltaRsTable | None:
        """The table as this batch opened it to learn its version, when that is the version to read."""
        opened = self._opened.get(table)
        return opened if opened is not None and opened.version() == version else None

    def _remember(self, ventes: Collection[str]) -> None:
        if self._sales is None:
            self._sales = SaleIndex()  # an empty or missing table: nothing to read
        self._sales.add(ventes)

    def _read_waiting(self, version: int | None) -> list[dict]:
        return [] if version is None else read_rows(self.paths.silver("corrections_en_attente"), version,
                                                    table=self._snapshot("corrections_en_attente", version))

    def _merge_in_driver(self, versions: dict[str, int | None], events: list[dict], batch_id: int,
                         done: Callable[[str], None], steps: dict[str, float]) -> None:
        """A small batch, without a Spark job: the touched rows read through delta-rs, computed in the driver
        (``corrections``, ``small_batch``), written through delta-rs."""
        now = datetime.now(timezone.utc)
        known = self._read_known(versions["ventes"], {e["vente_id"] for e in events})
        waiting = self._read_waiting(versions["corrections_en_attente"])
        outcome = apply_batch(events, known, waiting)
        # Before any write: should a write fail after its commit, the index still holds what the table does.
        self._remember(outcome.ventes)
        self._figures = CorrectionFigures.of(outcome)
        clients = self.paths.silver("clients")
        touched = {s["client_id"] for s in outcome.sales} | {b["client_id"] for b in outcome.bookings}
        before = {} if versions["clients"] is None else \
            {row["client_id"]: row for row in read_named(clients, versions["clients"], "client_id", touched,
                                                         self._snapshot("clients", versions["clients"]))}
        after = client_rows_after(before, outcome.sales, outcome.bookings, self.rules, now)
        done("clients read")

        def totals(table: str) -> None:
            field_name = TOTALS[table].count_field
            path = self.paths.silver(table)
            current = open_delta_rs(path)  # read, then replaced: one load of the table's log
            existing = {table_key(table, row): row for row in read_rows(path, table=current)}
            counts = gained(before, after, field_name) if field_name else Counter()
            rows = totals_after(table, existing, outcome.sales, outcome.bookings, counts)
            keys = {table_key(table, row) for row in rows}
            write_rows(path, [row for k, row in existing.items() if k not in keys] + rows, self._app(table),
                       batch_id, current)

        writes = {"clients": partial_write(merge_rows, clients, after, "client_id", self._app("clients"), batch_id),
                  **{table: partial_write(totals, table) for table in FIGURE_TABLES if table != "clients"}}
        if outcome.ventes:
            rows = [{**row, "updated_at": now} for row in outcome.ventes.values()]
            writes["ventes"] = partial_write(write_sales, self.paths.silver("ventes"), rows, set(known),
                                             self._app("ventes"), batch_id)
        writes.update(self._side_writes(waiting, outcome.waiting, outcome.rejections, batch_id))
        self._write_all(writes, steps)
        done("writes")

    def _side_writes(self, waiting_before: list[dict], waiting_after: list[dict], rejections: list[dict],
                     batch_id: int) -> dict[str, Callable[[], None]]:
        """The writes of the corrections waiting (when they changed) and of the events refused (when any)."""
        writes = {}
        if [arrival_key(r) for r in waiting_before] != [arrival_key(r) for r in waiting_after]:
            writes["corrections_en_attente"] = partial_write(
                write_rows, self.paths.silver("corrections_en_attente"), waiting_after,
                self._app("corrections_en_attente"), batch_id)
        if rejections:
            writes["rejets"] = partial_write(append_rows, self.paths.silver("rejets"), rejections,
                                             self._app("rejets"), batch_id)
        return writes

    def _write_all(self, writes: dict[str, Callable[[], None]], steps: dict[str, float]) -> None:
        """Run the writes at once, each one's seconds into ``steps``."""
        # The writes are independent given the batch and its touched rows: made at once, their Delta commits
        # and small jobs overlap. Each table stays idempotent on its own (see _save).
        def timed(item: tuple[str, Callable[[], None]]) -> None:
            started = time.monotonic()
            item[1]()
            steps[f"{item[0]} write"] = time.monotonic() - started
        run = inheritable_thread_target(self.spark)(timed)  # the session's job group
        with ThreadPoolExecutor(len(writes)) as pool:
            list(pool.map(run, writes.items()))

    def _merge_in_spark(self, versions: dict[str, int | None], new: DataFrame, batch_id: int,
                        done: Callable[[str], None], steps: dict[str, float]) -> None:
        """A large batch (or the first): the sales by Spark's transforms (``transforms``); the corrections, few,
        applied in the driver (``corrections``) to the sales they name, and their bookings added to the sales'."""
        now = datetime.now(timezone.utc)
        paths = self.paths
        ventes = None if versions["ventes"] is None else \
            self.spark.read.format("delta").option("versionAsOf", versions["ventes"]).load(str(paths.silver("ventes")))
        # The sales counted: the first of each vente_id in arrival order, unless silver/ventes holds it already.
        first = Window.partitionBy("vente_id").orderBy("recu_le", "kafka_partition", "kafka_offset")
        ranked = new.filter(F.col("type_evenement") == SALE).withColumn("_rank", F.row_number().over(first))
        counted = ranked.filter("_rank = 1").drop("_rank")
        if ventes is not None:
            counted = counted.join(ventes.select("vente_id"), "vente_id", "left_anti")
        counted = counted.select(*EVENT_COLUMNS).localCheckpoint()
        reused = ranked.drop("_rank").join(counted.select("kafka_partition", "kafka_offset"),
                                           ["kafka_partition", "kafka_offset"], "left_anti")
        # The corrections, with the sales they name (in silver/ventes, or new in this batch). Through Arrow, as the
        # driver path reads them: times come aware, in UTC, as delta-rs gives the waiting ones.
        corrections = new.filter(F.col("type_evenement") != SALE).toArrow().to_pylist()
        waiting = self._read_waiting(versions["corrections_en_attente"])
        named_ids = {c["vente_id"] for c in corrections} | {w["vente_id"] for w in waiting}
        named_new = [] if not named_ids else \
            counted.filter(F.col("vente_id").isin(*sorted(named_ids))).toArrow().to_pylist()
        known = self._read_known(versions["ventes"], named_ids - {s["vente_id"] for s in named_new})
        self._sales = None  # this batch's sales are counted by Spark: the next driver batch reads the ids again
        outcome = apply_batch(named_new + corrections, known, waiting)
        corrected = [b for b in outcome.bookings if b["nb_ventes"] == 0]  # the sales' own come from Spark
        bookings = sale_bookings(counted).unionByName(self.spark.createDataFrame(corrected, BOOKING_SCHEMA))
        touched = bookings.select("client_id").distinct()
        clients = None if versions["clients"] is None else (
            self.spark.read.format("delta").option("versionAsOf", versions["clients"])
            .load(str(paths.silver("clients"))))
        # The touched clients before and after the batch, each materialized once (one row per client), before
        # any write changes the table under them.
        before = None if clients is None else \
            clients.join(F.broadcast(touched), "client_id", "left_semi").localCheckpoint()
        after = combine_clients(before, counted, bookings, self.rules,
                                F.lit(now).cast("timestamp")).localCheckpoint()
        done("clients read")

        def totals(table: str) -> None:
            key, field_name = TOTALS[table].key, TOTALS[table].count_field
            keys = list(key) if isinstance(key, tuple) else [key]
            path = paths.silver(table)
            existing = read_delta(self.spark, path)
            gained_df = new_members(before, after, field_name) if field_name else None
            rows = combine_totals(table, existing, counted, bookings, gained_df)
            # The small tables (one row per country, segment, day or product) are rewritten whole: one file,
            # cheaper than a MERGE's two passes, whatever the number of clients.
            if existing is not None:
                rows = existing.join(rows.select(*keys), keys, "left_anti").unionByName(rows)
            _save(rows.coalesce(1), path, "overwrite", self._app(table), batch_id)

        # silver/ventes: the new sales as sold, but those a correction changed (new or known) as corrected.
        changed = self.spark.createDataFrame([{**r, "updated_at": now} for r in outcome.ventes.values()],
                                             ventes_rows(counted.limit(0), F.lit(now)).schema) \
            if outcome.ventes else None
        ventes_df = ventes_rows(counted, F.lit(now).cast("timestamp"))
        if changed is not None:
            ventes_df = ventes_df.join(changed.select("vente_id"), "vente_id", "left_anti").unionByName(changed)
        rejected = reused.withColumn("raison", F.lit(VENTE_ID_REUSED)).select(*REJETS_COLUMNS)
        writes = {"clients": partial_write(self._write_merge, "clients", after, "client_id", batch_id),
                  "ventes": partial_write(self._write_merge, "ventes", ventes_df, "vente_id", batch_id),
                  **{table: partial_write(totals, table) for table in FIGURE_TABLES if table != "clients"}}
        writes.update(self._side_writes(waiting, outcome.waiting, [], batch_id))
        rejections = outcome.rejections
        reused_sales = rejected.count()
        self._figures = CorrectionFigures.of(outcome, reused_sales)
        if rejections or reused_sales:
            extra = self.spark.createDataFrame(rejections, rejected.schema) if rejections else None
            all_rejected = rejected if extra is None else rejected.unionByName(extra)
            writes["rejets"] = partial_write(lambda: _save(all_rejected, paths.silver("rejets"), "append",
                                                           self._app("rejets"), batch_id))
        self._write_all(writes, steps)
        done("writes")

    def _write_merge(self, table: str, rows: DataFrame, key: str, batch_id: int) -> None:
        """MERGE ``rows`` into a Silver table on ``key`` (Spark), once per batch."""
        path = self.paths.silver(table)
        conf = self.spark.conf
        settings = {TXN_APP_ID: self._app(table), TXN_VERSION: str(batch_id), USER_METADATA: silver_tag(batch_id)}
        # Session settings: the other tables' writes, made meanwhile, carry their own as write options,
        # which Delta takes over the session's. Two MERGEs of one batch run one after the other.
        with self._merge_lock:
            for name, value in settings.items():
                conf.set(name, value)
            try:
                (DeltaTable.forPath(self.spark, str(path)).alias("t")
                 .merge(rows.alias("s"), f"t.{key} = s.{key}")
                 .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
            finally:
                for name in settings:
                    conf.unset(name)


def partial_write(write: Callable[..., object], *args: object) -> Callable[[], None]:
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
    if delta_table_exists(paths.silver("clients")) and not delta_table_exists(paths.silver("ventes")):
        raise SilverInputError(
            f"The Silver tables under {paths.silver_dir} were built by an earlier version (without returns and "
            "cancellations): run streaming_silver.py --full-refresh once to rebuild them from Bronze")
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
    ensure_corrections_table(spark, paths)


def bronze_events(sales_df: DataFrame, corrections_df: DataFrame) -> DataFrame:
    """Bronze's sales and corrections in one shape (``EVENT_COLUMNS``)."""
    def shaped(df: DataFrame, sales: bool) -> DataFrame:
        present = set(df.columns)
        columns = {"type_evenement": F.lit(SALE)} if sales else {}
        columns.update(recu_le=F.col("ingestion_ts"))
        return df.select(*[(columns[c] if c in columns else F.col(c) if c in present
                            else F.lit(None).cast("string")).alias(c)
                           for c in EVENT_COLUMNS])
    typed = shaped(sales_df, True)
    corrections = shaped(corrections_df, False).select(
        *[F.col(c).cast(typed.schema[c].dataType).alias(c) for c in EVENT_COLUMNS])
    return typed.unionByName(corrections)


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
    def source(path: LakePath) -> DataFrame:
        # Retention deletes old Bronze days: Silver keeps the sales it has already counted.
        return (spark.readStream.format("delta").option("ignoreDeletes", "true")
                .option("maxBytesPerTrigger", SOURCE_BYTES_PER_BATCH).load(str(path)))

    stream = (bronze_events(source(paths.bronze), source(paths.corrections))
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
