"""The Bronze stream's monitoring: a line per batch in the log and a live status file for the demo."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQueryListener

from lakehouse.bronze.writer import BronzeBatchWriter
from lakehouse.ops.metrics import BronzeMetrics
from lakehouse.platform.status import write_atomic

log = logging.getLogger(__name__)


def partition_lag(sources) -> dict[int, int] | None:
    """Records each Kafka partition holds past the stream's last batch (the source's latest offsets minus
    the batch's end offsets, from a progress event), None when the event does not carry both."""
    for source in sources:
        try:
            latest, end = json.loads(source.latestOffset or "null"), json.loads(source.endOffset or "null")
        except (TypeError, ValueError):
            continue
        if not isinstance(latest, dict) or not isinstance(end, dict):
            continue
        lag: dict[int, int] = {}
        for topic, offsets in latest.items():
            read = end.get(topic) or {}
            for partition, offset in offsets.items():
                lag[int(partition)] = max(0, int(offset) - int(read.get(partition, offset)))
        return lag
    return None


class BronzeProgressLogger(StreamingQueryListener):
    """Logs every Bronze batch: rows, rate, duration, latency, quarantined, duplicates, Kafka lag."""

    def __init__(self, writer: BronzeBatchWriter, status_file: Path | None = None,
                 metrics: BronzeMetrics | None = None):
        self.writer, self.status_file, self.metrics = writer, status_file, metrics
        self.terminated = threading.Event()  # events arrive in order: after this one, none is pending
        self.status: dict = {"started_at": time.time(), "batches": 0, "input_rows_total": 0,
                             "bronze_rows_total": 0, "correction_rows_total": 0, "quarantined_rows_total": 0,
                             "duplicate_rows_total": 0,
                             "last_batch": None, "kafka_lag": None}

    def onQueryStarted(self, event) -> None:  # noqa: N802 (Spark's API names)
        log.info("Bronze stream started (id %s, run %s)", event.id, event.runId)

    def onQueryProgress(self, event) -> None:  # noqa: N802
        progress = event.progress
        lag = None
        for source in progress.sources:
            metrics = source.metrics or {}
            if "maxOffsetsBehindLatest" in metrics:
                lag = int(float(metrics["maxOffsetsBehindLatest"]))
        self.writer.last_kafka_lag = lag
        if self.metrics is not None:
            by_partition = partition_lag(progress.sources)
            if by_partition is not None:
                self.metrics.kafka_lag(by_partition)
        # Spark's own share of the trigger (planning, offset and commit logs) next to the batch's (addBatch).
        log.debug("Batch %d Spark durations (ms): %s", progress.batchId, progress.durationMs)
        counts = self.writer.last_counts.pop(progress.batchId, None)
        self._write_status(counts, lag)
        if counts is None:
            return
        log.info("📊 Batch %d: %d rows in %d ms (%.0f rows/s) → bronze %d, corrections %d, quarantined %d, "
                 "duplicates %d, late %d; produce-to-commit p50 %s ms; Kafka lag %s", progress.batchId,
                 counts["input_rows"], counts["duration_ms"], counts["rows_per_s"] or 0.0,
                 counts["bronze_rows"], counts["correction_rows"], counts["quarantined_rows"], counts["duplicate_rows"],
                 counts["late_rows"], counts["latency_p50_ms"], "unknown" if lag is None else lag)

    def onQueryIdle(self, event) -> None:  # noqa: N802
        pass

    def _write_status(self, counts: dict | None, lag: int | None) -> None:
        """The stream's health as a small JSON file (for the demo's live view): running totals, the last
        batch, the Kafka lag."""
        if self.status_file is None:
            return
        status = self.status
        status.update(updated_at=time.time(), kafka_lag=lag)
        if counts is not None:
            status["batches"] += 1
            for key in ("input_rows", "bronze_rows", "correction_rows", "quarantined_rows", "duplicate_rows"):
                status[f"{key}_total"] += counts[key]
            status["last_batch"] = {k: (v.isoformat() if isinstance(v, datetime) else v)
                                    for k, v in counts.items()}
        write_atomic(self.status_file, json.dumps(status))

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        self.terminated.set()
        if event.exception:  # the entry point says why in one line; Spark's words are in the log file
            log.debug("Bronze stream failed: %s", event.exception.splitlines()[0])


# Listeners registered by start_bronze_stream, so that an entry point can remove them before it exits.
_progress_loggers: list[BronzeProgressLogger] = []


def register_progress_logger(spark: SparkSession, listener: BronzeProgressLogger) -> None:
    """Add the listener to the session and remember it for ``remove_progress_loggers``."""
    spark.streams.addListener(listener)
    _progress_loggers.append(listener)


def remove_progress_loggers(spark: SparkSession, timeout_s: float = 10.0) -> None:
    """Once the queries have stopped, let the listeners log their last events, then unregister them: an
    event delivered after Python has exited makes Spark log a py4j error at every stop."""
    while _progress_loggers:
        listener = _progress_loggers.pop()
        listener.terminated.wait(timeout_s)
        spark.streams.removeListener(listener)
