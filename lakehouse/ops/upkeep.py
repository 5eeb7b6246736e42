"""Table upkeep: Bronze retention, compaction of small files, VACUUM — safe while the streams run.

Usage: python -m lakehouse.ops.upkeep [--skip-retention] [--skip-optimize] [--skip-vacuum] [--config PATH]

- Retention deletes Bronze days (``jour``) older than ``[analytics] bronze_retention_days``: a
  partition-aligned delete, which Delta commits from metadata alone. Silver keeps what it counted.
- OPTIMIZE bin-packs the small files of the tables that grow by appends or merges (Bronze per ``jour``,
  quarantine, duplicates, metrics, Silver's clients); Delta commits it as a rearrangement (no data change),
  which appends and the streams reading these tables do not conflict with (a Silver batch that meets it
  computes its clients again). Silver's small tables (pays, segments, ventes_jour) are skipped: every
  Silver batch rewrites each of them whole, in one file.
- VACUUM removes files no version within ``[analytics] vacuum_retention`` needs (``silver_history`` for
  Silver's tables: a continuous Silver commits a version a second). A job's own upkeep skips
  it on a table created less than that long ago: every file of such a table is younger than the history
  kept, so VACUUM could delete nothing, and on object storage it lists every file of the table.
A step that still meets a concurrent commit it conflicts with (a late sale appended to a day being
deleted) is logged and left for the next run; the other steps go on.

The long-running Silver job (``--continuous``, ``--interval``) keeps its own tables on every lake
(``OwnUpkeep``, between two batches, every ``[analytics] upkeep_interval``): its history grows by a version
a batch. On object storage (an ``s3a://`` lake) two processes must not write one table: Delta's S3 log store
keeps writers apart only inside one JVM (docs/ARCHITECTURE.md, "Writers on object storage"). There the
Bronze stream's driver also runs Bronze's upkeep in a thread of its own, and this command refuses to run
unless told that both jobs are stopped (``--pipeline-stopped``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Collection
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.platform.cli import add_config_flag, add_verbose_flag, config_or_exit, setup_logging
from lakehouse.platform.config import Config
from lakehouse.platform.delta import delta_table_exists, one_row
from lakehouse.platform.job_lock import lock_or_exit, upkeep_folder
from lakehouse.platform.lake import LakePath, on_object_storage
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import build_spark_or_log
from lakehouse.silver.tables import REWRITTEN_TABLES, SILVER_TABLES

log = logging.getLogger("lakehouse.ops.upkeep")

# Delta refuses VACUUM below a week of history unless told the reader-safety check is off.
DELTA_SAFE_VACUUM_HOURS = 168
EXIT_PARTLY_DONE = 4  # a step was left for the next run (see the warnings)
CONFLICTS = (DeltaConcurrentModificationException, ConcurrentWriteException, ConcurrentAppendException,
             ConcurrentDeleteReadException, ConcurrentDeleteDeleteException, ConcurrentTransactionException,
             MetadataChangedException, ProtocolChangedException)


def bronze_tables(paths: Paths) -> list[LakePath]:
    """The tables the Bronze stream writes."""
    return [paths.bronze, paths.corrections, paths.quarantine, paths.duplicates, paths.bronze_metrics]


def silver_tables(paths: Paths) -> list[LakePath]:
    """The tables the Silver job writes."""
    return [paths.silver(t) for t in SILVER_TABLES]


def tables(paths: Paths, only: Collection[LakePath] | None = None) -> list[LakePath]:
    """Every Delta table of the pipeline that exists (of ``only``, when given)."""
    candidates = [*bronze_tables(paths), *silver_tables(paths)]
    return [p for p in candidates if (only is None or p in only) and delta_table_exists(p)]


def delete_old_bronze_days(spark: SparkSession, paths: Paths, keep_days: int, today: date) -> int:
    """Delete the Bronze sales and corrections of days older than ``keep_days`` before ``today``; returns the rows
    deleted."""
    cutoff = today - timedelta(days=keep_days)
    deleted = 0
    for path in (paths.bronze, paths.corrections):
        if not delta_table_exists(path):
            continue
        metrics = spark.sql(f"DELETE FROM delta.`{path}` WHERE jour < DATE'{cutoff.isoformat()}'")
        deleted += one_row(metrics)["num_affected_rows"] if "num_affected_rows" in metrics.columns else 0
    log.info("Retention: %d Bronze rows older than %s deleted (keeping %d days)", deleted, cutoff, keep_days)
    return deleted


def optimize(spark: SparkSession, path: LakePath) -> tuple[int, int]:
    """Compact a table's small files; returns (files removed, files added)."""
    row = one_row(spark.sql(f"OPTIMIZE delta.`{path}`"))
    metrics = row["metrics"]
    log.info("OPTIMIZE %s: %d files compacted into %d", path, metrics.numFilesRemoved, metrics.numFilesAdded)
    return metrics.numFilesRemoved, metrics.numFilesAdded


def vacuum(spark: SparkSession, path: LakePath, retain_hours: float) -> None:
    """Remove files older than the retention that no kept version needs."""
    spark.sql(f"VACUUM delta.`{path}` RETAIN {retain_hours:g} HOURS")
    log.info("VACUUM %s (history kept: %g hours)", path, retain_hours)


def created_ms(spark: SparkSession, path: LakePath) -> int | None:
    """When a table was created (milliseconds since the epoch, from its metadata), None if not recorded."""
    return one_row(spark.sql(f"DESCRIBE DETAIL delta.`{path}`").select(F.unix_millis("createdAt")))[0]


def younger_than_history(spark: SparkSession, path: LakePath, retain_hours: float,
                         now_ms: float | None = None) -> bool:
    """Whether a table was created less than ``retain_hours`` ago: VACUUM then finds no file to delete (a
    file removed by a later commit, or left by a failed write, is younger than the table)."""
    created = created_ms(spark, path)
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    return created is not None and now_ms - created < retain_hours * 3_600_000


def compacted_tables(paths: Paths, only: Collection[LakePath] | None = None) -> list[LakePath]:
    """The existing tables that grow by appends or merges (Silver's small tables are rewritten whole, in one
    file, by each batch)."""
    rewritten = {paths.silver(t) for t in REWRITTEN_TABLES}
    return [p for p in tables(paths, only) if p not in rewritten]


def _step(name: str, path: LakePath, action) -> bool:
    """Run one step; a commit conflict with a concurrent writer is logged, not raised."""
    try:
        action()
        return True
    except CONFLICTS as e:
        log.warning("%s %s met a concurrent commit and was left for the next upkeep run: %s", name, path,
                    str(e).splitlines()[0])
        return False


def run_upkeep(spark: SparkSession, cfg: Config, paths: Paths, today: date, retention: bool = True,
               compaction: bool = True, vacuuming: bool = True, only: Collection[LakePath] | None = None,
               stop: threading.Event | None = None, vacuum_young: bool = True) -> bool:
    """Retention, then OPTIMIZE, then VACUUM, over every table that exists (of ``only``, when given);
    False if a step was left for the next run because of a concurrent commit, or not started because
    ``stop`` was set. ``vacuum_young=False`` leaves out the VACUUM of tables younger than the history kept
    (it would delete nothing)."""
    done = True
    stopped = stop.is_set if stop is not None else (lambda: False)
    if retention and paths.bronze in tables(paths, only) and not stopped():
        done &= _step("Retention of", paths.bronze, lambda: delete_old_bronze_days(
            spark, paths, cfg.analytics.bronze_retention_days, today))
    if compaction:
        for path in compacted_tables(paths, only):
            if stopped():
                return False
            done &= _step("OPTIMIZE", path, lambda p=path: optimize(spark, p))
    if vacuuming and not stopped():
        # VACUUM lists files with one Spark task per slot of this parallelism, 200 by default (and
        # Spark's own listing 10,000): far too many tasks for a small table on a small machine.
        listing = str(max(2, cfg.spark.shuffle_partitions))
        spark.conf.set("spark.databricks.delta.vacuum.fileListing.parallelism", listing)
        spark.conf.set("spark.sql.sources.parallelPartitionDiscovery.parallelism", listing)
        # Delta 4 ignores VACUUM's RETAIN (unless 0) in favour of each table's delta.deletedFileRetentionDuration,
        # a week by default, and says so in a warning: [analytics] vacuum_retention would keep files for a week
        # whatever it says. This makes RETAIN count again (tested both ways).
        spark.conf.set("spark.databricks.delta.vacuum.retentionWindowIgnore.enabled", "false")
        retain_hours = cfg.analytics.vacuum_retention.seconds / 3600
        silver_hours = cfg.analytics.silver_history.seconds / 3600
        silver, existing = set(silver_tables(paths)), tables(paths, only)
        if retain_hours < DELTA_SAFE_VACUUM_HOURS:
            log.warning("[analytics] vacuum_retention is below 7 days: a reader or stream slower than that "
                        "may miss files; Delta's safety check is turned off for this run")
        # Silver's shorter history is by design (its readers are the dashboards, which read the newest version).
        if retain_hours < DELTA_SAFE_VACUUM_HOURS or (silver.intersection(existing)
                                                      and silver_hours < DELTA_SAFE_VACUUM_HOURS):
            spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        for path in existing:
            if stopped():
                return False
            hours = silver_hours if path in silver else retain_hours
            if not vacuum_young and younger_than_history(spark, path, hours):
                log.info("VACUUM %s: not needed yet (the table is younger than the %g hours of history kept)",
                         path, hours)
                continue
            done &= _step("VACUUM", path, lambda p=path, h=hours: vacuum(spark, p, h))
    return done and not stopped()


class OwnUpkeep:
    """The upkeep of the tables one job writes, run by that job (on object storage: see the module's doc).

    ``run_if_due()`` runs it when ``interval_s`` has passed since the job started or since the last run (the
    Silver job calls it between two runs); ``start_background()`` runs it in a thread of the driver every
    ``interval_s`` (the Bronze stream: Delta's log store keeps the thread's commits and the batches' apart,
    as in one JVM); ``close()`` cancels what runs (a cancelled step commits nothing) and waits for the thread.
    """

    JOB_GROUP = "lakehouse-upkeep"

    def __init__(self, spark: SparkSession, cfg: Config, paths: Paths, owned: list[LakePath], interval_s: float,
                 clock=time.monotonic):
        self.spark, self.cfg, self.paths, self.owned = spark, cfg, paths, owned
        self.interval_s, self.clock = interval_s, clock
        self.last = clock()
        self.runs = 0
        self._stop = threading.Event()
        self._busy = False
        self._thread: threading.Thread | None = None

    def run_now(self) -> bool:
        today = datetime.now(ZoneInfo(self.cfg.spark.timezone)).date()
        log.info("Upkeep of this job's tables (%s)", ", ".join(p.name for p in self.owned))
        self._busy = True
        try:
            return run_upkeep(self.spark, self.cfg, self.paths, today, only=self.owned, stop=self._stop,
                              vacuum_young=False)
        finally:
            self._busy = False
            self.last = self.clock()
            self.runs += 1

    def run_if_due(self) -> bool | None:
        """Run the upkeep if it is due; None when it was not."""
        if self.clock() - self.last < self.interval_s:
            return None
        return self.run_now()

    def start_background(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lakehouse-upkeep", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        self.spark.sparkContext.setJobGroup(self.JOB_GROUP, "table upkeep", interruptOnCancel=True)
        while not self._stop.wait(self.interval_s):
            try:
                self.run_now()
            except Exception as e:  # noqa: BLE001 - the stream goes on; the next run tries again
                if self._stop.is_set():
                    return
                log.warning("Upkeep failed (the next one tries again in %g s): %s", self.interval_s,
                            str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__)

    def close(self, timeout_s: float = 60.0) -> None:
        """No further step starts; the one running is cancelled (it then commits nothing)."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            if self._busy:
                self.spark.sparkContext.cancelJobGroup(self.JOB_GROUP)
            self._thread.join(timeout_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bronze retention, OPTIMIZE and VACUUM of every table.")
    parser.add_argument("--skip-retention", action="store_true", help="do not delete old Bronze days")
    parser.add_argument("--skip-optimize", action="store_true", help="do not compact small files")
    parser.add_argument("--skip-vacuum", action="store_true", help="do not remove unreferenced files")
    parser.add_argument("--pipeline-stopped", action="store_true",
                        help="on object storage: run although the tables have their own writers (say it only "
                             "while the Bronze stream and the Silver job are stopped)")
    add_config_flag(parser)
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    cfg = config_or_exit(args)
    setup_logging(cfg.monitoring.log_level)
    paths = Paths.from_config(cfg)
    if on_object_storage(cfg) and not args.pipeline_stopped:
        log.error("The lake is on object storage (%s): there the Bronze stream and the Silver job keep their own "
                  "tables every [analytics] upkeep_interval, because a second writing process could lose a "
                  "commit. Run this only while both are stopped, with --pipeline-stopped.", paths.lake_dir)
        return 2
    with ExitStack() as locks:
        locks.enter_context(lock_or_exit("Upkeep", paths, upkeep_folder(paths), log))
        if on_object_storage(cfg):
            # --pipeline-stopped is checked where it can be: the two jobs must not run on this machine, and
            # cannot start here while upkeep writes their tables (another machine is not seen: docs/OPERATIONS.md).
            locks.enter_context(lock_or_exit("The Bronze stream", paths, paths.bronze_checkpoint, log))
            locks.enter_context(lock_or_exit("The Silver job", paths, paths.silver_checkpoint, log))
        return run(args, cfg, paths)


def run(args: argparse.Namespace, cfg: Config, paths: Paths) -> int:
    """Start Spark and run the steps (the lock is held); the exit code."""
    if not tables(paths):
        log.error("No Delta table under %s yet: run spark_streaming_delta.py first", paths.delta_dir)
        return 1
    spark = build_spark_or_log(cfg, "upkeep", log, args.verbose)
    if spark is None:
        return 1
    # Days are event days in the session time zone, as Bronze's jour column.
    today = datetime.now(ZoneInfo(cfg.spark.timezone)).date()
    done = run_upkeep(spark, cfg, paths, today, retention=not args.skip_retention,
                      compaction=not args.skip_optimize, vacuuming=not args.skip_vacuum)
    return 0 if done else EXIT_PARTLY_DONE


if __name__ == "__main__":
    sys.exit(main())
