"""Benchmark: time to the first batch after a restart of the Bronze stream, with a short and a long history.

For each history size (default 50,000 and 5,000,000 rows in Bronze):
1. 2,000 sales go through the stream (spark_streaming_delta.py --available-now): a Bronze table and a
   checkpoint as a running pipeline has them, with today's sales;
2. older days are added to Bronze up to the size (copies of those sales with new ids, spread over the 90
   days before; one append, as a long-running table would hold them);
3. 100 new sales are sent and the stream is started again; the time from the process start to its first
   committed batch (the checkpoint's commit log) is the restart time.

Both sizes are measured in one run, one after the other; the ratio long/short is printed (goal ≤ 1.5).

Usage: python -m bench.bronze_restart [--sizes 50000 5000000] [--json FILE]
Needs a running broker (python -m lakehouse.local.kafka_broker start). Work data goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pyspark.sql import functions as F

from bench.bench_config import write_bench_config
from bench.bench_json import add_json_flag, write_json
from lakehouse.platform.config import load_config
from lakehouse.platform.delta import checkpoint_entries
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import build_spark

PROJECT_DIR = Path(__file__).resolve().parent.parent

RECENT = 2_000


def committed_batches(paths: Paths) -> int:
    return checkpoint_entries(paths.bronze_checkpoint, "commits")


def add_history(spark, paths: Paths, total: int) -> int:
    """Append older days to Bronze until it holds ``total`` rows; returns the rows added."""
    bronze = spark.read.format("delta").load(str(paths.bronze))
    have = bronze.count()
    copies = max(0, -(-(total - have) // have))
    if copies == 0:
        return 0
    copy = spark.range(1, copies + 1).withColumnRenamed("id", "copy")
    shift = F.make_dt_interval(F.lit(1) + F.col("copy") % 90)  # 1 to 90 days back
    older = (bronze.crossJoin(copy)
             .withColumn("vente_id", F.concat_ws("-", "vente_id", F.lit("h"), F.col("copy").cast("string")))
             .withColumn("event_ts", F.col("event_ts") - shift)
             .withColumn("jour", F.to_date("event_ts"))
             .withColumn("bronze_query_id", F.lit("history"))
             .drop("copy").limit(total - have))
    older.write.format("delta").mode("append").partitionBy("jour").save(str(paths.bronze))
    return total - have


def time_to_first_batch(config: Path, paths: Paths, log: Path) -> float:
    before = committed_batches(paths)
    started = time.monotonic()
    stream = subprocess.Popen([sys.executable, "spark_streaming_delta.py", "--config", str(config)],
                              cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                              env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = started + 600
        while committed_batches(paths) == before and time.monotonic() < deadline and stream.poll() is None:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        if committed_batches(paths) == before:
            raise RuntimeError(f"no batch after the restart; see {log}")
        return elapsed
    finally:
        stream.send_signal(signal.SIGTERM)
        stream.wait(timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bronze restart time with a short and a long history.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 5_000_000],
                        help="rows in Bronze before each restart (default 50000 5000000)")
    add_json_flag(parser)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_restart_"))
    results = {}
    spark = None
    for size in args.sizes:
        topic = f"bench_restart_{uuid.uuid4().hex[:8]}"
        config = write_bench_config(work / f"{size}.ini", topic, work / str(size))
        cfg, paths = load_config(config), Paths.from_config(load_config(config))
        produce = [sys.executable, "producer_ventes.py", "--max", "--config", str(config)]
        subprocess.run([*produce, "--count", str(RECENT), "--seed", "1"], cwd=PROJECT_DIR, check=True,
                       capture_output=True)
        subprocess.run([sys.executable, "spark_streaming_delta.py", "--available-now", "--config", str(config)],
                       cwd=PROJECT_DIR, check=True, capture_output=True)
        if spark is None:
            spark = build_spark(cfg, "bench_restart")
        started = time.monotonic()
        added = add_history(spark, paths, size)
        rows = spark.read.format("delta").load(str(paths.bronze)).count()
        print(f"Bronze with {rows:,} rows ({added:,} of older days added in {time.monotonic() - started:.0f} s)",
              flush=True)
        subprocess.run([*produce, "--count", "100", "--seed", "2"], cwd=PROJECT_DIR, check=True,
                       capture_output=True)
        results[size] = time_to_first_batch(config, paths, work / f"{size}.log")
        print(f"  restart → first batch committed: {results[size]:.1f} s", flush=True)
    if spark is not None:
        spark.stop()
    figures: dict = {"restart_to_first_batch_s": {str(size): seconds for size, seconds in results.items()}}
    if len(results) >= 2:
        small, large = min(results), max(results)
        figures["ratio"] = results[large] / results[small]
        print(f"Ratio {large:,} rows / {small:,} rows: {results[large] / results[small]:.2f} (goal ≤ 1.5)")
    write_json(args.json, "bronze_restart", args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
