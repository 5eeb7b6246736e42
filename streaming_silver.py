"""Build the Silver tables (clients, pays, segments, ventes_jour) from what Bronze committed.

Usage: streaming_silver.py [--continuous | --interval [SECONDS]] [--full-refresh] [--no-dashboard] [--config PATH]
Example:
    python streaming_silver.py                 # one incremental run, then the dashboard
    python streaming_silver.py --continuous    # one stream, a batch every [analytics] silver_trigger (make demo)
    python streaming_silver.py --interval 60   # a run every minute until Ctrl-C
    python streaming_silver.py --interval      # a run every [analytics] silver_interval until Ctrl-C
    spark-submit --packages org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0,io.delta:delta-spark_4.2_2.13:4.4.0 \
        --conf spark.jars.ivy=$PWD/.cache/ivy streaming_silver.py --continuous
"""

from __future__ import annotations

import argparse
import logging
import sys

from py4j.protocol import Py4JError
from pyspark.errors import PySparkException

from lakehouse.ops.metrics import SilverMetrics, jvm_heap_reader, serve_metrics
from lakehouse.ops.upkeep import OwnUpkeep, silver_tables
from lakehouse.platform.cli import add_config_flag, add_verbose_flag, config_or_exit, setup_logging, stop_on_signals
from lakehouse.platform.config import Config
from lakehouse.platform.job_lock import lock_or_exit
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import build_spark_or_log
from lakehouse.silver.freshness import SilverStatusWriter
from lakehouse.silver.job import SilverInputError
from lakehouse.silver.runner import Heartbeat, SilverJob, first_line
from lakehouse.silver.transforms import ClientRules

log = logging.getLogger("streaming_silver")
FROM_CONFIG = object()  # --interval given without a value: [analytics] silver_interval


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Merge new Bronze sales into the Silver tables.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--continuous", action="store_true",
                      help="run one stream until Ctrl-C/SIGTERM, a batch every [analytics] silver_trigger "
                           "while Bronze has new sales (Silver a few seconds behind Bronze)")
    # --interval alone repeats at [analytics] silver_interval (known once the config is loaded).
    mode.add_argument("--interval", type=float, nargs="?", const=FROM_CONFIG, default=None, metavar="SECONDS",
                      help="run every SECONDS seconds until Ctrl-C/SIGTERM; without SECONDS, every "
                           "[analytics] silver_interval (default: run once)")
    parser.add_argument("--full-refresh", action="store_true",
                        help="delete the Silver tables and their checkpoint, rebuild from all of Bronze")
    parser.add_argument("--no-dashboard", action="store_true",
                        help="do not print the dashboard (it is still written to data/status/silver_dashboard.txt)")
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
    """Run Silver once, every interval or continuously (the lock is held); the exit code."""
    args.interval = interval_seconds(args.interval, cfg)
    mode = "continuous" if args.continuous else "once" if args.interval is None else "interval"
    period = {"continuous": cfg.analytics.silver_trigger.seconds, "interval": args.interval}.get(mode)
    # Readers see the job alive from its start: Spark itself takes tens of seconds to start.
    status = SilverStatusWriter(paths.silver_status, mode, period)
    stop = stop_on_signals(log, "stopping after the current batch")
    heartbeat = Heartbeat(status, stop)
    heartbeat.start()
    try:
        spark = build_spark_or_log(cfg, "silver_ventes", log, args.verbose)
        if spark is None:
            return 1
        # Running long, this job keeps its own tables between batches (each batch adds a version); on object
        # storage it is also the one process that may write them.
        upkeep = (OwnUpkeep(spark, cfg, paths, silver_tables(paths), cfg.analytics.upkeep_interval.seconds)
                  if mode != "once" else None)
        metrics = None
        if mode != "once":  # a long-running job: Prometheus may scrape it
            metrics = SilverMetrics(jvm_heap_reader(spark), orphan_timeout_s=cfg.analytics.orphan_timeout.seconds)
            metrics.resume(status.newest_sale(), status.last_batch_at())
            serve_metrics(metrics, cfg.monitoring.metrics_address, cfg.monitoring.metrics_port_silver,
                          "Silver job", "metrics_port_silver")
        job = SilverJob(spark, ClientRules.from_config(cfg), paths, status, upkeep,
                        cfg.monitoring.dashboard_refresh.seconds,
                        None if args.no_dashboard else lambda text: print(text, flush=True), metrics,
                        cfg.analytics.orphan_timeout.seconds)
        if mode == "continuous":
            return job.run_continuous(period, args.full_refresh, stop)
        if mode == "interval":
            return job.run_every(period, args.full_refresh, stop)
        try:
            rows = job.run_once(args.full_refresh)
        except SilverInputError as e:
            log.error("%s", e)
            return 1
        except (PySparkException, Py4JError) as e:  # the disk, the JVM...: said plainly
            log.error("Silver run failed (the next run starts over from the last committed batch): %s",
                      first_line(e))
            return 1
        log.info("Silver run: %d new Bronze rows merged", rows)
        return 0
    finally:
        heartbeat.stop()
        status.stopped()


if __name__ == "__main__":
    sys.exit(main())
