"""Table upkeep: Bronze retention, compaction of small files, VACUUM — safe while the streams run.

Usage: python -m lakehouse.upkeep [--skip-retention] [--skip-optimize] [--skip-vacuum] [--config PATH]

- Retention deletes Bronze days (``jour``) older than ``[analytics] bronze_retention_days``: a
  partition-aligned delete, which Delta commits from metadata alone. Silver keeps what it counted.
- OPTIMIZE bin-packs each table's small files (per ``jour`` partition for Bronze); Delta commits it
  as a rearrangement (no data change), which the running streams and readers are not affected by.
- VACUUM removes files no version within ``[analytics] vacuum_retention`` needs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pyspark.sql import SparkSession

from lakehouse.cli import add_config_flag, config_or_exit, setup_logging
from lakehouse.config import Config
from lakehouse.paths import Paths, delta_table_exists
from lakehouse.silver import SILVER_TABLES
from lakehouse.spark import build_spark_or_log

log = logging.getLogger("lakehouse.upkeep")

# Delta refuses VACUUM below a week of history unless told the reader-safety check is off.
DELTA_SAFE_VACUUM_HOURS = 168


def tables(paths: Paths) -> list[Path]:
    """Every Delta table of the pipeline that exists."""
    candidates = [paths.bronze, paths.quarantine, paths.bronze_metrics, paths.silver_pairs,
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


def run_upkeep(spark: SparkSession, cfg: Config, paths: Paths, today: date, retention: bool = True,
               compaction: bool = True, vacuuming: bool = True) -> None:
    """Retention, then OPTIMIZE, then VACUUM, over every table that exists."""
    if retention and paths.bronze in tables(paths):
        delete_old_bronze_days(spark, paths, cfg.analytics.bronze_retention_days, today)
    if compaction:
        for path in tables(paths):
            optimize(spark, path)
    if vacuuming:
        retain_hours = cfg.analytics.vacuum_retention.seconds / 3600
        if retain_hours < DELTA_SAFE_VACUUM_HOURS:
            log.warning("[analytics] vacuum_retention is below 7 days: a reader or stream slower than that "
                        "may miss files; Delta's safety check is turned off for this run")
            spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        for path in tables(paths):
            vacuum(spark, path, retain_hours)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bronze retention, OPTIMIZE and VACUUM of every table.")
    parser.add_argument("--skip-retention", action="store_true", help="do not delete old Bronze days")
    parser.add_argument("--skip-optimize", action="store_true", help="do not compact small files")
    parser.add_argument("--skip-vacuum", action="store_true", help="do not remove unreferenced files")
    add_config_flag(parser)
    args = parser.parse_args(argv)
    cfg = config_or_exit(args)
    setup_logging(cfg.monitoring.log_level)
    paths = Paths.from_config(cfg)
    if not tables(paths):
        log.error("No Delta table under %s yet: run spark_streaming_delta.py first", paths.delta_dir)
        return 1
    spark = build_spark_or_log(cfg, "upkeep", log)
    if spark is None:
        return 1
    # Days are event days in the session time zone, as Bronze's jour column.
    today = datetime.now(ZoneInfo(cfg.spark.timezone)).date()
    run_upkeep(spark, cfg, paths, today, retention=not args.skip_retention,
               compaction=not args.skip_optimize, vacuuming=not args.skip_vacuum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
