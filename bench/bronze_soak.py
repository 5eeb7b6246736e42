"""Benchmark: an hour of the Bronze stream at 1,000 events/s with upkeep alongside — is it still as fast?

Runs spark_streaming_delta.py and the producer (--rate for --minutes), and `python -m lakehouse.ops.upkeep`
every --upkeep-every minutes while they run. At the end of every --window minutes it samples the stream's
driver: the JVM's heap (old generation used, after the collections the JVM chose to make, and the whole
heap used) through jstat, the resident memory of the JVM and of the Python driver, and the Bronze files
(Parquet files on disk, Delta log entries). Afterwards it prints, per window of sending time, the events,
the produce-to-commit latency p50/p99 (each event's Kafka timestamp to the commit of its batch, found
through the batch's commit tag, so OPTIMIZE rewriting files later does not change it), and the samples;
then the ratio last/first window p50 (goal ≤ 1.2) and the reconciliation: every record of the topic is in
exactly one of Bronze, quarantine and duplicates, and the metrics table counts each once.

Usage: python -m bench.bronze_soak [--minutes 60] [--rate 1000] [--window 5] [--upkeep-every 10] [--json FILE]
Needs a running broker (python -m lakehouse.local.kafka_broker start). Work data goes to a temporary folder
(about 2 GB for the hour). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from pyspark.sql import functions as F

from bench.bench_config import write_bench_config
from bench.bench_json import add_json_flag, write_json
from lakehouse.platform.config import load_config
from lakehouse.platform.kafka_security import KafkaSecurity, kafka_python_kwargs
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import build_spark
from lakehouse.platform.topics import ensure_topic

PROJECT_DIR = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def java_child(pid: int) -> int | None:
    """The JVM that PySpark started for the Python driver ``pid``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == pid and (proc / "exe").resolve().name == "java":
                return int(proc.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def heap_mb(java_pid: int) -> tuple[float, float] | None:
    """(old generation used, whole heap used) in MB, from jstat."""
    try:
        out = subprocess.run(["jstat", "-gc", str(java_pid)], capture_output=True, text=True, timeout=30).stdout
        names, values = out.split("\n")[:2]
        gc = dict(zip(names.split(), (float(v) for v in values.split())))
        used = sum(gc.get(k, 0.0) for k in ("S0U", "S1U", "EU", "OU"))
        return gc["OU"] / 1024, used / 1024
    except (OSError, ValueError, KeyError, subprocess.SubprocessError):
        return None


def files(table: Path) -> tuple[int, int]:
    parquet = sum(1 for _ in table.rglob("*.parquet") if "_delta_log" not in _.parts)
    log = sum(1 for _ in (table / "_delta_log").glob("*")) if (table / "_delta_log").is_dir() else 0
    return parquet, log


def topic_size(cfg) -> int:
    consumer = KafkaConsumer(bootstrap_servers=cfg.kafka.bootstrap_servers,
                             **kafka_python_kwargs(KafkaSecurity.from_config(cfg)))
    try:
        parts = [TopicPartition(cfg.kafka.topic, p) for p in consumer.partitions_for_topic(cfg.kafka.topic)]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One hour of Bronze at 1,000 events/s with upkeep alongside.")
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the producer runs (default 60)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second (default 1000)")
    parser.add_argument("--window", type=float, default=5.0, help="minutes per window (default 5)")
    parser.add_argument("--upkeep-every", type=float, default=10.0, help="minutes between upkeep runs (default 10)")
    add_json_flag(parser)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    topic = f"bench_soak_{uuid.uuid4().hex[:8]}"
    config = write_bench_config(work / "config.ini", topic, work / "data")
    cfg = load_config(config)
    paths = Paths.from_config(cfg)
    ensure_topic(cfg.kafka.bootstrap_servers, topic, cfg.kafka.partitions, security=KafkaSecurity.from_config(cfg))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    print(f"Work folder {work}", flush=True)

    stream = subprocess.Popen([sys.executable, "spark_streaming_delta.py", "--config", str(config)], cwd=PROJECT_DIR,
                              stdout=subprocess.DEVNULL, stderr=open(work / "stream.log", "w"), env=env)
    samples: list[dict] = []
    upkeeps: list[tuple[float, float, int]] = []
    try:
        deadline = time.monotonic() + 180
        while not (paths.bronze_checkpoint / "metadata").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(5)
        java = java_child(stream.pid)
        start_ms = int(time.time() * 1000)
        producer = subprocess.Popen(
            [sys.executable, "producer_ventes.py", "--rate", str(args.rate), "--duration", f"{args.minutes} min",
             "--seed", "1", "--config", str(config), "--summary-json", str(work / "producer.json")],
            cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=open(work / "producer.log", "w"), env=env)
        stop = threading.Event()

        def upkeep_loop() -> None:
            while not stop.wait(args.upkeep_every * 60):
                began = time.monotonic()
                done = subprocess.run([sys.executable, "-m", "lakehouse.ops.upkeep", "--config", str(config)],
                                      cwd=PROJECT_DIR, capture_output=True, text=True, env=env)
                upkeeps.append((time.time(), time.monotonic() - began, done.returncode))
                (work / f"upkeep_{len(upkeeps)}.log").write_text(done.stderr)

        upkeep = threading.Thread(target=upkeep_loop, daemon=True)
        upkeep.start()
        window_s = args.window * 60
        next_sample = time.monotonic() + window_s
        while producer.poll() is None:
            time.sleep(1)
            if time.monotonic() >= next_sample:
                next_sample += window_s
                heap = heap_mb(java) if java else None
                parquet, log_entries = files(paths.bronze)
                samples.append({"at_ms": int(time.time() * 1000), "old_mb": heap[0] if heap else None,
                                "heap_mb": heap[1] if heap else None, "jvm_rss_mb": rss_mb(java) if java else None,
                                "py_rss_mb": rss_mb(stream.pid), "parquet": parquet, "log": log_entries})
                print(f"  sample {len(samples)}: {json.dumps(samples[-1])}", flush=True)
        stop.set()
        upkeep.join(timeout=1800)
        time.sleep(20)  # the stream catches up with the last records
    finally:
        stream.send_signal(signal.SIGTERM)
        stream.wait(timeout=300)

    spark = build_spark(cfg, "bench_soak")
    log = spark.read.json(str(paths.bronze / "_delta_log" / "*.json")).filter("commitInfo IS NOT NULL")
    batches = (log.select(F.col("commitInfo.timestamp").alias("commit_ms"),
                          F.get_json_object("commitInfo.userMetadata", "$.batch_id").cast("long").alias("batch"),
                          F.get_json_object("commitInfo.userMetadata", "$.query_id").alias("query"))
               .filter("batch IS NOT NULL"))
    bronze = spark.read.format("delta").load(str(paths.bronze))
    window_ms = int(args.window * 60_000)
    events = (bronze.join(batches, (F.col("bronze_batch_id") == F.col("batch"))
                          & (F.col("bronze_query_id") == F.col("query")))
              .select(((F.unix_millis("kafka_timestamp") - start_ms) / window_ms).cast("int").alias("window"),
                      (F.col("commit_ms") - F.unix_millis("kafka_timestamp")).alias("ms")))
    windows = {r.window: r for r in events.groupBy("window").agg(
        F.count(F.lit(1)).alias("n"), F.percentile_approx("ms", 0.5, 10000).alias("p50"),
        F.percentile_approx("ms", 0.99, 10000).alias("p99")).collect()}
    full = [w for w in sorted(windows) if w < len(samples)]
    runs = ", ".join(f"{d:.0f} s" + ("" if rc == 0 else f" (exit {rc})") for _, d, rc in upkeeps)
    print(f"\n{args.rate:g} events/s for {args.minutes:g} min, upkeep every {args.upkeep_every:g} min "
          f"({len(upkeeps)} runs: {runs})")
    print(f"{'window':>6} {'events':>8} {'p50 s':>7} {'p99 s':>7} {'old gen MB':>10} {'heap MB':>8} "
          f"{'JVM RSS MB':>10} {'py RSS MB':>9} {'parquet':>8} {'log':>6}")
    for w in full:
        r, s = windows[w], samples[w]

        def fmt(v, spec):
            return format(v, spec) if v is not None else "?"
        print(f"{w + 1:>6} {r.n:>8,} {r.p50 / 1000:>7.3f} {r.p99 / 1000:>7.3f} {fmt(s['old_mb'], '>10.0f')} "
              f"{fmt(s['heap_mb'], '>8.0f')} {fmt(s['jvm_rss_mb'], '>10.0f')} {fmt(s['py_rss_mb'], '>9.0f')} "
              f"{s['parquet']:>8,} {s['log']:>6,}")
    figures: dict = {
        "rate": args.rate, "minutes": args.minutes,
        "upkeeps": [{"seconds": d, "exit_code": rc} for _, d, rc in upkeeps],
        "windows": [{"window": w + 1, "events": windows[w].n, "p50_s": windows[w].p50 / 1000,
                     "p99_s": windows[w].p99 / 1000, **{k: v for k, v in samples[w].items() if k != "at_ms"}}
                    for w in full]}
    if len(full) >= 2:
        first, last = windows[full[0]], windows[full[-1]]
        figures["last_over_first_p50"] = last.p50 / first.p50
        print(f"Last window p50 / first window p50: {last.p50 / first.p50:.2f} (goal ≤ 1.2)")

    load = lambda p: spark.read.format("delta").load(str(p))  # noqa: E731
    in_topic = topic_size(cfg)
    counts = {name: load(p).count() for name, p in (("bronze", paths.bronze), ("quarantine", paths.quarantine),
                                                      ("duplicates", paths.duplicates)) if p.exists()}
    metrics = load(paths.bronze_metrics)
    metric_input, metric_rows, metric_batches = metrics.agg(
        F.sum("input_rows"), F.count(F.lit(1)), F.countDistinct("query_id", "batch_id")).first()
    exact = sum(counts.values()) == in_topic == metric_input and metric_rows == metric_batches
    print(f"Reconciliation: topic {in_topic:,} = {' + '.join(f'{k} {v:,}' for k, v in counts.items())}"
          f" = {sum(counts.values()):,}; metrics input_rows {metric_input:,} in {metric_rows:,} rows "
          f"({metric_batches:,} batches): {'exact' if exact else 'NOT EXACT'}")
    figures["reconciliation"] = {"topic": in_topic, **counts, "metrics_input_rows": metric_input,
                                 "metrics_rows": metric_rows, "metrics_batches": metric_batches, "exact": exact}
    write_json(args.json, "bronze_soak", args, figures)
    spark.stop()
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
