"""The Silver job's three ways to run: once, every interval, or continuously (one long-lived stream).

Each way keeps Silver's status file current (``lakehouse.silver.freshness``), refreshes the terminal
dashboard, and, on an ``s3a://`` lake, runs the upkeep of Silver's own tables between two batches.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from py4j.protocol import Py4JError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from lakehouse.ops.metrics import SilverMetrics
from lakehouse.ops.upkeep import OwnUpkeep
from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.paths import Paths
from lakehouse.platform.status import write_atomic
from lakehouse.serve.dashboard import dashboard_text
from lakehouse.serve.web_tables import TableProblem
from lakehouse.silver.freshness import HEARTBEAT_S, SilverStatusWriter
from lakehouse.silver.job import (
    BatchReport,
    SilverBatchWriter,
    SilverInputError,
    prepare_silver,
    run_silver,
    start_silver_query,
)
from lakehouse.silver.transforms import ClientRules

log = logging.getLogger("streaming_silver")

# While the Bronze table does not exist yet, --interval looks again this often (--continuous: every second).
BRONZE_WAIT_S = 5.0
# After the continuous stream failed (Bronze deleted under it, the disk, the JVM), it starts again this
# much later, from its last committed batch.
RETRY_S = 10.0


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__


@dataclass
class SilverJob:
    """What every mode shares: the session, the rules, the paths, the status, the dashboard."""

    spark: SparkSession
    rules: ClientRules
    paths: Paths
    status: SilverStatusWriter
    upkeep: OwnUpkeep | None = None
    dashboard_every_s: float = 5.0
    print_dashboard: Callable[[str], None] | None = None
    metrics: SilverMetrics | None = None
    orphan_timeout_s: float = 3600.0  # [analytics] orphan_timeout, for the dashboard's orphans
    _dashboard_at: float = 0.0
    _dashboard_batches: int = -1

    def on_batch(self, report: BatchReport) -> None:
        self.status.batch(report.batch_id, report.rows, report.newest_sale, report.seconds, report.steps)
        if self.metrics is not None:
            newest = report.newest_sale.timestamp() if report.newest_sale is not None else None
            self.metrics.batch(report.rows, report.seconds, newest, corrections=report.corrections)

    def on_failure(self, message: str) -> None:
        self.status.error(message)
        if self.metrics is not None:
            self.metrics.failure()

    def refresh_dashboard(self, batches: int = -1, force: bool = False) -> None:
        """Write the terminal dashboard (and print it, if asked) when batches were merged since the last
        time, at most every ``dashboard_every_s``; now, with ``force``."""
        now = time.monotonic()
        if not force and (batches == self._dashboard_batches or now - self._dashboard_at < self.dashboard_every_s):
            return
        self._dashboard_at, self._dashboard_batches = now, batches
        try:
            text = dashboard_text(self.paths, datetime.now(), self.orphan_timeout_s)
        except TableProblem as e:  # a table being compacted, the disk: next time
            log.warning("Could not refresh the Silver dashboard: %s", e)
            return
        write_atomic(self.paths.silver_dashboard, text + "\n")  # what `make demo` shows live
        if self.print_dashboard is not None:
            self.print_dashboard(text)

    def run_upkeep_if_due(self, writer: SilverBatchWriter | None = None) -> None:
        if self.upkeep is None:
            return
        lock = writer.batch_lock if writer is not None else threading.Lock()
        with lock:  # between two batches: a compaction under a running batch would make it fail
            try:
                self.upkeep.run_if_due()
            except (PySparkException, Py4JError) as e:  # said, and tried again an interval later
                log.error("Upkeep of Silver's tables failed (tried again in %g s): %s", self.upkeep.interval_s,
                          first_line(e))

    def run_once(self, full_refresh: bool) -> int:
        """One run over what Bronze has; the number of rows merged. ``SilverInputError`` and Spark's errors
        pass through."""
        rows = run_silver(self.spark, self.rules, self.paths, full_refresh, self.on_batch)
        self.refresh_dashboard(force=True)
        return rows

    def run_every(self, interval_s: float, full_refresh: bool, stop: threading.Event) -> int:
        """A run every ``interval_s`` until ``stop``; the exit code."""
        while True:
            started, pause = time.monotonic(), interval_s
            try:
                rows = self.run_once(full_refresh)
            except SilverInputError as e:
                if delta_table_exists(self.paths.bronze):
                    log.error("%s", e)
                    self.status.error(str(e))
                else:
                    pause = min(interval_s, BRONZE_WAIT_S)
                    log.info("Waiting for the Bronze table %s (created with the first sales); looking again "
                             "in %g s", self.paths.bronze, pause)
            except (PySparkException, Py4JError) as e:  # the disk, the JVM...: said plainly, retried
                log.error("Silver run failed (the next run starts over from the last committed batch): %s",
                          first_line(e))
                self.on_failure(first_line(e))
            else:
                full_refresh = False
                log.info("Silver run: %d new Bronze rows merged in %.1f s", rows, time.monotonic() - started)
                self.run_upkeep_if_due()
            if stop.wait(pause):
                return 0

    def run_continuous(self, trigger_s: float, full_refresh: bool, stop: threading.Event) -> int:
        """One stream with a batch every ``trigger_s`` until ``stop`` (then it ends after the batch under
        way); the exit code. It waits for a missing Bronze, and starts again after a failure."""
        writer = SilverBatchWriter(self.spark, self.rules, self.paths, self.paths.silver_checkpoint, self.on_batch)
        waiting_said = False
        while not stop.is_set():
            try:
                prepare_silver(self.spark, self.paths, full_refresh)
            except SilverInputError as e:
                if delta_table_exists(self.paths.bronze):  # Silver's own state is wrong: the user must act
                    log.error("%s", e)
                    self.status.error(str(e))
                    return 1
                if not waiting_said:  # said once; looked for every second (the first sales are near)
                    log.info("Waiting for the Bronze table %s (created with the first sales)", self.paths.bronze)
                    waiting_said = True
                stop.wait(1.0)
                continue
            full_refresh = False
            writer.stopping = False
            query = start_silver_query(self.spark, writer, self.paths, trigger_s)
            log.info("Silver stream started: a batch every %g s while Bronze has new sales", trigger_s)
            while query.isActive and not stop.wait(min(1.0, trigger_s)):
                self.refresh_dashboard(writer.batches)
                self.run_upkeep_if_due(writer)
            if stop.is_set():
                with writer.batch_lock:  # the batch under way ends first; a batch starting later writes nothing
                    writer.stopping = True
                query.stop()
                log.info("Silver stream stopped after %d batches (%d Bronze rows merged)", writer.batches,
                         writer.rows_merged)
                break
            error = query.exception()
            message = first_line(error) if error is not None else "it ended"
            log.error("Silver stream stopped (%s); starting again in %g s from its last committed batch",
                      message, RETRY_S)
            self.on_failure(message)
            stop.wait(RETRY_S)
        self.refresh_dashboard(writer.batches, force=True)
        return 0


class Heartbeat(threading.Thread):
    """Rewrites the status file every ``HEARTBEAT_S`` while the job runs (Spark's start included)."""

    def __init__(self, status: SilverStatusWriter, stop: threading.Event):
        super().__init__(name="silver-heartbeat", daemon=True)
        self.status, self._stop_event, self._done = status, stop, threading.Event()

    def run(self) -> None:
        while not self._done.wait(HEARTBEAT_S) and not self._stop_event.is_set():
            self.status.heartbeat()

    def stop(self) -> None:
        self._done.set()
