"""Explore the lakehouse: an interactive menu over the Bronze and Silver tables, or a report in one go.

Revenue is net of refunds and cancellations; the menu and the report show the returns beside it, the
corrections waiting for their sale for longer than [analytics] orphan_timeout (orphans) and the events
Silver refused, and the menu one sale with its corrections.

Usage: query_utils.py [--batch] [--out DIR] [--top N] [--config PATH]
Example:
    python query_utils.py                        # the menu (numbered choices, q or Ctrl-D to leave)
    python query_utils.py --batch                # the report on stdout
    python query_utils.py --batch --out report/  # also report/report.md with PNG charts
    spark-submit --packages org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0,io.delta:delta-spark_4.2_2.13:4.4.0 \
        --conf spark.jars.ivy=.cache/ivy query_utils.py --batch
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path

from lakehouse.platform.cli import add_config_flag, add_verbose_flag, config_or_exit, setup_logging
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import build_spark_or_log
from lakehouse.serve.queries import REQUIRED_TABLES, Lakehouse, MissingTableError, missing_tables

log = logging.getLogger("query_utils")

EXIT_MISSING_TABLES = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Query the sales lakehouse: interactive menu or batch report.")
    parser.add_argument("--batch", action="store_true",
                        help="print the whole report on stdout without asking anything, then exit")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="with --batch: also write report.md and PNG charts into DIR (created if needed)")
    parser.add_argument("--top", type=int, default=10, metavar="N",
                        help="with --batch: clients in the top clients table (default 10)")
    add_config_flag(parser)
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    if args.out is not None and not args.batch:
        parser.error("--out goes with --batch")
    if args.top < 1:
        parser.error(f"--top must be at least 1, got {args.top}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = config_or_exit(args)
    # Spark's and Delta's INFO lines would bury the menu and the report.
    setup_logging("WARNING" if cfg.monitoring.log_level in ("DEBUG", "INFO") else cfg.monitoring.log_level)
    paths = Paths.from_config(cfg)

    # Checked before Spark starts: the file system knows in a few ms.
    missing = missing_tables(paths)
    if missing and (args.batch or len(missing) == len(REQUIRED_TABLES)):
        for error in missing:
            print(error, file=sys.stderr)
        return EXIT_MISSING_TABLES

    spark = build_spark_or_log(cfg, "query_utils", log, args.verbose)
    if spark is None:
        return 1
    spark.sparkContext.setLogLevel("ERROR")
    lake = Lakehouse(spark, paths)
    if args.batch:
        from lakehouse.serve.report import build_report, write_report_files
        try:
            report = build_report(lake, datetime.now(), args.top, cfg.analytics.orphan_timeout.seconds)
        except MissingTableError as e:  # deleted between the check and the read
            print(e, file=sys.stderr)
            return EXIT_MISSING_TABLES
        sys.stdout.write(report.text())
        if args.out is not None:
            markdown = write_report_files(report, args.out)
            print(f"\nReport written to {markdown} (charts beside it).")
        return 0

    from lakehouse.serve.menu import Console, Menu
    if missing:
        print("Not there yet (the choices that need them will say so):\n  "
              + "\n  ".join(str(e) for e in missing))
    try:
        Menu(lake, Console(sys.stdin, sys.stdout), cfg.query.sql_max_rows, cfg.query.sql_timeout.seconds,
             cfg.analytics.orphan_timeout.seconds).run()
    except KeyboardInterrupt:
        print()
    print("Bye.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
