"""Prometheus metrics of the long-running jobs: the Bronze stream, Silver, the paced producer.

Each job keeps its figures in a small object updated once per batch (or read from the producer's delivery
counters at scrape time) and serves them on ``/metrics`` in Prometheus' text format from its own registry:
a scrape never touches Spark or Kafka, and a batch pays a few dictionary updates, never one call per record
(the latency histogram is filled in bulk). Names follow Prometheus' conventions: the ``lakehouse_`` prefix,
the unit in the name, ``_total`` for counters. Labels are bounded: a table, a quarantine reason, a Kafka
partition; never a sale or a client.

The endpoint listens on ``[monitoring] metrics_address`` (this machine only by default, as the web page and
Spark's ports), on the job's ``[monitoring] metrics_port_*``; ``0`` turns it off. A port that is taken is one
warning line, and the job goes on without metrics.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from lakehouse.silver.corrections import REJECTION_REASONS, CorrectionFigures

log = logging.getLogger(__name__)

# Bucket bounds in seconds. A batch: a fraction of a second to minutes (a catch-up). Produce→commit: the
# trigger plus a batch, or much more behind a backlog.
BATCH_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
LATENCY_BUCKETS_S = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

BRONZE_TABLES = ("ventes", "corrections", "ventes_quarantine", "ventes_duplicates")


class BulkHistogram:
    """A histogram filled many values at a time (not thread-safe: its owner holds the lock)."""

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, the last one past the largest bound
        self.sum = 0.0

    def observe_many(self, values: Iterable[float]) -> None:
        for value in values:
            self.counts[bisect.bisect_left(self.bounds, value)] += 1
            self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip((*(f"{b:g}" for b in self.bounds), "+Inf"), self.counts):
            cumulative += count
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


def process_rss_bytes(pid: int | None = None) -> int | None:
    """Resident memory of a process (this one by default), from /proc; None where there is none."""
    try:
        with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def jvm_heap_reader(spark) -> Callable[[], tuple[int, int] | None]:
    """A function giving the driver JVM's (heap used, heap max) in bytes, None once the JVM is gone."""
    def read() -> tuple[int, int] | None:
        try:
            runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()
            return runtime.totalMemory() - runtime.freeMemory(), runtime.maxMemory()
        except Exception:  # noqa: BLE001 - the JVM stopped or is stopping: no figure
            return None
    return read


def _memory_families(prefix: str, jvm_heap: Callable[[], tuple[int, int] | None] | None) -> Iterator[Metric]:
    rss = process_rss_bytes()
    if rss is not None:
        yield GaugeMetricFamily(f"{prefix}_driver_resident_memory_bytes",
                                "Resident memory of the job's Python driver process", value=rss)
    heap = jvm_heap() if jvm_heap is not None else None
    if heap is not None:
        yield GaugeMetricFamily(f"{prefix}_jvm_heap_used_bytes", "Heap in use in the driver's JVM", value=heap[0])
        yield GaugeMetricFamily(f"{prefix}_jvm_heap_max_bytes", "Largest heap the driver's JVM may use",
                                value=heap[1])


@dataclass
class BronzeBatchFigures:
    """What one Bronze batch adds to the metrics."""

    input_rows: int
    bronze_rows: int
    correction_rows: int
    quarantined_rows: int
    duplicate_rows: int
    conflicting_rows: int
    late_rows: int
    reasons: Counter  # quarantine reason -> records (a record with several reasons counts under each)
    duration_s: float
    committed_at: float  # epoch seconds
    latencies_s: list[float]  # each record's produce (Kafka timestamp) → commit
    newest_sale: float | None  # event time (epoch seconds) of the newest sale kept so far
    watermark: float | None
    dedup_entries: int
    newest_read_ms: dict[int, int]  # Kafka partition -> newest record timestamp read (epoch ms)


class _JobMetrics(Collector):
    """What the Bronze and Silver jobs' figures share: a lock, a clock, the job's start, its batches, their
    last commit, the newest sale, the driver's memory. A job adds its own families in ``_families``."""

    prefix = "lakehouse_job"

    def __init__(self, jvm_heap: Callable[[], tuple[int, int] | None] | None = None,
                 clock: Callable[[], float] = time.time):
        self._lock = threading.Lock()
        self.jvm_heap, self.clock = jvm_heap, clock
        self.started_at = clock()
        self.batches = 0
        self.batch_seconds = BulkHistogram(BATCH_BUCKETS_S)
        self.last_commit: float | None = None
        self.newest_sale: float | None = None

    def _families(self, now: float) -> Iterator[Metric]:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self.clock()
            yield from self._families(now)
            if self.last_commit is not None:
                yield GaugeMetricFamily(f"{self.prefix}_last_commit_timestamp_seconds",
                                        "When the last batch committed (Unix time)", value=self.last_commit)
            since = now - (self.last_commit if self.last_commit is not None else self.started_at)
            yield GaugeMetricFamily(f"{self.prefix}_seconds_since_last_commit",
                                    "Seconds since the last batch committed (since the start before the first)",
                                    value=since)
        yield from _memory_families(self.prefix, self.jvm_heap)


class BronzeMetrics(_JobMetrics):
    """The Bronze stream's figures, as Prometheus reads them."""

    prefix = "lakehouse_bronze"

    def __init__(self, jvm_heap: Callable[[], tuple[int, int] | None] | None = None,
                 clock: Callable[[], float] = time.time):
        super().__init__(jvm_heap, clock)
        self.input_rows = 0
        self.rows_written = dict.fromkeys(BRONZE_TABLES, 0)
        self.quarantined = self.duplicates = self.conflicting = self.late = 0
        self.reasons: Counter = Counter()
        self.latency = BulkHistogram(LATENCY_BUCKETS_S)
        self.watermark: float | None = None
        self.dedup_entries = 0
        self.lag_records: dict[int, int] = {}
        self.newest_read_ms: dict[int, int] = {}

    def batch(self, figures: BronzeBatchFigures) -> None:
        with self._lock:
            self.batches += 1
            self.input_rows += figures.input_rows
            self.rows_written["ventes"] += figures.bronze_rows
            self.rows_written["corrections"] += figures.correction_rows
            self.rows_written["ventes_quarantine"] += figures.quarantined_rows
            self.rows_written["ventes_duplicates"] += figures.duplicate_rows
            self.quarantined += figures.quarantined_rows
            self.duplicates += figures.duplicate_rows
            self.conflicting += figures.conflicting_rows
            self.late += figures.late_rows
            self.reasons.update(figures.reasons)
            self.batch_seconds.observe_many((figures.duration_s,))
            self.latency.observe_many(figures.latencies_s)
            self.last_commit = figures.committed_at
            self.newest_sale = figures.newest_sale if figures.newest_sale is not None else self.newest_sale
            self.watermark = figures.watermark if figures.watermark is not None else self.watermark
            self.dedup_entries = figures.dedup_entries
            for partition, ms in figures.newest_read_ms.items():
                self.newest_read_ms[partition] = max(ms, self.newest_read_ms.get(partition, ms))

    def kafka_lag(self, lag_by_partition: dict[int, int]) -> None:
        """Records each Kafka partition holds past what the stream has read (from Spark's progress)."""
        with self._lock:
            self.lag_records = dict(lag_by_partition)

    def _families(self, now: float) -> Iterator[Metric]:
        yield CounterMetricFamily("lakehouse_bronze_batches", "Batches committed", value=self.batches)
        yield CounterMetricFamily("lakehouse_bronze_input_records", "Kafka records read",
                                  value=self.input_rows)
        written = CounterMetricFamily("lakehouse_bronze_rows_written", "Rows appended, per Delta table",
                                      labels=["table"])
        for table, rows in self.rows_written.items():
            written.add_metric([table], rows)
        yield written
        yield CounterMetricFamily("lakehouse_bronze_quarantined_records",
                                  "Records sent to the quarantine table", value=self.quarantined)
        reasons = CounterMetricFamily("lakehouse_bronze_quarantine_reasons",
                                      "Quarantined records per reason (a record with several reasons "
                                      "counts under each)", labels=["reason"])
        for reason, count in sorted(self.reasons.items()):
            reasons.add_metric([reason], count)
        yield reasons
        yield CounterMetricFamily("lakehouse_bronze_duplicate_records",
                                  "Records identical to a sale kept before", value=self.duplicates)
        yield CounterMetricFamily("lakehouse_bronze_conflicting_ids",
                                  "Records re-using a kept sale's vente_id with other content",
                                  value=self.conflicting)
        yield CounterMetricFamily("lakehouse_bronze_late_sales",
                                  "Sales kept with an event time behind the watermark", value=self.late)
        yield self.batch_seconds.family("lakehouse_bronze_batch_duration_seconds",
                                        "Wall time of a batch, from its start to its last commit")
        yield self.latency.family("lakehouse_bronze_produce_to_commit_seconds",
                                  "Per record: its Kafka timestamp to the commit of its batch")
        lag = GaugeMetricFamily("lakehouse_bronze_kafka_lag_records",
                                "Records in the Kafka partition not read yet", labels=["partition"])
        lag_s = GaugeMetricFamily("lakehouse_bronze_kafka_lag_seconds",
                                  "Seconds since the newest record read from the partition was produced, "
                                  "when records wait behind it (0 when none does)", labels=["partition"])
        for partition, records in sorted(self.lag_records.items()):
            lag.add_metric([str(partition)], records)
            newest = self.newest_read_ms.get(partition)
            waiting = 0.0 if records == 0 or newest is None else max(0.0, now - newest / 1000)
            lag_s.add_metric([str(partition)], waiting)
        yield lag
        yield lag_s
        if self.newest_sale is not None:
            yield GaugeMetricFamily("lakehouse_bronze_newest_sale_timestamp_seconds",
                                    "Event time of the newest sale in Bronze (Unix time)", value=self.newest_sale)
        if self.watermark is not None:
            yield GaugeMetricFamily("lakehouse_bronze_watermark_timestamp_seconds",
                                    "Event time behind which a sale is late (Unix time)", value=self.watermark)
        yield GaugeMetricFamily("lakehouse_bronze_dedup_state_entries",
                                "Sales held in memory for the duplicate check", value=self.dedup_entries)


class SilverMetrics(_JobMetrics):
    """Silver's figures (every mode), as Prometheus reads them."""

    prefix = "lakehouse_silver"

    def __init__(self, jvm_heap: Callable[[], tuple[int, int] | None] | None = None,
                 clock: Callable[[], float] = time.time, orphan_timeout_s: float = 3600.0):
        super().__init__(jvm_heap, clock)
        self.rows_merged = 0
        self.failures = 0
        self.orphan_timeout_s = orphan_timeout_s
        self.corrections_applied = 0
        self.rejected: Counter = Counter()
        self.waiting_since: list[float] | None = None  # unknown until the first batch

    def batch(self, rows: int, seconds: float, newest_sale: float | None, committed_at: float | None = None,
              corrections: CorrectionFigures | None = None) -> None:
        with self._lock:
            self.batches += 1
            self.rows_merged += rows
            self.batch_seconds.observe_many((seconds,))
            self.last_commit = self.clock() if committed_at is None else committed_at
            if newest_sale is not None and (self.newest_sale is None or newest_sale > self.newest_sale):
                self.newest_sale = newest_sale
            if corrections is not None:
                self.corrections_applied += corrections.applied
                self.rejected.update(corrections.rejected)
                self.waiting_since = list(corrections.waiting_since)

    def resume(self, newest_sale: float | None, last_commit: float | None) -> None:
        """Start from what an earlier run of the job had counted (its status file): a restart with no new
        sale still counts the sales it counted before."""
        with self._lock:
            self.newest_sale, self.last_commit = newest_sale, last_commit

    def failure(self) -> None:
        with self._lock:
            self.failures += 1

    def _families(self, now: float) -> Iterator[Metric]:
        yield CounterMetricFamily("lakehouse_silver_batches", "Silver batches committed", value=self.batches)
        yield CounterMetricFamily("lakehouse_silver_rows_merged", "Bronze rows merged into Silver",
                                  value=self.rows_merged)
        yield CounterMetricFamily("lakehouse_silver_failures",
                                  "Silver runs or streams that failed (each is retried)", value=self.failures)
        yield self.batch_seconds.family("lakehouse_silver_batch_duration_seconds", "Wall time of a Silver batch")
        yield CounterMetricFamily("lakehouse_silver_corrections_applied", "Returns and cancellations applied",
                                  value=self.corrections_applied)
        rejected = CounterMetricFamily("lakehouse_silver_events_rejected", "Events refused (silver/rejets), per reason",
                                       labels=["reason"])
        for reason in REJECTION_REASONS:
            rejected.add_metric([reason], self.rejected.get(reason, 0))
        yield rejected
        if self.waiting_since is not None:
            yield GaugeMetricFamily("lakehouse_silver_corrections_waiting",
                                    "Returns and cancellations waiting for their sale", value=len(self.waiting_since))
            yield GaugeMetricFamily("lakehouse_silver_corrections_orphaned",
                                    "Corrections waiting for their sale for longer than [analytics] orphan_timeout",
                                    value=sum(now - t > self.orphan_timeout_s for t in self.waiting_since))
        if self.newest_sale is not None:
            yield GaugeMetricFamily("lakehouse_silver_newest_sale_timestamp_seconds",
                                    "Event time of the newest sale Silver counts (Unix time)",
                                    value=self.newest_sale)
            yield GaugeMetricFamily("lakehouse_silver_freshness_seconds",
                                    "Age of the newest sale Silver counts", value=max(0.0, now - self.newest_sale))


class ProducerMetrics(Collector):
    """The paced producer's delivery counters, read at scrape time from its ``DeliveryStats``."""

    def __init__(self, stats, target_rate: float | None):
        self.stats, self.target_rate = stats, target_rate

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        generated, delivered, failed = s.generated, s.delivered, s.failed
        yield CounterMetricFamily("lakehouse_producer_records_generated", "Records generated", value=generated)
        yield CounterMetricFamily("lakehouse_producer_records_delivered", "Records Kafka acknowledged",
                                  value=delivered)
        yield CounterMetricFamily("lakehouse_producer_records_failed", "Records Kafka or the client refused",
                                  value=failed)
        yield GaugeMetricFamily("lakehouse_producer_records_unsent",
                                "Records generated and not answered yet (buffered or in flight)",
                                value=max(0, generated - delivered - failed))
        if self.target_rate is not None:
            yield GaugeMetricFamily("lakehouse_producer_target_rate_per_second", "The rate the producer keeps",
                                    value=self.target_rate)


def serve_metrics(collector: Collector, address: str, port: int, job: str, setting: str) -> object | None:
    """Serve ``collector`` on http://address:port/metrics from a daemon thread; None when ``port`` is 0 or
    taken (said in one warning line: the job goes on without metrics). The returned server has
    ``shutdown()``."""
    if port == 0:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, _thread = start_http_server(port, addr=address, registry=registry)
    except OSError as e:
        log.warning("%s: metrics endpoint not started, %s:%d cannot be listened on (%s); the job goes on "
                    "without metrics (set [monitoring] %s to a free port, 0 for none)", job, address, port,
                    e.strerror or e, setting)
        return None
    log.info("%s: Prometheus metrics on http://%s:%d/metrics", job, address, port)
    return server
