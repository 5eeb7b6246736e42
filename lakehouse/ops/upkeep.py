"""Table upkeep: Bronze retention, compaction of small files, VACUUM — safe while the streams run.

Usage: python -m lakehouse.ops.upkeep [--skip-retention] [--skip-optimize] [--skip-vacuum] [--config PATH]

- Retention deletes Bronze days (``jour``) older than ``[analytics] bronze_retention_days``: a
  partition-aligned delete, which Delta commits from metadata alone. Silver keeps what it counted.
- OPTIMIZE bin-packs the small files of the tables that grow by appends (Bronze per ``jour``,
  quarantine, duplicates, metrics, Silver's pairs); Delta commits it as a rearrangement (no data change), which
  appends and the streams reading these tables do not conflict with. Silver's four tables are skipped:
  every Silver run rewrites them whole (a few files), and compacting them would conflict with that.
- VACUUM removes files no version within ``[analytics] vacuum_retention`` needs.
A step that still meets a concurrent commit it conflicts with (a late sale appended to a day being
deleted) is logged and left for the next run; the other steps go on.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from delta.exceptions import (ConcurrentAppendException, ConcurrentDeleteDeleteException,
                              ConcurrentDeleteReadException, ConcurrentTransactionException,
                              ConcurrentWriteException, DeltaConcurrentModificationException,
                              MetadataChangedException, ProtocolChangedException)
from pyspark.sql import SparkSession

from lakehouse.platform.cli import add_config_flag, add_verbose_flag, config_or_exit, setup_logging
from lakehouse.platform.config import Config
from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.paths import Paths
from lakehouse.silver.tables import SILVER_TABLES
from lakehouse.platform.spark import build_spark_or_log

log = logging.getLogger("lakehouse.ops.upkeep")

# Delta refuses VACUUM below a week of history unless told the reader-safety check is off.
DELTA_SAFE_VACUUM_HOURS = 168
EXIT_PARTLY_DONE = 4  # a step was left for the next run (see the warnings)
CONFLICTS = (DeltaConcurrentModificationException, ConcurrentWriteException, ConcurrentAppendException,
             ConcurrentDeleteReadException, ConcurrentDeleteDeleteException, ConcurrentTransactionException,
             MetadataChangedException, ProtocolChangedException)


def tables(paths: Paths) -> list[Path]:
    """Every Delta table of the pipeline that exists."""
    candidates = [paths.bronze, paths.quarantine, paths.duplicates, paths.bronze_metrics, paths.silver_pairs,
                  *[paths.silver(t) for t in SILVER_TABLES]]
    return [p for p in candidates if delta_table_exists(p)]


def delete_old_bronze_days(spark: SparkSession, paths: Paths, keep_days: int, today: date) -> int:
    """Delete Bronze days older than ``keep_days`` before ``today``; returns the rows deleted."""
    cutoff = today - timedelta(days=keep_days)
    metrics = spark.sql(f"DELETE FROM delta.`{paths.bronze}` WHERE jour < DATE'{cutoff.isoformat()}'")
    deleted = metrics.first()["num_affected_rows"] if "num_affected_rows" in metrics.columns else 0
    log.info("Retention: %d Bronze rows older than %s deleted (keeping %d days)", deleted, cutoff, keep_days)
    return deleted


def optimize(spark: SparkSession, path: Path) -> tuple[int, int]:
    """Compact a table's small files; returns (files removed, files added)."""
    row = spark.sql(f"OPTIMIZE delta.`{path}`").first()
    metrics = row["metrics"]
    log.info("OPTIMIZE %s: %d files compacted into %d", path, metrics.numFilesRemoved, metrics.numFilesAdded)
    return metrics.numFilesRemoved, metrics.numFilesAdded


def vacuum(spark: SparkSession, path: Path, retain_hours: float) -> None:
    """Remove files older than the retention that no kept version needs."""
    spark.sql(f"VACUUM delta.`{path}` RETAIN {retain_hours:g} HOURS")
    log.info("VACUUM %s (history kept: %g hours)", path, retain_hours)


def compacted_tables(paths: Paths) -> list[Path]:
    """The existing tables that grow by appends (Silver's four are rewritten whole by each run)."""
    rewritten = {paths.silver(t) for t in SILVER_TABLES}
    return [p for p in tables(paths) if p not in rewritten]


def _step(name: str, path: Path, action) -> bool:
    """Run one step; a commit conflict with a concurrent writer is logged, not raised."""
    try:
        action()
        return True
    except CONFLICTS as e:
        log.warning("%s %s met a concurrent commit and was left for the next upkeep run: %s", name, path,
                    str(e).splitlines()[0])
        return False


def run_upkeep(spark: SparkSession, cfg: Config, paths: Paths, today: date, retention: bool = True,
               compaction: bool = True, vacuuming: bool = True) -> bool:
    """Retention, then OPTIMIZE, then VACUUM, over every table that exists; False if a step was left
    for the next run because of a concurrent commit."""
    done = True
    if retention and paths.bronze in tables(paths):
        done &= _step("Retention of", paths.bronze, lambda: delete_old_bronze_days(
            spark, paths, cfg.analytics.bronze_retention_days, today))
    if compaction:
        for path in compacted_tables(paths):
            done &= _step("OPTIMIZE", path, lambda p=path: optimize(spark, p))
    if vacuuming:
        # VACUUM lists files with one Spark task per slot of this parallelism, 200 by default (and
        # Spark's own listing 10,000): measured at 30-60 s per small table on 2 cores, 2-3 s with this.
        listing = str(max(2, cfg.spark.shuffle_partitions))
        spark.conf.set("spark.databricks.delta.vacuum.fileListing.parallelism", listing)
        spark.conf.set("spark.sql.sources.parallelPartitionDiscovery.parallelism", listing)
        retain_hours = cfg.analytics.vacuum_retention.seconds / 3600
        if retain_hours < DELTA_SAFE_VACUUM_HOURS:
            log.warning("[analytics] vacuum_retention is below 7 days: a reader or stream slower than that "
                        "may miss files; Delta's safety check is turned off for this run")
            spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        for path in tables(paths):
            done &= _step("VACUUM", path, lambda p=path: vacuum(spark, p, retain_hours))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bronze retention, OPTIMIZE and VACUUM of every table.")
    parser.add_argument("--skip-retention", action="store_true", help="do not delete old Bronze days")
    parser.add_argument("--skip-optimize", action="store_true", help="do not compact small files")
    parser.add_argument("--skip-vacuum", action="store_true", help="do not remove unreferenced files")
    add_config_flag(parser)
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    cfg = config_or_exit(args)
    setup_logging(cfg.monitoring.log_level)
    paths = Paths.from_config(cfg)
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
