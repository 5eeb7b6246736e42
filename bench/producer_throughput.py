"""Benchmark: producer_ventes.py --max against the local broker (acks=all, idempotent, generation
included). Prints sustained events/s and MB/s per run and the median.

Usage: python -m bench.producer_throughput [--count N] [--runs N] [--json FILE]
Needs a running broker (python -m lakehouse.local.kafka_broker start).
A SASL_SSL broker works the same: the [kafka] security settings carry over; the password comes from
LAKEHOUSE_KAFKA_PASSWORD, as for every script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.bench_json import add_json_flag, cpu_model, write_json

PROJECT_DIR = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the producer's sustained throughput.")
    parser.add_argument("--count", type=int, default=300_000, help="events per run (default 300000)")
    parser.add_argument("--runs", type=int, default=3, help="number of runs (default 3)")
    parser.add_argument("--config", default=None, help="configuration file passed to the producer")
    add_json_flag(parser)
    args = parser.parse_args(argv)
    print(f"Machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}")
    rates, mbs, runs = [], [], []
    for run in range(1, args.runs + 1):
        topic = f"bench_producer_{uuid.uuid4().hex[:8]}"
        with tempfile.TemporaryDirectory() as tmp:
            summary_path = Path(tmp) / "summary.json"
            cmd = [sys.executable, "producer_ventes.py", "--max", "--count", str(args.count), "--seed", "1",
                   "--topic", topic, "--summary-json", str(summary_path)]
            if args.config:
                cmd += ["--config", args.config]
            result = subprocess.run(cmd, cwd=PROJECT_DIR, capture_output=True, text=True)
            if result.returncode != 0:
                print(result.stderr[-2000:], file=sys.stderr)
                return 1
            summary = json.loads(summary_path.read_text())
        rates.append(summary["events_per_s"])
        mbs.append(summary["mb_per_s"])
        runs.append({k: summary[k] for k in ("generated", "delivered", "failed", "elapsed_s", "events_per_s",
                                             "mb_per_s")})
        print(f"run {run}: {summary['generated']} events in {summary['elapsed_s']:.2f} s — "
              f"{summary['events_per_s']:,.0f} events/s, {summary['mb_per_s']:.2f} MB/s "
              f"(delivered {summary['delivered']}, failed {summary['failed']})")
    print(f"median: {statistics.median(rates):,.0f} events/s, {statistics.median(mbs):.2f} MB/s "
          f"(goal ≥ 15,000 events/s)")
    write_json(args.json, "producer_throughput", args, {
        "runs": runs, "median_events_per_s": statistics.median(rates), "median_mb_per_s": statistics.median(mbs)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
