"""Benchmark: what the Bronze batch's duplicate check costs on the driver, per batch size, without Spark.

The check runs in the driver's Python process whatever the cluster (the executors parse and check the
records; the driver decides duplicates and conflicts on their keys and keeps the state), so it bounds
the stream's throughput however many workers there are. This times, for batches of --sizes records
(1% repeats of earlier sales): the keys built as the writer builds them (named tuples from the columns
the Arrow collect gives), ``find_duplicates`` against a state of --state recent sales (two watermark
delays of a stream: 1,200,000 = 1,000 sales/s for 20 minutes), and the state update with its pruning,
with Python's cyclic collector paused as the writer pauses it for a batch (--with-collector: left on).
Median of --rounds rounds per size, in one process.

Usage: python -m bench.dedup_driver [--sizes 1000 10000 100000] [--state 1200000] [--rounds 5] [--with-collector]
       [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time

from bench.bench_json import add_json_flag, write_json
from lakehouse.bronze.dedup import DedupState, Kept, SaleKey, collector_paused, find_duplicates

DELAY_US = 600_000_000  # the default watermark delay: 10 minutes
START_US = 1_795_000_000_000_000


def columns(first: int, n: int, now_us: int, repeats: list[tuple[str, Kept]]) -> tuple[list, ...]:
    """A batch as the Arrow collect gives it: one list per column (id, event time, content, partition, offset),
    with ``repeats`` (kept sales sent again, same id, time and content) in random places."""
    ids = [f"V{first + i:012d}" for i in range(n)]
    events = [now_us - random.randrange(60_000_000) for _ in range(n)]
    contents = [hash(i) for i in ids]
    for slot, (vente_id, sale) in zip(random.sample(range(n), len(repeats)), repeats):
        ids[slot], events[slot], contents[slot] = vente_id, sale.event_us, sale.content
    return ids, events, contents, [i % 3 for i in range(n)], list(range(first, first + n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the driver-side duplicate check per batch size.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--state", type=int, default=1_200_000, help="recent sales in the state (default 1200000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--with-collector", action="store_true",
                        help="leave Python's cyclic garbage collector on (the writer pauses it for a batch)")
    add_json_flag(parser)
    args = parser.parse_args(argv)
    random.seed(1)
    state = DedupState(DELAY_US)
    now = START_US
    kept = {}
    for i in range(args.state):  # the state a running stream holds: sales over the last two delays
        event = now - (args.state - i) * (2 * DELAY_US // args.state)
        kept[f"V{i:012d}"] = [Kept(event, hash(f"V{i:012d}"), i % 3, i)]
    state.add(kept)
    next_id = args.state
    print(f"State: {len(state.seen):,} recent sales")
    results = {}
    for size in args.sizes:
        build, decide, update = [], [], []
        for _ in range(args.rounds):
            now += 1_000_000
            recent = [f"V{i:012d}" for i in range(next_id - 1000, next_id)]
            repeats = [(v, state.seen[v][0]) for v in random.sample(recent, max(1, size // 100))
                       if v in state.seen]
            ids, events, contents, partitions, offsets = columns(next_id, size, now, repeats)
            next_id += size
            with contextlib.nullcontext() if args.with_collector else collector_paused():
                started = time.perf_counter()
                keys = [SaleKey(*k) for k in zip(ids, events, contents, partitions, offsets)]
                build.append(time.perf_counter() - started)
                started = time.perf_counter()
                decisions, new = find_duplicates(keys, state.seen, DELAY_US)
                decide.append(time.perf_counter() - started)
                started = time.perf_counter()
                state.add(new)
                update.append(time.perf_counter() - started)
            assert sum(d.kind == "duplicate" for d in decisions) == len(repeats)  # every re-sent sale found
        total = statistics.median(b + d + u for b, d, u in zip(build, decide, update))
        results[size] = {"keys_ms": statistics.median(build) * 1000, "decisions_ms": statistics.median(decide) * 1000,
                         "state_update_ms": statistics.median(update) * 1000, "total_ms": total * 1000,
                         "records_per_s": size / total}
        print(f"{size:>9,} records: keys {statistics.median(build) * 1000:7.1f} ms, decisions "
              f"{statistics.median(decide) * 1000:7.1f} ms, state update {statistics.median(update) * 1000:7.1f} ms "
              f"-> {total * 1000:7.1f} ms = {size / total:,.0f} records/s on one core")
    write_json(args.json, "dedup_driver", args, {"state_sales": args.state, "collector_paused": not args.with_collector,
                                                 "batches": {str(size): r for size, r in results.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
