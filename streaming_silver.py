"""Build the Silver tables (clients, pays, segments, ventes_jour) from what Bronze committed since the last run.

Usage: streaming_silver.py [--interval SECONDS] [--full-refresh] [--no-dashboard] [--config PATH]
Example:
    python streaming_silver.py                 # one incremental run, then the dashboard
    python streaming_silver.py --interval 60   # every minute until Ctrl-C
    python streaming_silver.py --interval      # every [analytics] silver_interval until Ctrl-C
    spark-submit --packages org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0,io.delta:delta-spark_4.2_2.13:4.4.0 \
        --conf spark.jars.ivy=$PWD/.cache/ivy streaming_silver.py
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime

from py4j.protocol import Py4JError
from pyspark.errors import PySparkException

from lakehouse.platform.cli import (add_config_flag, add_verbose_flag, config_or_exit, setup_logging,
                                     stop_on_signals)
from lakehouse.platform.config import Config
from lakehouse.platform.delta import delta_table_exists
from lakehouse.serve.dashboard import dashboard_text
from lakehouse.ops.upkeep import OwnUpkeep, silver_tables
from lakehouse.platform.job_lock import lock_or_exit
from lakehouse.platform.lake import on_object_storage
from lakehouse.platform.paths import Paths
from lakehouse.silver.job import SilverInputError, run_silver
from lakehouse.silver.transforms import ClientRules
from lakehouse.platform.spark import build_spark_or_log
from lakehouse.platform.status import write_atomic

log = logging.getLogger("streaming_silver")
FROM_CONFIG = object()  # --interval given without a value: [analytics] silver_interval
# While the Bronze table does not exist yet, a repeating run looks again this often (its first sales are
# near: make demo starts both jobs together).
BRONZE_WAIT_S = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Merge new Bronze sales into the Silver tables.")
    # --interval alone repeats at [analytics] silver_interval (known once the config is loaded).
    parser.add_argument("--interval", type=float, nargs="?", const=FROM_CONFIG, default=None,
                        metavar="SECONDS",
                        help="run every SECONDS seconds until Ctrl-C/SIGTERM; without SECONDS, every "
                             "[analytics] silver_interval (default: run once)")
    parser.add_argument("--full-refresh", action="store_true",
                        help="delete the Silver tables and their checkpoint, rebuild from all of Bronze")
    parser.add_argument("--no-dashboard", action="store_true",
                        help="do not print the dashboard after a run (it is still written to "
                             "data/status/silver_dashboard.txt)")
    add_config_flag(parser)
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    if args.interval not in (None, FROM_CONFIG) and args.interval <= 0:
        parser.error(f"--interval must be a positive number of seconds, got {args.interval:g}")
    return args


def interval_seconds(flag: float | object | None, cfg: Config) -> float | None:
    """Seconds between two runs: the flag's value, [analytics] silver_interval for a bare --interval,
    None (run once) without the flag."""
    return cfg.analytics.silver_interval.seconds if flag is FROM_CONFIG else flag


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = config_or_exit(args)
    setup_logging(cfg.monitoring.log_level)
    paths = Paths.from_config(cfg)
    with lock_or_exit("The Silver job", paths, paths.silver_checkpoint, log):  # before Spark starts
        return run(args, cfg, paths)


def run(args: argparse.Namespace, cfg: Config, paths: Paths) -> int:
    """Run Silver once or every interval (the lock is held); the exit code."""
    args.interval = interval_seconds(args.interval, cfg)
    rules = ClientRules.from_config(cfg)
    spark = build_spark_or_log(cfg, "silver_ventes", log, args.verbose)
    if spark is None:
        return 1
    stop = stop_on_signals(log, "stopping after the current run")
    full_refresh = args.full_refresh
    # On object storage this job is the one process writing Silver's tables: it keeps them between runs.
    upkeep = (OwnUpkeep(spark, cfg, paths, silver_tables(paths), cfg.analytics.upkeep_interval.seconds)
              if on_object_storage(cfg) and args.interval is not None else None)
    while True:
        started, pause = time.monotonic(), args.interval
        try:
            rows = run_silver(spark, rules, paths, full_refresh=full_refresh)
        except SilverInputError as e:
            if args.interval is None:
                log.error("%s", e)
                return 1
            if delta_table_exists(paths.bronze):
                log.error("%s", e)
            else:
                pause = min(args.interval, BRONZE_WAIT_S)
                log.info("Waiting for the Bronze table %s (created with the first sales); looking again in "
                         "%g s", paths.bronze, pause)
        except (PySparkException, Py4JError) as e:  # the disk, the JVM...: said plainly, retried next time
            log.error("Silver run failed (the next run starts over from the last committed batch): %s",
                      str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__)
            if args.interval is None:
                return 1
        else:
            full_refresh = False
            log.info("Silver run: %d new Bronze rows merged in %.1f s", rows, time.monotonic() - started)
            text = dashboard_text(spark, paths, datetime.now())
            write_atomic(paths.silver_dashboard, text + "\n")  # what `make demo` shows live
            if not args.no_dashboard:
                print(text, flush=True)
            if upkeep is not None:
                try:
                    upkeep.run_if_due()
                except (PySparkException, Py4JError) as e:  # said, and tried again an interval later
                    log.error("Upkeep of Silver's tables failed (tried again in %g s): %s", upkeep.interval_s,
                              str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__)
        if args.interval is None or stop.wait(pause):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
