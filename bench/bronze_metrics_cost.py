"""Benchmark: what exporting Prometheus metrics costs the Bronze stream.

One topic is pre-filled with --count events (with bad records and duplicates, so that every metric moves),
then drained into a fresh lake again and again in one Spark session, in batches of --batch records, with
the metrics off and on in turn (off-on, on-off, off-on, ...), after a warm-up drain. With the metrics on, the
stream's /metrics endpoint is served and scraped every second by a thread, as Prometheus would. A run's
figure is the sum of its batches' durations (the metrics table's duration_ms: the batch from its start to
its last commit); the ratio compares the medians of the two kinds of run. Goal: ≤ 1.02. Runs of one kind
differ by more than 2% on this machine, so the benchmark first times the exporting code alone (a batch's
figures into the metrics, and one scrape's text) on a batch of --batch records: that part has no noise to
hide in. --pairs 0 gives that part only.

Usage: python -m bench.bronze_metrics_cost [--count 100000] [--batch 2000] [--pairs 4] [--json FILE]
Needs a running broker (python -m lakehouse.local.kafka_broker start). Work data goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import timeit
import urllib.request
import uuid
from pathlib import Path

import pyarrow as pa
from prometheus_client import CollectorRegistry, generate_latest

from bench.bench_json import add_json_flag, write_json
from lakehouse.bronze.batch_figures import BatchFigures
from lakehouse.bronze.dedup import DedupState
from lakehouse.bronze.monitoring import remove_progress_loggers
from lakehouse.bronze.stream import start_bronze_stream
from lakehouse.bronze.writer import prometheus_figures
from lakehouse.ops.metrics import BronzeMetrics, jvm_heap_reader, serve_metrics
from lakehouse.platform.config import load_config
from lakehouse.platform.kafka_security import security_settings
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import build_spark

PROJECT_DIR = Path(__file__).resolve().parent.parent

PORT = 9491  # the endpoint of the runs with metrics


def exporting_cost(records: int) -> tuple[float, float]:
    """Milliseconds the exporting code takes for one batch of ``records`` (5% broken, 3 partitions) into
    the metrics, and for one scrape's text (medians of 200 timings each)."""
    reasons = pa.chunked_array([pa.array([["missing_field:pays"] if i % 20 == 0 else None for i in range(records)],
                                         pa.list_(pa.string()))])
    partitions = [i % 3 for i in range(records)]
    kafka_ms = [1_700_000_000_000 + i for i in range(records)]
    state = DedupState(60_000_000)
    state.max_event_us = 1_700_000_000_000_000
    metrics = BronzeMetrics()
    figures = BatchFigures(input_rows=records, bronze_rows=records, quarantined_rows=records // 20,
                           duplicate_rows=0, conflicting_rows=0, late_rows=0, started_ms=1_700_000_000_000)

    def batch() -> None:
        metrics.batch(prometheus_figures(figures, reasons, 0, partitions, kafka_ms, 1_700_000_002_000, state))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return (statistics.median(timeit.repeat(batch, number=1, repeat=200)) * 1000,
            statistics.median(timeit.repeat(lambda: generate_latest(registry), number=1, repeat=200)) * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bronze batch time with and without Prometheus metrics.")
    parser.add_argument("--count", type=int, default=100_000, help="events in the topic (default 100000)")
    parser.add_argument("--batch", type=int, default=2_000, help="records per batch (default 2000)")
    parser.add_argument("--pairs", type=int, default=4,
                        help="runs of each kind, alternating (default 4; 0: the exporting code's timing only)")
    add_json_flag(parser)
    args = parser.parse_args(argv)
    batch_ms, scrape_ms = exporting_cost(args.batch)
    print(f"The exporting code alone: {batch_ms:.2f} ms per batch of {args.batch:,} records, {scrape_ms:.2f} ms "
          "per scrape (without the JVM heap's py4j call)", flush=True)
    if args.pairs == 0:
        write_json(args.json, "bronze_metrics_cost", args, {"batch": args.batch, "exporting_ms_per_batch": batch_ms,
                                                            "exporting_ms_per_scrape": scrape_ms})
        return 0
    topic = f"bench_metrics_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench_metrics_"))
    base = {**security_settings(load_config()), ("kafka", "topic"): topic,
            ("streaming", "max_offsets_per_trigger"): args.batch}

    print(f"Pre-filling {topic} with {args.count:,} events (5% bad, 5% duplicates) ...", flush=True)
    subprocess.run([sys.executable, "producer_ventes.py", "--max", "--count", str(args.count), "--seed", "1",
                    "--bad-ratio", "0.05", "--duplicate-ratio", "0.05", "--topic", topic], cwd=PROJECT_DIR,
                   check=True, capture_output=True)
    spark = build_spark(load_config(overrides={**base, ("paths", "data_dir"): str(work / "warm")}),
                        "bench_metrics")

    def drain(name: str, with_metrics: bool) -> float:
        cfg = load_config(overrides={**base, ("paths", "data_dir"): str(work / name)})
        paths = Paths.from_config(cfg)
        metrics = server = None
        stop = threading.Event()
        if with_metrics:
            metrics = BronzeMetrics(jvm_heap_reader(spark))
            server = serve_metrics(metrics, "127.0.0.1", PORT, "bench", "metrics_port_bronze")
            assert server is not None, f"port {PORT} taken"

            def scrape() -> None:
                while not stop.wait(1.0):
                    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=10) as answer:
                        answer.read()

            scraper = threading.Thread(target=scrape, daemon=True)
            scraper.start()
        try:
            start_bronze_stream(spark, cfg, paths, available_now=True, metrics=metrics).awaitTermination()
        finally:
            stop.set()
            if server is not None:
                server.shutdown()
                server.server_close()
            remove_progress_loggers(spark)
        rows = spark.read.format("delta").load(str(paths.bronze_metrics)).collect()
        assert sum(r.input_rows for r in rows) == args.count, "the drain did not read every record"
        if metrics is not None:
            assert metrics.input_rows == args.count
        return sum(r.duration_ms for r in rows) / 1000

    print("Warm-up drain (the JVM compiles the batch's code) ...", flush=True)
    drain("warm", True)
    runs: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(args.pairs):  # off-on, on-off, off-on...: a machine that speeds up or slows down favours neither
        for kind in (("off", "on") if i % 2 == 0 else ("on", "off")):
            seconds = drain(f"{kind}{i}", kind == "on")
            runs[kind].append(seconds)
            print(f"  metrics {kind}: batches took {seconds:.2f} s in all", flush=True)
    off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
    figures = {"count": args.count, "batch": args.batch, "runs": runs, "median_off_s": off, "median_on_s": on,
               "ratio": on / off, "batches_per_run": -(-args.count // args.batch),
               "exporting_ms_per_batch": batch_ms, "exporting_ms_per_scrape": scrape_ms}
    print(f"Bronze batch time, {args.count:,} events in batches of {args.batch:,}: median {off:.2f} s without "
          f"metrics, {on:.2f} s with them (served and scraped every second): ratio {on / off:.3f} (goal ≤ 1.02)")
    write_json(args.json, "bronze_metrics_cost", args, figures)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
