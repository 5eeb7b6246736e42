"""Benchmark: produce-to-commit latency of the Bronze stream.

Runs the producer at --rate events/s for --seconds with spark_streaming_delta.py running, then, for
every event, takes the time from its Kafka timestamp (set by the producer at send) to the commit time
of the Delta version that made it visible in Bronze, and prints p50/p95/p99. A warm-up of
--warmup-seconds at the same rate runs first (the JVM compiles its hot paths in the first batches) and
is left out of the figures; the batches' own figures come from the metrics table.

Usage: python bench/bronze_latency.py [--rate 1000] [--seconds 60] [--warmup-seconds 20]
Needs a running broker (python -m lakehouse.platform.kafka_local start). Work data goes to a temporary folder.
A SASL_SSL broker works the same: the [kafka] security settings carry over; the password comes from
LAKEHOUSE_KAFKA_PASSWORD, as for every script.
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

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from pyspark.sql import functions as F  # noqa: E402

from lakehouse.platform.config import load_config  # noqa: E402
from lakehouse.platform.kafka_security import KafkaSecurity, security_settings  # noqa: E402
from lakehouse.platform.paths import Paths  # noqa: E402
from lakehouse.platform.spark import build_spark  # noqa: E402
from lakehouse.platform.topics import ensure_topic  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Produce-to-commit latency percentiles of Bronze.")
    parser.add_argument("--rate", type=float, default=1000.0, help="producer events per second (default 1000)")
    parser.add_argument("--seconds", type=int, default=60, help="how long the producer runs (default 60)")
    parser.add_argument("--warmup-seconds", type=int, default=20,
                        help="producer run before the measured one, left out of the figures (default 20)")
    args = parser.parse_args(argv)
    topic = f"bench_latency_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench_latency_"))
    config = work / "config.ini"
    # The project's Kafka security settings carry over (the password through the environment).
    security = "".join(f"{key} = {value}\n" for (_, key), value in security_settings(load_config()).items())
    config.write_text(f"[kafka]\ntopic = {topic}\n{security}[paths]\ndata_dir = {work / 'data'}\n"
                      f"cache_dir = {PROJECT_DIR / '.cache'}\n", encoding="utf-8")
    cfg = load_config(config)
    ensure_topic(cfg.kafka.bootstrap_servers, topic, cfg.kafka.partitions,
                 security=KafkaSecurity.from_config(cfg))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    stream = subprocess.Popen([sys.executable, "spark_streaming_delta.py", "--config", str(config)],
                              cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=open(work / "stream.log", "w"),
                              env=env)
    try:
        paths = Paths.from_config(cfg)
        deadline = time.monotonic() + 180
        while not (paths.bronze_checkpoint / "metadata").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(5)  # let the query settle into its trigger loop
        producer = [sys.executable, "producer_ventes.py", "--rate", str(args.rate), "--config", str(config)]
        if args.warmup_seconds:
            subprocess.run([*producer, "--duration", f"{args.warmup_seconds} s", "--seed", "2"],
                           cwd=PROJECT_DIR, check=True, capture_output=True)
            time.sleep(5)
        measured_from_ms = int(time.time() * 1000)
        subprocess.run([*producer, "--duration", f"{args.seconds} s", "--seed", "1"], cwd=PROJECT_DIR,
                       check=True, capture_output=True)
        time.sleep(10)  # the last batches commit
    finally:
        stream.send_signal(signal.SIGTERM)
        stream.wait(timeout=120)

    spark = build_spark(cfg, "bench_latency")
    log = spark.read.json(str(paths.bronze / "_delta_log" / "*.json")).withColumn("log", F.input_file_name())
    commits = log.filter("commitInfo IS NOT NULL").select("log", F.col("commitInfo.timestamp").alias("commit_ms"))
    adds = log.filter("add IS NOT NULL").select("log", F.col("add.path").alias("path"))
    files = adds.join(commits, "log").select(F.regexp_replace("path", "%3D", "=").alias("path"), "commit_ms")
    rows = spark.read.format("delta").load(str(paths.bronze)).select(
        F.unix_millis("kafka_timestamp").alias("sent_ms"), F.col("_metadata.file_path").alias("file_path")) \
        .filter(F.col("sent_ms") >= measured_from_ms)
    latency = rows.join(files, F.col("file_path").endswith(F.col("path"))) \
        .select((F.col("commit_ms") - F.col("sent_ms")).alias("ms"))
    n = latency.count()
    p50, p95, p99 = latency.approxQuantile("ms", [0.5, 0.95, 0.99], 0.001)
    print(f"{n:,} events at {args.rate:g}/s for {args.seconds} s; produce-to-commit latency: "
          f"p50 {p50 / 1000:.2f} s, p95 {p95 / 1000:.2f} s, p99 {p99 / 1000:.2f} s "
          f"(goal p50 < 1 s, p99 < 2 s)")
    batches = spark.read.format("delta").load(str(paths.bronze_metrics)).filter(
        F.unix_millis("committed_at") >= measured_from_ms)
    nb, rows_p50, duration_p50, duration_max = batches.agg(
        F.count(F.lit(1)), F.median("input_rows"), F.median("duration_ms"), F.max("duration_ms")).first()
    print(f"{nb} batches: median {rows_p50:,.0f} records, duration median {duration_p50 / 1000:.2f} s, "
          f"max {duration_max / 1000:.2f} s")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
