"""Benchmark: produce-to-commit latency of the Bronze stream, against Spark's own floor in the same run.

Two phases on the same input (the producer at --rate events/s for --seconds, same seed, after a warm-up
of --warmup-seconds that is left out of the figures: the JVM compiles its hot paths in the first batches):

1. the floor: a bare Kafka → Delta query, same source options, trigger and Spark settings, whose
   foreachBatch does one append of the Kafka records as they come (no contract, no duplicate check);
2. the Bronze stream itself (spark_streaming_delta.py).

Each runs in its own process, one after the other. For every event, the latency is the time from its
Kafka timestamp (set by the producer at send) to the commit time of the Delta version that made it
visible; p50/p95/p99 of both and the ratio are printed, then the Bronze batches' own figures (metrics
table). --trigger overrides [streaming] trigger_interval for both.

Usage: python -m bench.bronze_latency [--rate 1000] [--seconds 60] [--warmup-seconds 20] [--trigger "0 s"]
       [--json FILE]
Needs a running broker (python -m lakehouse.local.kafka_broker start). Work data goes to a temporary folder.
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

from pyspark.sql import functions as F

from bench.bench_config import write_bench_config
from bench.bench_json import add_json_flag, write_json
from lakehouse.bronze.stream import read_kafka_stream
from lakehouse.platform.config import load_config
from lakehouse.platform.kafka_security import KafkaSecurity
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import build_spark
from lakehouse.platform.topics import ensure_topic

PROJECT_DIR = Path(__file__).resolve().parent.parent


def floor_stream(config: Path) -> int:
    """The bare query: Kafka → one Delta append per batch, until SIGTERM."""
    cfg = load_config(config)
    paths = Paths.from_config(cfg)
    spark = build_spark(cfg, "bench_latency_floor")

    def append(df, _batch_id):
        df.write.format("delta").mode("append").save(str(paths.bronze))

    query = (read_kafka_stream(spark, cfg).writeStream.foreachBatch(append)
             .option("checkpointLocation", str(paths.bronze_checkpoint))
             .trigger(processingTime=cfg.streaming.trigger_interval.spark()).start())
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while query.isActive and not stop:
        time.sleep(0.2)
    while query.status.get("isTriggerActive"):
        time.sleep(0.05)
    query.stop()
    spark.stop()
    return 0


def run_phase(name: str, job: list[str], args: argparse.Namespace, work: Path, trigger: str | None) -> Path:
    """Run one streaming job on a fresh topic with the warm-up and the measured producer run; returns the
    phase's config file."""
    topic = f"bench_latency_{name}_{uuid.uuid4().hex[:8]}"
    config = write_bench_config(work / f"{name}.ini", topic, work / name,
                                {"trigger_interval": trigger} if trigger else None)
    cfg = load_config(config)
    ensure_topic(cfg.kafka.bootstrap_servers, topic, cfg.kafka.partitions,
                 security=KafkaSecurity.from_config(cfg))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    stream = subprocess.Popen([*job, "--config", str(config)], cwd=PROJECT_DIR, stdout=subprocess.DEVNULL,
                              stderr=open(work / f"{name}.log", "w"), env=env)
    try:
        paths = Paths.from_config(cfg)
        deadline = time.monotonic() + 180
        while not (paths.bronze_checkpoint / "metadata").exists() and time.monotonic() < deadline:
            if stream.poll() is not None:
                raise RuntimeError(f"the {name} stream stopped: see {work / f'{name}.log'}")
            time.sleep(0.5)
        time.sleep(5)  # let the query settle into its trigger loop
        producer = [sys.executable, "producer_ventes.py", "--rate", str(args.rate), "--config", str(config)]
        if args.warmup_seconds:
            subprocess.run([*producer, "--duration", f"{args.warmup_seconds} s", "--seed", "2"],
                           cwd=PROJECT_DIR, check=True, capture_output=True)
            time.sleep(5)
        (work / f"{name}.from").write_text(str(int(time.time() * 1000)))
        subprocess.run([*producer, "--duration", f"{args.seconds} s", "--seed", "1"], cwd=PROJECT_DIR,
                       check=True, capture_output=True)
        time.sleep(10)  # the last batches commit
    finally:
        stream.send_signal(signal.SIGTERM)
        stream.wait(timeout=120)
    return config


def latencies(spark, table: Path, sent_column: str, measured_from_ms: int) -> tuple[int, list[float]]:
    """Events since ``measured_from_ms`` and their p50/p95/p99 produce-to-commit latency (ms)."""
    # The commit files by name: a glob made Spark print a warning with a Java stack trace.
    commit_files = [str(p) for p in sorted((table / "_delta_log").glob("*.json"))]
    log = spark.read.json(commit_files).withColumn("log", F.input_file_name())
    commits = log.filter("commitInfo IS NOT NULL").select("log", F.col("commitInfo.timestamp").alias("commit_ms"))
    adds = log.filter("add IS NOT NULL").select("log", F.col("add.path").alias("path"))
    files = adds.join(commits, "log").select(F.regexp_replace("path", "%3D", "=").alias("path"), "commit_ms")
    rows = spark.read.format("delta").load(str(table)).select(
        F.unix_millis(sent_column).alias("sent_ms"), F.col("_metadata.file_path").alias("file_path")) \
        .filter(F.col("sent_ms") >= measured_from_ms)
    latency = rows.join(files, F.col("file_path").endswith(F.col("path"))) \
        .select((F.col("commit_ms") - F.col("sent_ms")).alias("ms"))
    return latency.count(), latency.approxQuantile("ms", [0.5, 0.95, 0.99], 0.001)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Produce-to-commit latency percentiles of Bronze.")
    parser.add_argument("--rate", type=float, default=1000.0, help="producer events per second (default 1000)")
    parser.add_argument("--seconds", type=int, default=60, help="how long the producer runs (default 60)")
    parser.add_argument("--warmup-seconds", type=int, default=20,
                        help="producer run before the measured one, left out of the figures (default 20)")
    parser.add_argument("--trigger", default=None,
                        help="trigger interval of both queries (default: [streaming] trigger_interval)")
    parser.add_argument("--no-floor", action="store_true", help="measure the Bronze stream only")
    parser.add_argument("--floor-stream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=None, help=argparse.SUPPRESS)
    add_json_flag(parser)
    args = parser.parse_args(argv)
    if args.floor_stream:
        return floor_stream(args.config)
    work = Path(tempfile.mkdtemp(prefix="bench_latency_"))
    phases = {}
    if not args.no_floor:
        floor_job = [sys.executable, "-m", "bench.bronze_latency", "--floor-stream"]
        phases["floor"] = run_phase("floor", floor_job, args, work, args.trigger)
    phases["bronze"] = run_phase("bronze", [sys.executable, "spark_streaming_delta.py"], args, work, args.trigger)

    spark = build_spark(load_config(phases["bronze"]), "bench_latency")
    trigger = load_config(phases["bronze"]).streaming.trigger_interval
    print(f"{args.rate:g} events/s for {args.seconds} s, trigger {trigger}, produce-to-commit latency:")
    figures, report = {}, {"rate": args.rate, "seconds": args.seconds, "trigger": str(trigger)}
    for name, sent_column in (("floor", "timestamp"), ("bronze", "kafka_timestamp")):
        if name not in phases:
            continue
        paths = Paths.from_config(load_config(phases[name]))
        n, (p50, p95, p99) = latencies(spark, paths.bronze, sent_column, int((work / f"{name}.from").read_text()))
        figures[name] = p50
        report[name] = {"events": n, "p50_s": p50 / 1000, "p95_s": p95 / 1000, "p99_s": p99 / 1000}
        label = "bare Kafka → Delta floor" if name == "floor" else "Bronze stream"
        print(f"  {label:<25} {n:>7,} events: p50 {p50 / 1000:.3f} s, p95 {p95 / 1000:.3f} s, "
              f"p99 {p99 / 1000:.3f} s")
    if "floor" in figures:
        report["ratio_p50"] = figures["bronze"] / figures["floor"]
        print(f"  ratio Bronze p50 / floor p50: {figures['bronze'] / figures['floor']:.2f} (goal ≤ 1.2; "
              f"p50 < 0.6 s and p99 < 1 s at 1,000 events/s)")
    paths = Paths.from_config(load_config(phases["bronze"]))
    batches = spark.read.format("delta").load(str(paths.bronze_metrics)).filter(
        F.unix_millis("committed_at") >= int((work / "bronze.from").read_text()))
    nb, rows_p50, duration_p50, duration_max = batches.agg(
        F.count(F.lit(1)), F.median("input_rows"), F.median("duration_ms"), F.max("duration_ms")).first()
    print(f"  Bronze: {nb} batches, median {rows_p50:,.0f} records, duration median {duration_p50 / 1000:.3f} s, "
          f"max {duration_max / 1000:.3f} s")
    report["bronze_batches"] = {"batches": nb, "records_median": rows_p50, "duration_median_s": duration_p50 / 1000,
                                "duration_max_s": duration_max / 1000}
    write_json(args.json, "bronze_latency", args, report)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
