"""Benchmark: drain a pre-filled topic into Bronze (--available-now path) and compare with Spark's own
ceiling: the same JSON records read from a local file, parsed the same way, written as Parquet, just before
and just after the drain (the ratio is against their mean: a small machine's speed drifts). Both paths are
warmed up first on 20,000 events, in the same session, so that neither pays the JVM's compilation of the
contract check in its figures.

Usage: python -m bench.bronze_drain [--count 1000000] [--json FILE]
Needs a running broker (python -m lakehouse.local.kafka_broker start). Work data goes to a temporary folder,
or, when [paths] lake is an s3a:// URI (e.g. LAKEHOUSE_PATHS_LAKE), under it: the drain's tables and the
ceiling's Parquet both go to the object store then, so that the ratio compares like with like.
A SASL_SSL broker works the same: the [kafka] security settings carry over; the password comes from
LAKEHOUSE_KAFKA_PASSWORD, as for every script.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pyspark.sql import functions as F

from bench.bench_json import add_json_flag, write_json
from lakehouse.bronze.contract_check import with_contract_check
from lakehouse.bronze.monitoring import remove_progress_loggers
from lakehouse.bronze.stream import start_bronze_stream
from lakehouse.ingest.contract import ContractLimits
from lakehouse.ingest.simulator import SalesSimulator
from lakehouse.platform.config import load_config
from lakehouse.platform.kafka_security import security_settings
from lakehouse.platform.lake import on_object_storage
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import build_spark

PROJECT_DIR = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bronze drain rate versus Spark's JSON→Parquet ceiling.")
    parser.add_argument("--count", type=int, default=1_000_000, help="events to pre-fill (default 1000000)")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None,
                        help="batch bound for the drain (default: [streaming] max_offsets_per_trigger)")
    add_json_flag(parser)
    args = parser.parse_args(argv)
    topic = f"bench_drain_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench_drain_"))
    # The project's Kafka security settings carry over (the CA file stays where it is).
    project = load_config()
    overrides = {**security_settings(project), ("kafka", "topic"): topic,
                 ("paths", "data_dir"): str(work / "data"),
                 ("streaming", "max_offsets_per_trigger"): args.max_offsets_per_trigger}
    remote = (project.paths.lake or "").rstrip("/") if on_object_storage(project) else None
    if remote:
        overrides[("paths", "lake")] = f"{remote}/{topic}/run"
    cfg = load_config(overrides=overrides)

    def target(name: str) -> str:
        """Where a ceiling run writes: beside the drain's tables."""
        return f"{remote}/{topic}/{name}" if remote else str(work / name)

    print(f"Pre-filling {topic} with {args.count:,} valid events ...", flush=True)
    summary = work / "summary.json"
    subprocess.run([sys.executable, "producer_ventes.py", "--max", "--count", str(args.count), "--seed", "1",
                    "--topic", topic, "--summary-json", str(summary)], cwd=PROJECT_DIR, check=True,
                   capture_output=True)
    print(f"  producer: {json.loads(summary.read_text())['events_per_s']:,.0f} events/s")

    # The same events, as a JSON-lines file, for the ceiling.
    sim, lines = SalesSimulator(1, cfg.producer.clients), work / "events.jsonl"
    records = sim.records()
    with open(lines, "wb") as f:
        for _ in range(args.count):
            f.write(next(records).value + b"\n")

    spark = build_spark(cfg, "bench_drain")
    paths = Paths.from_config(cfg)

    def ceiling(source: Path, target: str) -> float:
        started = time.monotonic()
        # One file would be one partition (one core); spread it like the topic's partitions are.
        raw = spark.read.format("text").load(str(source)).repartition(cfg.kafka.partitions)
        kafka_like = raw.select(F.lit(None).cast("binary").alias("key"), F.col("value").cast("binary").alias("value"),
                                F.lit(topic).alias("topic"), F.lit(0).alias("partition"),
                                F.monotonically_increasing_id().alias("offset"),
                                F.current_timestamp().alias("timestamp"))
        # Parsed once and cached, as the Bronze batch does: filtering on the check's result without the
        # cache makes Spark re-evaluate the JSON parse inside the pushed-down filter, several times slower.
        checked = kafka_like.transform(lambda df: with_contract_check(df, ContractLimits.from_config(cfg))).persist()
        (checked.filter(F.size("reasons") == 0).drop("raw_value", "reasons")
         .write.mode("overwrite").partitionBy("jour").parquet(target))
        checked.unpersist()
        return time.monotonic() - started

    # Both paths warmed up first on a small sample (the JVM compiles the contract check's code in its
    # first batches), so that neither pays it in the figures.
    print("Warming up both paths on 20,000 events ...", flush=True)
    sample = work / "sample.jsonl"
    with open(lines, "rb") as f, open(sample, "wb") as out:
        for _ in range(20_000):
            out.write(f.readline())
    ceiling(sample, target("warm"))
    warm_topic = f"{topic}_warmup"
    subprocess.run([sys.executable, "producer_ventes.py", "--max", "--count", "20000", "--seed", "2",
                    "--topic", warm_topic], cwd=PROJECT_DIR, check=True, capture_output=True)
    warm_cfg = load_config(overrides={**overrides, ("paths", "data_dir"): str(work / "warm_data"),
                                      ("paths", "lake"): target("warm_lake") if remote else None,
                                      ("kafka", "topic"): warm_topic,
                                      ("streaming", "max_offsets_per_trigger"): 10_000})
    start_bronze_stream(spark, warm_cfg, Paths.from_config(warm_cfg), available_now=True).awaitTermination()
    remove_progress_loggers(spark)

    # The ceiling runs just before and just after the drain: a small machine's speed drifts within minutes,
    # and the ratio is taken against the mean of the two.
    before_s = ceiling(lines, target("ceiling_before"))
    started = time.monotonic()
    start_bronze_stream(spark, cfg, paths, available_now=True).awaitTermination()
    drain_s = time.monotonic() - started
    landed = spark.read.format("delta").load(str(paths.bronze)).count()
    after_s = ceiling(lines, target("ceiling_after"))
    ceiling_s = (before_s + after_s) / 2

    drain_rate, ceiling_rate = args.count / drain_s, args.count / ceiling_s
    print(f"Bronze drain: {landed:,} rows in {drain_s:.1f} s = {drain_rate:,.0f} events/s "
          f"(batches of {cfg.streaming.max_offsets_per_trigger:,})")
    print(f"Ceiling (file JSON → same parsing → Parquet): {before_s:.1f} s before the drain, {after_s:.1f} s "
          f"after, mean {ceiling_s:.1f} s = {ceiling_rate:,.0f} events/s")
    print(f"Ratio: {drain_rate / ceiling_rate:.2f} (goal ≥ 0.8; against the ceiling before the drain "
          f"{before_s / drain_s:.2f}, after {after_s / drain_s:.2f}); lake: {paths.lake_dir}; "
          f"master: {spark.sparkContext.master}")
    write_json(args.json, "bronze_drain", args, {
        "events": args.count, "landed": landed, "batch_records": cfg.streaming.max_offsets_per_trigger,
        "drain_s": drain_s, "drain_events_per_s": drain_rate, "ceiling_before_s": before_s,
        "ceiling_after_s": after_s, "ceiling_s": ceiling_s, "ceiling_events_per_s": ceiling_rate,
        "ratio": drain_rate / ceiling_rate, "lake": str(paths.lake_dir), "master": spark.sparkContext.master})
    spark.stop()
    return 0 if landed == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
