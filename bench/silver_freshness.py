"""Benchmark: how fresh Silver is where people look — from a sale's send to the moment Silver counts it.

Bronze (spark_streaming_delta.py) and Silver (streaming_silver.py --continuous) run as `make demo` runs them,
each in its own process, with the producer at --rate events/s. After --warmup-seconds (left out: the JVMs
compile their hot paths), the benchmark sends a marked sale every --mark-every seconds — a sale of a client
of its own — and reads Silver's clients table through delta-rs, as the web page reads it, every --poll
seconds; a mark's freshness is the time from its send to the first read that counts it.

It prints the marks' p50/p95/p99, Silver's per-batch step times (its log), Bronze's produce→commit p50 over
the same minutes (its metrics table), so that Silver's share of the delay is visible, and the memory of
Silver's processes: the driver's and the JVM's RSS every 10 s, and the JVM's live heap (the heap used right
after a full collection the benchmark asks for with `jcmd GC.run`) every --heap-every seconds. Each figure
is also given per --window of the run (p99 and memory), so that a trend shows. --json writes the figures
and every mark's delay to a file.

Usage: python -m bench.silver_freshness [--rate 1000] [--seconds 120] [--warmup-seconds 30] [--return-ratio 0.03]
       [--cancel-ratio 0.01] [--json FILE]
Needs a running broker (python -m lakehouse.local.kafka_broker start). Work data goes to a temporary folder.
Goals on the 2-core machine: at 1,000 events/s p50 ≤ 5 s and p99 ≤ 10 s; at 3 events/s p50 ≤ 4 s; Silver's
memory flat over a 30-minute run (--seconds 1800).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from kafka import KafkaProducer

from bench.bench_config import write_bench_config
from bench.bench_json import add_json_flag, write_json
from lakehouse.ingest.simulator import SalesSimulator, encode
from lakehouse.platform.config import load_config
from lakehouse.platform.kafka_security import KafkaSecurity, kafka_python_kwargs
from lakehouse.platform.paths import Paths
from lakehouse.platform.topics import ensure_topic
from lakehouse.serve.web_tables import TableProblem, read_silver

PROJECT_DIR = Path(__file__).resolve().parent.parent

BATCH_LINE = re.compile(r"Silver batch (\d+): (\d+) Bronze rows merged in ([\d.]+) s \((.*)\)")
STEP = re.compile(r"([a-z_ ]+) ([\d.]+) s")
# How long Silver may take to count its first sale after the jobs start.
FIRST_FIGURES_S = 300
BRONZE_P50 = re.compile(r"produce-to-commit p50 (\d+) ms")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


HEAP_USED = re.compile(r"heap\s+total (\d+)K, used (\d+)K")


def live_heap_mb(pid: int) -> float | None:
    """The JVM's heap in use right after a full collection (its live data), in MB; None if jcmd fails."""
    try:
        subprocess.run(["jcmd", str(pid), "GC.run"], capture_output=True, timeout=60, check=True)
        info = subprocess.run(["jcmd", str(pid), "GC.heap_info"], capture_output=True, text=True, timeout=60,
                              check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = HEAP_USED.search(info)
    return int(found[2]) / 1024 if found else None


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class ClientIds:
    """Silver's clients table as the marks are looked for in it: through delta-rs, as the web page reads it,
    but only its client_id column, and the table's log loaded once and then brought up to date. Reading every
    Silver table at each poll (what the web page does every dashboard_refresh) takes a share of a core from the
    jobs being measured."""

    def __init__(self):
        self.table: DeltaTable | None = None

    def read(self, paths: Paths) -> pa.Table:
        path = paths.silver("clients")
        try:
            if self.table is None:
                self.table = DeltaTable(str(path))
            else:
                self.table.update_incremental()
            return self.table.to_pyarrow_table(columns=["client_id"])
        except (TableNotFoundError, OSError) as e:  # not written yet
            raise TableProblem(path, str(e)) from e


class Marks:
    """Marked sales: sent by the benchmark, looked for in Silver's clients table."""

    def __init__(self, producer: KafkaProducer, topic: str, run: str):
        self.producer, self.topic, self.run = producer, topic, run
        self.sim = SalesSimulator(seed=5, clients=50)
        self.sent: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.clients = ClientIds()

    def send(self, n: int) -> None:
        event = self.sim.sale()
        client = f"MARK-{self.run}-{n:05d}"
        event.update(vente_id=f"mark-{self.run}-{n}", client_id=client,
                     timestamp=datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        self.producer.send(self.topic, key=client.encode(), value=encode(event))
        self.producer.flush()
        with self.lock:
            self.sent[client] = time.time()

    def poll(self, paths: Paths) -> None:
        with self.lock:
            pending = [c for c in self.sent if c not in self.seen]
        if not pending:
            return
        try:
            clients = self.clients.read(paths)
        except TableProblem:
            return
        now = time.time()
        found = clients.filter(pc.is_in(clients["client_id"], value_set=pa.array(pending)))
        present = set(found["client_id"].to_pylist())
        with self.lock:
            for client in present:
                self.seen.setdefault(client, now)

    def delays(self) -> list[float]:
        return [self.seen[c] - self.sent[c] for c in self.sent if c in self.seen]

    def timed_delays(self, origin: float) -> list[tuple[float, float]]:
        """(send time from ``origin``, delay) of each counted mark."""
        return [(self.sent[c] - origin, self.seen[c] - self.sent[c]) for c in self.sent if c in self.seen]


def silver_batches(log_file: Path, since: float) -> list[dict]:
    """Silver's batches logged after ``since`` (epoch seconds): rows, seconds and per-step seconds."""
    batches = []
    for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines():
        found = BATCH_LINE.search(line)
        if not found:
            continue
        when = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if when < since:
            continue
        batches.append({"rows": int(found[2]), "seconds": float(found[3]),
                        "steps": {m[1].strip(): float(m[2]) for m in STEP.finditer(found[4])}})
    return batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Silver's freshness: a sale's send to Silver counting it.")
    parser.add_argument("--rate", type=float, default=1000.0, help="producer events per second (default 1000)")
    parser.add_argument("--seconds", type=int, default=120, help="measured seconds (default 120)")
    parser.add_argument("--return-ratio", type=float, default=0.03,
                        help="share of the sales the producer follows with a return (default 0.03)")
    parser.add_argument("--cancel-ratio", type=float, default=0.01,
                        help="share of the sales the producer follows with a cancellation (default 0.01)")
    parser.add_argument("--warmup-seconds", type=int, default=30, help="left out of the figures (default 30)")
    parser.add_argument("--mark-every", type=float, default=1.0, help="seconds between marks (default 1)")
    parser.add_argument("--drain-seconds", type=float, default=60,
                        help="how long the last marks may take to be counted (default 60)")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between two reads of Silver (default 0.2)")
    parser.add_argument("--trigger", default=None, help="[analytics] silver_trigger (default: config.ini's)")
    parser.add_argument("--silver-args", default="--continuous --no-dashboard",
                        help="streaming_silver.py's flags (default '--continuous --no-dashboard'; "
                             "'--interval 30 --no-dashboard' is how make demo ran it before the continuous mode)")
    parser.add_argument("--project", type=Path, default=PROJECT_DIR,
                        help="the checkout whose jobs run (another commit's, to compare; default this one)")
    parser.add_argument("--heap-every", type=float, default=300,
                        help="seconds between two live-heap samples of Silver's JVM (a full GC each; 0: none)")
    parser.add_argument("--window", type=float, default=300, help="seconds per window of the per-window figures")
    add_json_flag(parser)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench_freshness_"))
    run = uuid.uuid4().hex[:8]
    config = write_bench_config(work / "bench.ini", f"bench_freshness_{run}", work / "data")
    if args.trigger:
        with open(config, "a", encoding="utf-8") as f:
            f.write(f"[analytics]\nsilver_trigger = {args.trigger}\n")
    cfg = load_config(config)
    paths = Paths.from_config(cfg)
    security = KafkaSecurity.from_config(cfg)
    ensure_topic(cfg.kafka.bootstrap_servers, cfg.kafka.topic, cfg.kafka.partitions, security=security)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    py = sys.executable

    def start(name: str, command: list[str], project: Path = args.project) -> subprocess.Popen:
        # A session of its own, as make demo starts each part: a SIGTERM to it reaches its JVM too.
        return subprocess.Popen([py, *command, "--config", str(config)], cwd=project,
                                stdout=open(work / f"{name}.log", "w"), stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)

    started = time.time()
    parts = {"bronze": start("bronze", ["spark_streaming_delta.py"]),
             "silver": start("silver", ["streaming_silver.py", *args.silver_args.split()])}
    # The producer runs until the measure ends (stopped below), however long Silver takes to start: long
    # enough for the wait for Silver's first figures, the warm-up, the measure and the drain.
    total = FIRST_FIGURES_S + args.warmup_seconds + args.seconds + args.drain_seconds
    parts["producer"] = start("producer", ["producer_ventes.py", "--rate", f"{args.rate:g}",
                                           "--duration", f"{total} s", "--return-ratio",
                                           f"{args.return_ratio:g}", "--cancel-ratio", f"{args.cancel_ratio:g}"],
                              PROJECT_DIR)  # the load is this checkout's, whichever jobs are measured
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, acks="all", linger_ms=0,
                             **kafka_python_kwargs(security))
    marks = Marks(producer, cfg.kafka.topic, run)
    memory: list[tuple[float, int, int]] = []
    heap: list[tuple[float, float]] = []
    try:
        # Warm-up: Silver has counted a first sale (its stream runs), then --warmup-seconds more.
        deadline = time.time() + FIRST_FIGURES_S
        while time.time() < deadline:
            if any(p.poll() is not None for p in parts.values()):
                raise RuntimeError(f"a part stopped during the warm-up: see the logs in {work}")
            try:
                if read_silver(paths).clients.num_rows:  # the web page's reader: Silver as users see it
                    break
            except TableProblem:
                pass
            time.sleep(1)
        else:
            raise RuntimeError(f"Silver counted nothing within {FIRST_FIGURES_S} s: see {work / 'silver.log'}")
        ready = time.time()
        print(f"Silver's first figures {ready - started:.1f} s after the jobs started; warm-up "
              f"{args.warmup_seconds} s", flush=True)
        time.sleep(args.warmup_seconds)
        measured_from = time.time()
        n, next_mark, next_poll, next_memory = 0, time.time(), time.time(), time.time()
        next_heap = time.time() if args.heap_every > 0 else float("inf")
        while time.time() < measured_from + args.seconds:
            now = time.time()
            if now >= next_mark:
                marks.send(n)
                n, next_mark = n + 1, next_mark + args.mark_every
            if now >= next_poll:
                marks.poll(paths)
                next_poll = time.time() + args.poll
            if now >= next_memory:
                driver = parts["silver"].pid
                jvm = sum(rss_kb(c) or 0 for c in children(driver))
                memory.append((now - measured_from, rss_kb(driver) or 0, jvm))
                next_memory = now + 10
            if now >= next_heap:
                jvms = children(parts["silver"].pid)
                used = live_heap_mb(jvms[0]) if jvms else None
                if used is not None:
                    heap.append((now - measured_from, used))
                next_heap = now + args.heap_every
            time.sleep(0.02)
        # The last marks: up to --drain-seconds more to be counted.
        end = time.time() + args.drain_seconds
        while len(marks.seen) < len(marks.sent) and time.time() < end:
            marks.poll(paths)
            time.sleep(args.poll)
    finally:
        producer.close()
        # As make demo stops its parts: SIGTERM to each Python process (its JVM follows), then the group.
        for name in ("producer", "bronze", "silver"):
            if parts[name].poll() is None:
                parts[name].send_signal(signal.SIGTERM)
            try:
                parts[name].wait(timeout=120)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(parts[name].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    delays = marks.delays()
    batches = silver_batches(work / "silver.log", measured_from)
    bronze_p50s = [int(m[1]) / 1000 for line in (work / "bronze.log").read_text(errors="replace").splitlines()
                   if (m := BRONZE_P50.search(line)) and
                   datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() >= measured_from]
    figures: dict[str, object] = {
        "rate": args.rate, "return_ratio": args.return_ratio, "cancel_ratio": args.cancel_ratio,
        "seconds": args.seconds, "trigger": str(cfg.analytics.silver_trigger),
        "first_figures_s": round(ready - started, 1),
        "marks_sent": len(marks.sent), "marks_counted": len(delays),
        "p50_s": percentile(delays, 0.5) if delays else None, "p95_s": percentile(delays, 0.95) if delays else None,
        "p99_s": percentile(delays, 0.99) if delays else None,
        "silver_batches": len(batches),
        "silver_batch_median_s": statistics.median(b["seconds"] for b in batches) if batches else None,
        "silver_rows_median": statistics.median(b["rows"] for b in batches) if batches else None,
        "silver_steps_median_s": {k: statistics.median(b["steps"].get(k, 0) for b in batches)
                                  for k in (batches[0]["steps"] if batches else {})},
        "bronze_produce_to_commit_p50_s": statistics.median(bronze_p50s) if bronze_p50s else None,
    }
    if memory:
        fifth = max(1, len(memory) // 5)
        first, last = memory[:fifth], memory[-fifth:]
        figures["silver_driver_rss_mb"] = [round(statistics.median(m[1] for m in part) / 1024)
                                           for part in (first, last)]
        figures["silver_jvm_rss_mb"] = [round(statistics.median(m[2] for m in part) / 1024) for part in (first, last)]
    if heap:
        figures["silver_jvm_live_heap_mb"] = [[round(t), round(mb)] for t, mb in heap]
    windows = []
    for start_s in range(0, args.seconds, max(1, int(args.window))):
        end_s = start_s + args.window
        in_window = [d for sent, d in marks.timed_delays(measured_from) if start_s <= sent < end_s]
        rss = [m for m in memory if start_s <= m[0] < end_s]
        windows.append({
            "from_s": start_s, "marks": len(in_window),
            "p50_s": round(percentile(in_window, 0.5), 2) if in_window else None,
            "p99_s": round(percentile(in_window, 0.99), 2) if in_window else None,
            "driver_rss_mb": round(statistics.median(m[1] for m in rss) / 1024) if rss else None,
            "jvm_rss_mb": round(statistics.median(m[2] for m in rss) / 1024) if rss else None,
        })
    figures["windows"] = windows
    print(f"{args.rate:g} events/s ({args.return_ratio:.0%} returns, {args.cancel_ratio:.0%} cancellations), "
          f"{args.seconds} s measured, Silver trigger {figures['trigger']}:")
    if delays:
        print(f"  send → counted in Silver (delta-rs), {len(delays)} of {len(marks.sent)} marks: "
              f"p50 {figures['p50_s']:.2f} s, p95 {figures['p95_s']:.2f} s, p99 {figures['p99_s']:.2f} s")
    else:
        print(f"  no mark was counted in Silver: see {work / 'silver.log'}")
    if batches:
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in figures["silver_steps_median_s"].items())
        print(f"  Silver: {len(batches)} batches, median {figures['silver_rows_median']:,.0f} rows in "
              f"{figures['silver_batch_median_s']:.2f} s ({steps})")
    if bronze_p50s:
        print(f"  Bronze produce→commit p50 (median of its batches' figures): "
              f"{figures['bronze_produce_to_commit_p50_s']:.2f} s")
    if memory:
        print(f"  Silver memory, first and last fifth of the run: driver {figures['silver_driver_rss_mb']} MB, "
              f"JVM {figures['silver_jvm_rss_mb']} MB")
    if heap:
        print("  Silver JVM live heap (after a full GC), MB at s: "
              + ", ".join(f"{mb:.0f} at {t:.0f}" for t, mb in heap))
    if len(windows) > 1:
        print(f"  per {args.window:g} s window (p50 / p99 s, driver / JVM RSS MB):")
        for w in windows:
            print(f"    from {w['from_s']:>5} s: {w['marks']} marks, {w['p50_s']} / {w['p99_s']}, "
                  f"{w['driver_rss_mb']} / {w['jvm_rss_mb']}")
    print(f"  first Silver figures {figures['first_figures_s']} s after the jobs started; logs in {work}")
    if args.json:
        figures["marks"] = [[round(sent, 2), round(d, 3)] for sent, d in marks.timed_delays(measured_from)]
        write_json(args.json, "silver_freshness", args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
